/**
 * The blob store contract (see port.ts), as a suite every adapter runs:
 * `blobStoreContract('fs', () => new FsBlobStore(dir))`. Each test gets a
 * fresh store from the factory; stores may share a backend, so every test
 * writes under its own prefix.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { Status, type WeftError } from '../errors.js';
import type { BlobStore } from './port.js';

async function collect(it: AsyncIterable<Uint8Array>): Promise<{ bytes: Buffer; chunks: number[] }> {
  const parts: Buffer[] = [];
  const chunks: number[] = [];
  for await (const c of it) {
    parts.push(Buffer.from(c));
    chunks.push(c.byteLength);
  }
  return { bytes: Buffer.concat(parts), chunks };
}

/**
 * The WeftError's code. By name, not instanceof: an adapter loaded from a
 * package's dist/ has its own copy of the class.
 */
function isWeftError(err: unknown): err is WeftError {
  return err instanceof Error && err.name === 'WeftError' && typeof (err as WeftError).code === 'number';
}

async function code(p: Promise<unknown>): Promise<Status | string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return isWeftError(err) ? err.code : `not a WeftError: ${String(err)}`;
  }
}

/** Chunks of `total` bytes in pieces of `piece`, as a slow producer would send them. */
async function* pieces(data: Buffer, piece: number): AsyncIterable<Uint8Array> {
  for (let i = 0; i < data.byteLength; i += piece) {
    await new Promise<void>((r) => setImmediate(r));
    yield data.subarray(i, i + piece);
  }
}

export function blobStoreContract(
  name: string,
  factory: () => BlobStore | Promise<BlobStore>,
  opts: { largeBytes?: number } = {},
): void {
  describe(`blob store contract: ${name}`, () => {
    const opened: BlobStore[] = [];
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });
    const fresh = async (): Promise<{ store: BlobStore; p: string }> => {
      const store = await factory();
      opened.push(store);
      return { store, p: `contract-${randomBytes(4).toString('hex')}` };
    };
    const scratch = (): string => mkdtempSync(join(tmpdir(), 'weft-blob-contract-'));

    it('round-trips chunks, an empty blob, sizes and presence', async () => {
      const { store, p } = await fresh();
      expect(await store.put(`${p}/a`, [Buffer.from('hello '), Buffer.from('world')])).toBe(11);
      expect((await store.get(`${p}/a`)).toString()).toBe('hello world');
      expect(await store.size(`${p}/a`)).toBe(11);
      expect(await store.has(`${p}/a`)).toBe(true);
      expect(await store.put(`${p}/empty`, [])).toBe(0);
      expect((await store.get(`${p}/empty`)).byteLength).toBe(0);
      expect(await store.has(`${p}/nothing`)).toBe(false);
    });

    it('answers NOT_FOUND for a missing blob on every read, and leaves no file behind', async () => {
      const { store, p } = await fresh();
      const dir = scratch();
      expect(await code(store.get(`${p}/x`))).toBe(Status.NOT_FOUND);
      expect(await code(store.size(`${p}/x`))).toBe(Status.NOT_FOUND);
      expect(await code(collect(store.read(`${p}/x`)))).toBe(Status.NOT_FOUND);
      expect(await code(store.getToFile(`${p}/x`, join(dir, 'x')))).toBe(Status.NOT_FOUND);
      expect(existsSync(join(dir, 'x'))).toBe(false);
    });

    it('refuses keys that could leave the store, naming the key', async () => {
      const { store } = await fresh();
      for (const bad of ['', '/abs', 'a/../b', 'a//b', './a', 'a/.']) {
        const err = await store.put(bad, [Buffer.from('x')]).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isWeftError(err), bad).toBe(true);
        expect((err as WeftError).code).toBe(Status.INVALID_ARGUMENT);
        expect((err as WeftError).message).toContain('blob key');
      }
    });

    it('replaces a blob whole when the same key is written again', async () => {
      const { store, p } = await fresh();
      await store.put(`${p}/k`, [Buffer.from('a much longer first version')]);
      await store.put(`${p}/k`, [Buffer.from('short')]);
      expect((await store.get(`${p}/k`)).toString()).toBe('short');
      expect(await store.size(`${p}/k`)).toBe(5);
    });

    it('streams a large blob in and out byte for byte', async () => {
      const { store, p } = await fresh();
      const data = randomBytes(opts.largeBytes ?? 12 * 1024 * 1024);
      expect(await store.putStream(`${p}/big`, pieces(data, 256 * 1024))).toBe(data.byteLength);
      expect(await store.size(`${p}/big`)).toBe(data.byteLength);
      const { bytes, chunks } = await collect(store.read(`${p}/big`, { chunkSize: 1024 * 1024 }));
      expect(bytes.equals(data)).toBe(true);
      expect(Math.max(...chunks)).toBeLessThanOrEqual(1024 * 1024);
      expect((await store.get(`${p}/big`)).equals(data)).toBe(true);
    });

    it('uploads a file and downloads it into a new file', async () => {
      const { store, p } = await fresh();
      const dir = scratch();
      const data = randomBytes(300 * 1024);
      writeFileSync(join(dir, 'in'), data);
      expect(await store.putFile(`${p}/f`, join(dir, 'in'))).toBe(data.byteLength);
      expect(await store.getToFile(`${p}/f`, join(dir, 'sub', 'out'))).toBe(data.byteLength);
      expect(readFileSync(join(dir, 'sub', 'out')).equals(data)).toBe(true);
    });

    it('reads byte ranges (end inclusive)', async () => {
      const { store, p } = await fresh();
      await store.put(`${p}/r`, [Buffer.from('0123456789')]);
      expect((await collect(store.read(`${p}/r`, { start: 2, end: 5 }))).bytes.toString()).toBe('2345');
      expect((await collect(store.read(`${p}/r`, { start: 7 }))).bytes.toString()).toBe('789');
    });

    it('lists keys under a prefix and deletes a prefix as a directory', async () => {
      const { store, p } = await fresh();
      for (const k of ['job/0/0', 'job/0/1', 'job/1/0', 'job2/0/0']) await store.put(`${p}/${k}`, [Buffer.from(k)]);
      const listed: string[] = [];
      for await (const k of store.list(`${p}/job/`)) listed.push(k);
      expect(listed.sort()).toEqual([`${p}/job/0/0`, `${p}/job/0/1`, `${p}/job/1/0`]);
      await store.deletePrefix(`${p}/job/0`);
      expect(await store.has(`${p}/job/0/0`)).toBe(false);
      expect(await store.has(`${p}/job/0/1`)).toBe(false);
      expect(await store.has(`${p}/job/1/0`)).toBe(true);
      await store.deletePrefix(`${p}/job`);
      expect(await store.has(`${p}/job/1/0`)).toBe(false);
      // A sibling that merely shares the leading characters stays.
      expect(await store.has(`${p}/job2/0/0`)).toBe(true);
      await store.deletePrefix(`${p}/not-there`);
    });

    it('leaves nothing visible when a streamed write fails midway', async () => {
      const { store, p } = await fresh();
      const failing = Readable.from(
        (async function* () {
          yield randomBytes(6 * 1024 * 1024);
          await new Promise<void>((r) => setImmediate(r));
          throw new Error('producer died');
        })(),
      );
      await expect(store.putStream(`${p}/half`, failing)).rejects.toThrow();
      expect(await store.has(`${p}/half`)).toBe(false);
      // A failed rewrite keeps the old blob whole.
      await store.put(`${p}/keep`, [Buffer.from('old')]);
      const failing2 = Readable.from(
        (async function* () {
          yield Buffer.from('new, partial');
          await new Promise<void>((r) => setImmediate(r));
          throw new Error('producer died');
        })(),
      );
      await expect(store.putStream(`${p}/keep`, failing2)).rejects.toThrow();
      expect((await store.get(`${p}/keep`)).toString()).toBe('old');
    });

    it('passes its own start-up check', async () => {
      const { store } = await fresh();
      await store.check();
      expect(store.url).toMatch(/^(fs|s3):/);
    });
  });
}
