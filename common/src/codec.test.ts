import { describe, expect, it } from 'vitest';
import { BlobRef, decode, encode, encodeParts, getPath, shapeOf } from './codec.js';

describe('msgpack codec', () => {
  it('round-trips nested values with binary data intact', () => {
    const v = { a: [1, -2, 3.5, 'x', null, true], b: Buffer.from([0, 255]), c: { d: new Uint8Array([7, 8]) } };
    const out = decode(encode(v)) as typeof v;
    expect(out.a).toEqual(v.a);
    expect(Buffer.isBuffer(out.b)).toBe(true);
    expect([...out.b]).toEqual([0, 255]);
    expect([...out.c.d]).toEqual([7, 8]);
  });

  it('writes plain msgpack: undefined becomes nil, integers use int formats', () => {
    expect(encode(undefined)).toEqual(Buffer.from([0xc0]));
    expect(encode([undefined])).toEqual(Buffer.from([0x91, 0xc0]));
    expect(encode(300)).toEqual(Buffer.from([0xcd, 0x01, 0x2c]));
    expect(decode(Buffer.from([0xcf, 0, 0, 0, 1, 0, 0, 0, 0]))).toBe(2 ** 32);
    expect(decode(Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))).toBe(2n ** 64n - 1n);
  });

  it('encodes BlobRef as extension 0x57 holding [key, path]', () => {
    const bytes = encode(new BlobRef('jobs/j/0/1', ['x', 2]));
    // A 16-byte body takes the fixext16 form (0xd8, type, body); others ext8 (0xc7, len, type, body).
    expect(bytes[0]).toBe(0xd8);
    expect(bytes[1]).toBe(0x57);
    expect(decode(bytes.subarray(2))).toEqual(['jobs/j/0/1', ['x', 2]]);
    const longer = encode(new BlobRef('jobs/job-with-a-longer-id/3/14', []));
    expect([longer[0], longer[2]]).toEqual([0xc7, 0x57]);
    expect(decode(longer.subarray(3))).toEqual(['jobs/job-with-a-longer-id/3/14', []]);
    const back = decode(bytes) as BlobRef;
    expect(back).toBeInstanceOf(BlobRef);
    expect(back.key).toBe('jobs/j/0/1');
    expect(back.path).toEqual(['x', 2]);
  });

  it('encodeParts keeps a large binary value uncopied behind a bin32 header', () => {
    const big = Buffer.alloc(100_000, 9);
    const parts = encodeParts(big);
    expect(parts).toHaveLength(2);
    expect(parts[1]).toBe(big);
    const decoded = decode(Buffer.concat(parts)) as Buffer;
    expect(decoded.length).toBe(100_000);
    expect(decoded[99_999]).toBe(9);
    expect(encodeParts({ small: 1 })).toHaveLength(1);
  });

  it('walks paths and describes shapes', () => {
    const v = { a: [{ b: 'x' }, { b: 'y' }] };
    expect(getPath(v, ['a', 1, 'b'])).toBe('y');
    expect(getPath(v, ['a', '0', 'b'])).toBe('x');
    expect(getPath(v, ['nope', 'b'])).toBeUndefined();
    expect(shapeOf([1, 2, 3])).toEqual({ type: 'array', size: 3 });
    expect(shapeOf(Buffer.alloc(4))).toEqual({ type: 'binary', size: 4 });
    expect(shapeOf(null)).toEqual({ type: 'null', size: 0 });
  });
});
