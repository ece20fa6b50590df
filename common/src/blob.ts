import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Port for payload storage. Keys are slash-separated, e.g. `jobs/<jobId>/<taskId>`.
 * Blobs are immutable once written.
 */
export interface BlobStore {
  /** Where this store lives, as given to {@link openBlobStore} (sent to sidecars). */
  readonly url: string;
  /** Writes the chunks one after another as one blob; returns its size. Atomic: readers never see a partial blob. */
  put(key: string, parts: readonly Uint8Array[]): Promise<number>;
  get(key: string): Promise<Buffer>;
  /** Reads a blob in chunks, for results too large to hold in memory. */
  read(key: string, chunkSize?: number): AsyncIterable<Uint8Array>;
  /** The blob's size in bytes. */
  size(key: string): Promise<number>;
  /** Deletes every blob whose key starts with prefix. */
  deletePrefix(prefix: string): Promise<void>;
  /**
   * The blob's path on this machine's filesystem, when the store is a
   * directory. Processes that share the volume read it there directly, which
   * keeps large payloads off every socket.
   */
  localPath?(key: string): string;
}

/**
 * Writes chunks one after another into a file that appears whole or not at
 * all (temporary file, then rename). Returns the byte count.
 */
export async function writeFileAtomic(target: string, parts: readonly Uint8Array[]): Promise<number> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
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
  } finally {
    await fh.close();
  }
  await rename(tmp, target);
  return size;
}

function checkKey(key: string): void {
  if (!key || key.startsWith('/') || key.split('/').some((s) => s === '..' || s === '' || s === '.')) {
    throw new Error(`invalid blob key "${key}"`);
  }
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
    checkKey(key);
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, parts: readonly Uint8Array[]): Promise<number> {
    return writeFileAtomic(this.localPath(key), parts);
  }

  async get(key: string): Promise<Buffer> {
    return readFile(this.localPath(key));
  }

  read(key: string, chunkSize = 1024 * 1024): AsyncIterable<Uint8Array> {
    return createReadStream(this.localPath(key), { highWaterMark: chunkSize }) as AsyncIterable<Uint8Array>;
  }

  async size(key: string): Promise<number> {
    return (await stat(this.localPath(key))).size;
  }

  async deletePrefix(prefix: string): Promise<void> {
    const p = prefix.replace(/\/+$/, '');
    checkKey(p);
    const target = join(this.root, ...p.split('/'));
    if (!target.startsWith(this.root + sep)) throw new Error(`invalid blob prefix "${prefix}"`);
    await rm(target, { recursive: true, force: true });
  }
}

/** Opens a blob store from its URL: `fs:<directory>`. */
export function openBlobStore(url: string): BlobStore {
  if (url.startsWith('fs:')) return new FsBlobStore(url.slice(3));
  throw new Error(`unsupported storage URL "${url}" (expected fs:<directory>)`);
}
