import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, encode } from '@weft/common';
import type { LeafResult } from '@weft/proto';
import { binHeader, downloadResults, resultFileName, sniffBinary, type OpenDownload } from './download.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-download-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function* chunksOf(...parts: number[][]): AsyncGenerator<Buffer> {
  for (const part of parts) yield Buffer.from(part);
  await Promise.resolve();
}

async function collect(source: AsyncIterable<Buffer>): Promise<number[]> {
  const out: number[] = [];
  for await (const chunk of source) out.push(...chunk);
  return out;
}

describe('resultFileName', () => {
  it('names a result after its node and batch index', () => {
    expect(resultFileName('Reduce', -1, false)).toBe('Reduce.msgpack');
    expect(resultFileName('Multiply', 2, false)).toBe('Multiply-2.msgpack');
    expect(resultFileName('Image', 0, true)).toBe('Image-0.bin');
  });

  it('keeps names inside the directory', () => {
    expect(resultFileName('../x', -1, false)).toBe('.._x.msgpack');
    expect(resultFileName('a/b\\c', -1, true)).toBe('a_b_c.bin');
    expect(resultFileName('..', -1, false)).toBe('_...msgpack');
    expect(resultFileName('', 1, false)).toBe('_-1.msgpack');
  });
});

describe('binHeader', () => {
  it('recognises bin8, bin16 and bin32 headers', () => {
    expect(binHeader(Buffer.from([0xc4, 3, 1, 2, 3]))).toEqual({ binary: true, headerLength: 2 });
    expect(binHeader(Buffer.from([0xc5, 0, 3]))).toEqual({ binary: true, headerLength: 3 });
    expect(binHeader(Buffer.from([0xc6, 0, 0, 0, 3]))).toEqual({ binary: true, headerLength: 5 });
    expect(binHeader(encode('text'))).toEqual({ binary: false, headerLength: 0 });
    expect(binHeader(encode({ a: Buffer.from('x') }))).toEqual({ binary: false, headerLength: 0 });
  });

  it('asks for more bytes when the header is cut', () => {
    expect(binHeader(Buffer.alloc(0))).toBeUndefined();
    expect(binHeader(Buffer.from([0xc6, 0, 0]))).toBeUndefined();
    expect(binHeader(Buffer.from([0xc4]))).toBeUndefined();
  });
});

describe('sniffBinary', () => {
  it('strips a bin header split over chunks', async () => {
    const { binary, rest } = await sniffBinary(chunksOf([0xc6, 0], [0, 0], [4, 9], [8, 7], [6]));
    expect(binary).toBe(true);
    expect(await collect(rest)).toEqual([9, 8, 7, 6]);
  });

  it('passes other values through unchanged', async () => {
    const { binary, rest } = await sniffBinary(chunksOf([0x92, 1], [2]));
    expect(binary).toBe(false);
    expect(await collect(rest)).toEqual([0x92, 1, 2]);
  });

  it('handles an empty stream', async () => {
    const { binary, rest } = await sniffBinary(chunksOf());
    expect(binary).toBe(false);
    expect(await collect(rest)).toEqual([]);
  });
});

function inline(nodeName: string, batchIndex: number, value: unknown): LeafResult {
  return { nodeName, algorithmName: 'a', batchIndex, result: { kind: { $case: 'inline', value: encode(value) } } };
}

function stored(nodeName: string, batchIndex: number, size: number): LeafResult {
  return { nodeName, algorithmName: 'a', batchIndex, result: { kind: { $case: 'ref', value: { key: 'k', size } } } };
}

describe('downloadResults', () => {
  it('writes inline and stored results, raw bytes for binary values', async () => {
    const big = Buffer.alloc(100_000, 7);
    const bigMsgpack = encode(big);
    const list = encode([1, 2, 3]);
    const streams: Record<string, Buffer[]> = {
      'Big#-1': [bigMsgpack.subarray(0, 3), bigMsgpack.subarray(3, 50_000), bigMsgpack.subarray(50_000)],
      'List#4': [list.subarray(0, 1), list.subarray(1)],
    };
    const requested: string[] = [];
    const open: OpenDownload = (leaf) => {
      const key = `${leaf.nodeName}#${leaf.batchIndex}`;
      requested.push(key);
      const parts = streams[key] ?? [];
      const total = parts.reduce((n, p) => n + p.length, 0);
      return (async function* () {
        for (const [i, data] of parts.entries()) yield { data, size: i === 0 ? total : 0 };
        await Promise.resolve();
      })();
    };
    const out = join(dir, 'new', 'nested');
    const skipped: string[] = [];
    const written = await downloadResults(
      out,
      [
        inline('Reduce', -1, { sum: 30 }),
        inline('Image', 0, Buffer.from('png')),
        stored('Big', -1, bigMsgpack.length),
        stored('List', 4, list.length),
        { nodeName: 'Empty', algorithmName: 'a', batchIndex: -1 },
      ],
      open,
      { written: () => undefined, skipped: (leaf) => skipped.push(leaf.nodeName) },
    );
    expect(requested).toEqual(['Big#-1', 'List#4']);
    expect(skipped).toEqual(['Empty']);
    expect(written.map((f) => [f.file, f.bytes, f.binary])).toEqual([
      [join(out, 'Reduce.msgpack'), encode({ sum: 30 }).length, false],
      [join(out, 'Image-0.bin'), 3, true],
      [join(out, 'Big.bin'), big.length, true],
      [join(out, 'List-4.msgpack'), list.length, false],
    ]);
    expect(decode(await readFile(join(out, 'Reduce.msgpack')))).toEqual({ sum: 30 });
    expect((await readFile(join(out, 'Image-0.bin'))).toString()).toBe('png');
    expect((await readFile(join(out, 'Big.bin'))).equals(big)).toBe(true);
    expect(decode(await readFile(join(out, 'List-4.msgpack')))).toEqual([1, 2, 3]);
    expect((await readdir(out)).sort()).toEqual(['Big.bin', 'Image-0.bin', 'List-4.msgpack', 'Reduce.msgpack']);
  });

  it('leaves no file behind when a download is cut short', async () => {
    const open: OpenDownload = () =>
      (async function* () {
        yield { data: Buffer.from([0xc4, 10, 1, 2]), size: 12 };
        await Promise.resolve();
      })();
    const out = join(dir, 'short');
    await expect(
      downloadResults(out, [stored('Cut', -1, 12)], open, { written: () => undefined, skipped: () => undefined }),
    ).rejects.toThrow('Cut: download ended after 4 of 12 bytes');
    expect(await readdir(out)).toEqual([]);
  });

  it('refuses to write two results to one file', async () => {
    const open: OpenDownload = () => {
      throw new Error('not stored');
    };
    await expect(
      downloadResults(join(dir, 'twice'), [inline('A-1', -1, 1), inline('A', 1, 2)], open, {
        written: () => undefined,
        skipped: () => undefined,
      }),
    ).rejects.toThrow('A#1: another result was already written to A-1.msgpack');
  });
});
