import { Packr, addExtension } from 'msgpackr';
import { invalid } from '@weft/common';

/**
 * Stands in for a `Map` while it is packed. msgpack has one map type, which
 * msgpackr decodes as a plain object; wrapping the Map in a class of our own
 * makes it an extension that decodes back into a Map. The class is private,
 * so registering it globally changes nothing for other Packr instances in the
 * process (such as @weft/common's wire codec).
 */
class PackedMap {
  constructor(readonly entries: unknown[]) {}
}

/** msgpack extension type of a JS `Map` in closure payloads ('M'). */
const MAP_EXT = 0x4d;

addExtension({
  Class: PackedMap,
  type: MAP_EXT,
  write: (m: PackedMap) => m.entries,
  read: (entries: unknown[]) => {
    const map = new Map<unknown, unknown>();
    for (let i = 0; i + 1 < entries.length; i += 2) map.set(entries[i], entries[i + 1]);
    return map;
  },
});

// moreTypes keeps Set, typed arrays and bigints beyond 64 bits as themselves;
// records are off so the bytes stay plain msgpack apart from those extensions.
const packr = new Packr({ useRecords: false, moreTypes: true });

/**
 * Encodes a closure argument, result or captured value as msgpack, keeping
 * `Map`, `Set`, `Date` and `Uint8Array` as themselves. Call
 * {@link assertSerializable} first for an error that names the bad field;
 * this function only throws what msgpackr throws.
 */
export function encodeValue(value: unknown): Buffer {
  return packr.pack(wrapMaps(value));
}

/** Decodes what {@link encodeValue} wrote. */
export function decodeValue(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

function wrapMaps(value: unknown): unknown {
  if (value instanceof Map) {
    const entries: unknown[] = [];
    for (const [k, v] of value) entries.push(wrapMaps(k), wrapMaps(v));
    return new PackedMap(entries);
  }
  if (Array.isArray(value)) return value.map(wrapMaps);
  if (value instanceof Set) return new Set([...value].map(wrapMaps));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = wrapMaps(v);
    return out;
  }
  return value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** How a value is named in errors: `a function`, `an instance of class Foo`. */
export function describeValue(value: unknown): string {
  if (typeof value === 'function') {
    return /^class[\s{]/.test(Function.prototype.toString.call(value)) ? 'a class' : 'a function';
  }
  if (typeof value === 'symbol') return 'a symbol';
  if (typeof value === 'object' && value !== null) {
    const ctor = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor;
    const name = typeof ctor?.name === 'string' && ctor.name !== '' ? ctor.name : 'an anonymous class';
    return `an instance of class ${name}`;
  }
  return `a ${typeof value}`;
}

/**
 * Throws unless `value` can be sent as a closure argument or captured
 * variable: a value that survives a msgpack round trip through
 * {@link encodeValue} and {@link decodeValue} unchanged.
 *
 * Allowed are `null`, `undefined`, booleans, numbers, bigints, strings, `Date`,
 * `Uint8Array` (a `Buffer` arrives as a `Buffer`), `Map`, `Set`, arrays and
 * plain objects (prototype `Object.prototype` or `null`), nested freely but
 * without cycles. Everything else is refused: functions, symbols, instances
 * of other classes (their prototype and methods would be lost on the way) and
 * cyclic structures. The error names the offending place,
 * e.g. `argument 0.foo.bar: a function cannot be sent`, so that `path` is the
 * name of the whole value as the user knows it (`argument 0`,
 * `captured variable "cfg"`).
 *
 * It checks the shape first (precise messages), then round-trips the value
 * through msgpack and compares, which catches whatever the shape check does
 * not know about.
 */
export function assertSerializable(value: unknown, path: string): void {
  checkShape(value, path, new Set());
  let decoded: unknown;
  try {
    decoded = decodeValue(encodeValue(value));
  } catch (err) {
    throw invalid(path, `cannot be encoded as msgpack: ${err instanceof Error ? err.message : String(err)}`);
  }
  const mismatch = findMismatch(value, decoded, path);
  if (mismatch !== undefined) throw invalid(mismatch, 'does not survive a msgpack round trip unchanged');
}

function checkShape(value: unknown, path: string, ancestors: Set<object>): void {
  switch (typeof value) {
    case 'undefined':
    case 'boolean':
    case 'number':
    case 'bigint':
    case 'string':
      return;
    case 'function':
    case 'symbol':
      throw invalid(path, `${describeValue(value)} cannot be sent`);
    default:
      break;
  }
  if (value === null) return;
  const obj = value as object;
  if (obj instanceof Date || obj instanceof Uint8Array) return;
  if (ancestors.has(obj)) throw invalid(path, 'a cyclic reference (the value contains itself) cannot be sent');
  ancestors.add(obj);
  try {
    if (Array.isArray(obj)) {
      obj.forEach((item, i) => checkShape(item, `${path}[${i}]`, ancestors));
    } else if (obj instanceof Map) {
      for (const [k, v] of obj) {
        const key = typeof k === 'string' || typeof k === 'number' ? String(k) : describeValue(k);
        checkShape(k, `${path}(key ${key})`, ancestors);
        checkShape(v, `${path}.get(${JSON.stringify(key)})`, ancestors);
      }
    } else if (obj instanceof Set) {
      let i = 0;
      for (const item of obj) checkShape(item, `${path}(set item ${i++})`, ancestors);
    } else if (isPlainObject(obj)) {
      if (Object.getOwnPropertySymbols(obj).length > 0)
        throw invalid(path, 'an object with symbol keys cannot be sent');
      for (const [k, v] of Object.entries(obj)) checkShape(v, `${path}.${k}`, ancestors);
    } else {
      throw invalid(
        path,
        `${describeValue(obj)} cannot be sent (only plain objects, arrays, Map, Set, Date, Uint8Array and primitives)`,
      );
    }
  } finally {
    ancestors.delete(obj);
  }
}

/** The path of the first place where `b` differs from `a`, or undefined. */
function findMismatch(a: unknown, b: unknown, path: string): string | undefined {
  if (typeof a === 'number' && typeof b === 'number') return a === b || (a !== a && b !== b) ? undefined : path;
  if (typeof a !== 'object' || a === null) return a === b ? undefined : path;
  if (typeof b !== 'object' || b === null) return path;
  if (a instanceof Date) return b instanceof Date && sameTime(a, b) ? undefined : path;
  if (a instanceof Uint8Array) {
    return b instanceof Uint8Array && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b) ? undefined : path;
  }
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return path;
    for (let i = 0; i < a.length; i++) {
      const m = findMismatch(a[i], b[i], `${path}[${i}]`);
      if (m !== undefined) return m;
    }
    return undefined;
  }
  if (a instanceof Map) {
    if (!(b instanceof Map) || a.size !== b.size) return path;
    const bEntries = [...b];
    let i = 0;
    for (const [k, v] of a) {
      const entry = bEntries[i++];
      if (entry === undefined) return path;
      const m =
        findMismatch(k, entry[0], `${path}(key ${i - 1})`) ?? findMismatch(v, entry[1], `${path}(value ${i - 1})`);
      if (m !== undefined) return m;
    }
    return undefined;
  }
  if (a instanceof Set) {
    if (!(b instanceof Set) || a.size !== b.size) return path;
    const bItems = [...b];
    let i = 0;
    for (const item of a) {
      const m = findMismatch(item, bItems[i], `${path}(set item ${i})`);
      if (m !== undefined) return m;
      i++;
    }
    return undefined;
  }
  if (!isPlainObject(b)) return path;
  const ra = a as Record<string, unknown>;
  const keys = Object.keys(ra);
  if (keys.length !== Object.keys(b).length) return path;
  for (const k of keys) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return `${path}.${k}`;
    const m = findMismatch(ra[k], b[k], `${path}.${k}`);
    if (m !== undefined) return m;
  }
  return undefined;
}

function sameTime(a: Date, b: Date): boolean {
  const ta = a.getTime();
  const tb = b.getTime();
  return ta === tb || (Number.isNaN(ta) && Number.isNaN(tb));
}
