import { Status, isServiceError } from '@weft/common';

/**
 * An error meant for the user: main prints `weft: <message>` and exits with
 * {@link CliError.exitCode}, without a stack trace.
 */
export class CliError extends Error {
  constructor(
    message: string,
    /** Process exit code: 1 for failures, 2 for usage errors. */
    readonly exitCode: number = 1,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}

/** A command line the CLI does not understand (exit code 2). */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

/**
 * Turns anything thrown by a command into the one line shown after `weft: `
 * and an exit code. `server` is the address the command talked to, so that a
 * connection failure can say where it looked.
 */
export function describeError(err: unknown, server: string): { message: string; exitCode: number } {
  if (err instanceof CliError) return { message: err.message, exitCode: err.exitCode };
  if (isServiceError(err)) {
    if (err.code === Status.UNAVAILABLE) {
      return { message: `cannot reach the control plane at ${server} (is \`npm start\` running?)`, exitCode: 1 };
    }
    if (err.code === Status.UNIMPLEMENTED) {
      return {
        message: `the control plane at ${server} does not support this command (is it an older version?)`,
        exitCode: 1,
      };
    }
    if (err.code === Status.DEADLINE_EXCEEDED) {
      return { message: `the control plane at ${server} did not answer in time`, exitCode: 1 };
    }
    // details is the server's own message (WeftError text); message repeats it
    // behind a "5 NOT_FOUND:" prefix that means nothing to a user.
    return { message: err.details || err.message, exitCode: 1 };
  }
  // Anything else is a bug in weft rather than a user error: keep the message
  // short, and let WEFT_DEBUG ask for the stack.
  const message = err instanceof Error ? err.message : String(err);
  return { message: `internal error: ${message}`, exitCode: 1 };
}
