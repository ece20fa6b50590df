import { status as Status, Metadata, type ServiceError } from '@grpc/grpc-js';

export { Status };

/**
 * The one error type of weft. It carries the gRPC status code that a handler
 * returns, and optionally the name of the offending field so a user can fix
 * their input without reading the server's logs.
 */
export class WeftError extends Error {
  /** gRPC status code that handlers map this error to. */
  readonly code: Status;
  /** Dotted path of the offending input field, when there is one. */
  readonly field: string | undefined;

  constructor(code: Status, message: string, options?: { field?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WeftError';
    this.code = code;
    this.field = options?.field;
  }

  /** Normalises anything thrown into a WeftError; unknown errors become INTERNAL. */
  static from(err: unknown): WeftError {
    if (err instanceof WeftError) return err;
    if (isServiceError(err)) return new WeftError(err.code, err.details || err.message, { cause: err });
    const message = err instanceof Error ? err.message : String(err);
    return new WeftError(Status.INTERNAL, `internal error: ${message}`, { cause: err });
  }
}

/** INVALID_ARGUMENT naming the field, e.g. `invalid('nodes[1].input[0]', 'unknown node "B"')`. */
export function invalid(field: string, message: string): WeftError {
  return new WeftError(Status.INVALID_ARGUMENT, `${field}: ${message}`, { field });
}

export function notFound(message: string): WeftError {
  return new WeftError(Status.NOT_FOUND, message);
}

export function failedPrecondition(message: string): WeftError {
  return new WeftError(Status.FAILED_PRECONDITION, message);
}

/** True for errors raised by grpc-js calls (they carry a numeric code and details). */
export function isServiceError(err: unknown): err is ServiceError {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as { code?: unknown }).code === 'number' &&
    'details' in err &&
    'metadata' in err
  );
}

/**
 * Converts an error into what grpc-js sends to the client. Never lets grpc-js
 * fall back to UNKNOWN: anything that is not a WeftError is INTERNAL.
 */
export function toServiceError(err: unknown): Partial<ServiceError> & { code: Status; details: string } {
  const e = WeftError.from(err);
  const metadata = new Metadata();
  if (e.field) metadata.set('weft-field', e.field);
  return { code: e.code, details: e.message, metadata, name: 'WeftError', message: e.message };
}
