import { createReadStream, createWriteStream } from 'node:fs';
import { access, copyFile, mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Status, WeftError, invalid } from '../errors.js';
import type { BlobStore } from './port.js';

function tmpName(target: string): string {
  return `${target}.${randomBytes(6).toString('hex')}.tmp`;
}

/**
 * Writes chunks one after another into a file that appears whole or not at
 * all (temporary file, then rename). Returns the byte count.
 */
export async function writeFileAtomic(target: string, parts: readonly Uint8Array[]): Promise<number> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = tmpName(target);
  const fh = await open(tmp, 'w');
  let size = 0;
  try {
    let pending = parts.filter((p) => p.byteLength > 0);
    // writev may write less than asked; continue from where it stopped.
    while (pending.length > 0) {
      const { bytesWritten } = await fh.writev(pending);
      size += bytesWritten;
      let left = bytesWritten;
      const rest: Uint8Array[] = [];
      for (const p of pending) {
        if (left >= p.byteLength) {
          left -= p.byteLength;
        } else {
          rest.push(p.subarray(left));
          left = 0;
        }
      }
      pending = rest;
    }
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await rename(tmp, target);
  return size;
}

/**
 * Streams into a file that appears whole or not at all. Returns the byte
 * count; on failure the temporary file is removed.
 */
export async function writeStreamAtomic(target: string, body: Readable | AsyncIterable<Uint8Array>): Promise<number> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = tmpName(target);
  let size = 0;
  try {
    await pipeline(
      body instanceof Readable ? body : Readable.from(body),
      async function* (chunks: AsyncIterable<Uint8Array>) {
        for await (const c of chunks) {
          size += c.byteLength;
          yield c;
        }
      },
      createWriteStream(tmp),
    );
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return size;
}

/** Refuses keys that could leave the store's root. */
export function checkBlobKey(key: string, what = 'key'): void {
  if (!key || key.startsWith('/') || key.split('/').some((s) => s === '..' || s === '' || s === '.')) {
    throw invalid(`blob ${what}`, `"${key}" is not a relative slash-separated path`);
  }
}

function missing(key: string, err: unknown): unknown {
  return (err as NodeJS.ErrnoException).code === 'ENOENT'
    ? new WeftError(Status.NOT_FOUND, `blob "${key}" does not exist`, { cause: err })
    : err;
}

/** Blob storage in a directory: the embedded default's shared volume. */
export class FsBlobStore implements BlobStore {
  readonly url: string;
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.url = `fs:${this.root}`;
  }

  localPath(key: string): string {
    checkBlobKey(key);
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, parts: readonly Uint8Array[]): Promise<number> {
    return writeFileAtomic(this.localPath(key), parts);
  }

  async putStream(key: string, body: Readable | AsyncIterable<Uint8Array>): Promise<number> {
    return writeStreamAtomic(this.localPath(key), body);
  }

  async putFile(key: string, path: string): Promise<number> {
    const target = this.localPath(key);
    if (resolve(path) === target) return (await stat(target)).size;
    await mkdir(dirname(target), { recursive: true });
    const tmp = tmpName(target);
    try {
      await copyFile(path, tmp);
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return (await stat(target)).size;
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await readFile(this.localPath(key));
    } catch (err) {
      throw missing(key, err);
    }
  }

  async getToFile(key: string, path: string): Promise<number> {
    const source = this.localPath(key);
    if (resolve(path) === source) return this.size(key);
    await mkdir(dirname(path), { recursive: true });
    const tmp = tmpName(path);
    try {
      await copyFile(source, tmp);
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw missing(key, err);
    }
    return (await stat(path)).size;
  }

  async *read(key: string, opts: { chunkSize?: number; start?: number; end?: number } = {}): AsyncIterable<Uint8Array> {
    const path = this.localPath(key);
    try {
      await access(path, constants.R_OK);
    } catch (err) {
      throw missing(key, err);
    }
    yield* createReadStream(path, {
      highWaterMark: opts.chunkSize ?? 1024 * 1024,
      ...(opts.start !== undefined ? { start: opts.start } : {}),
      ...(opts.end !== undefined ? { end: opts.end } : {}),
    }) as AsyncIterable<Buffer>;
  }

  async size(key: string): Promise<number> {
    try {
      return (await stat(this.localPath(key))).size;
    } catch (err) {
      throw missing(key, err);
    }
  }

  async has(key: string): Promise<boolean> {
    try {
      return (await stat(this.localPath(key))).isFile();
    } catch {
      return false;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    // The longest directory part of the prefix, then a walk filtered by the full prefix.
    const slash = prefix.lastIndexOf('/');
    const base = slash >= 0 ? prefix.slice(0, slash) : '';
    if (base) checkBlobKey(base, 'prefix');
    const start = base ? join(this.root, ...base.split('/')) : this.root;
    const walk = async function* (dir: string): AsyncIterable<string> {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = join(dir, e.name);
        if (e.isDirectory()) yield* walk(p);
        else if (e.isFile() && !e.name.endsWith('.tmp')) yield p;
      }
    };
    for await (const p of walk(start)) {
      const key = relative(this.root, p).split(sep).join('/');
      if (key.startsWith(prefix)) yield key;
    }
  }

  async deletePrefix(prefix: string): Promise<void> {
    const p = prefix.replace(/\/+$/, '');
    checkBlobKey(p, 'prefix');
    const target = join(this.root, ...p.split('/'));
    if (!target.startsWith(this.root + sep)) throw invalid('blob prefix', `"${prefix}" leaves the store`);
    await rm(target, { recursive: true, force: true });
  }

  async check(): Promise<void> {
    try {
      await mkdir(this.root, { recursive: true });
      await access(this.root, constants.W_OK);
    } catch (err) {
      throw new WeftError(
        Status.FAILED_PRECONDITION,
        `WEFT_BLOBS: directory ${this.root} is not writable: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
