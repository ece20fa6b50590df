import { Packr, addExtension } from 'msgpackr';

/**
 * A reference to a value held in blob storage, standing in for the value
 * itself inside a msgpack payload. On the wire it is msgpack extension type
 * {@link BLOB_REF_EXT} whose body is the msgpack array `[key, path]`.
 */
export class BlobRef {
  constructor(
    /** Storage key of the msgpack blob. */
    readonly key: string,
    /** Path inside the decoded blob: object keys and array indexes. */
    readonly path: readonly (string | number)[] = [],
  ) {}
}

/** msgpack extension type number of {@link BlobRef}. */
export const BLOB_REF_EXT = 0x57;

// Plain msgpack (no records, no msgpackr-only types) so any language's msgpack
// library reads what we write. int64 values decode as numbers when they are
// safe integers and as bigint beyond 2^53: msgpackr supports 'auto' at run
// time, but its typings only list the other three modes.
const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  // msgpackr would write undefined as an extension other libraries don't know.
  encodeUndefinedAsNil: true,
  int64AsType: 'auto' as unknown as 'bigint',
});

addExtension({
  Class: BlobRef,
  type: BLOB_REF_EXT,
  pack: (ref: BlobRef) => packr.pack([ref.key, ref.path]),
  unpack: (body: Uint8Array) => {
    const [key, path] = packr.unpack(body) as [string, (string | number)[]];
    return new BlobRef(key, path ?? []);
  },
});

/** Encodes a value as msgpack. Buffers and Uint8Arrays become msgpack bin. */
export function encode(value: unknown): Buffer {
  return packr.pack(value);
}

/** Decodes msgpack. bin values come back as Buffers that view the input (no copy). */
export function decode(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

/** Threshold above which {@link encodeParts} avoids copying a binary value. */
const ZERO_COPY_MIN = 64 * 1024;

/**
 * Encodes a value as msgpack chunks to be written out one after another. A
 * large binary value is not copied: the chunks are a bin32 header and the
 * value's own bytes, which a vectored write sends as they are.
 */
export function encodeParts(value: unknown): Uint8Array[] {
  if (value instanceof Uint8Array && value.byteLength >= ZERO_COPY_MIN) {
    const header = Buffer.allocUnsafe(5);
    header[0] = 0xc6;
    header.writeUInt32BE(value.byteLength, 1);
    return [header, value];
  }
  return [encode(value)];
}

/** Walks a decoded value along a path of keys and indexes; undefined when a step is missing. */
export function getPath(value: unknown, path: readonly (string | number)[]): unknown {
  let cur: unknown = value;
  for (const step of path) {
    if (cur === null || cur === undefined) return undefined;
    if (Array.isArray(cur)) {
      const i = typeof step === 'number' ? step : Number(step);
      if (!Number.isInteger(i)) return undefined;
      cur = cur[i];
    } else if (typeof cur === 'object' && !(cur instanceof Uint8Array)) {
      cur = (cur as Record<string, unknown>)[String(step)];
    } else {
      return undefined;
    }
  }
  return cur;
}

/** Shape of a value, as reported in task metadata for batch fan-out. */
export interface Shape {
  type: 'array' | 'object' | 'string' | 'number' | 'boolean' | 'null' | 'binary' | 'undefined';
  size: number;
}

/** Describes a value's shape without copying it. */
export function shapeOf(value: unknown): Shape {
  if (Array.isArray(value)) return { type: 'array', size: value.length };
  if (value instanceof Uint8Array) return { type: 'binary', size: value.byteLength };
  if (value === null) return { type: 'null', size: 0 };
  switch (typeof value) {
    case 'string':
      return { type: 'string', size: value.length };
    case 'number':
    case 'bigint':
      return { type: 'number', size: 0 };
    case 'boolean':
      return { type: 'boolean', size: 0 };
    case 'undefined':
      return { type: 'undefined', size: 0 };
    default:
      return { type: 'object', size: Object.keys(value).length };
  }
}
