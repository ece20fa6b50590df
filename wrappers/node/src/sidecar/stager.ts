import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobStore } from '@weft/common';

/**
 * Moves a task's payloads between the blob store and the local files the
 * algorithm reads and writes. The local protocol only ever carries paths, so
 * the wrapper (Node or Python) is the same whatever the store is.
 */
export interface Stager {
  /** True when paths are the store's own files: nothing is copied, and {@link localPath} works. */
  readonly inPlace: boolean;
  /** The store's own path of a blob; only when {@link inPlace}. */
  localPath(key: string): string;
  /** A local file holding the blob `key`, for the algorithm to read. */
  input(key: string): Promise<string>;
  /** Where the algorithm writes a large result that becomes the blob `key`. */
  outputPath(key: string): string;
  /** Makes the file the algorithm wrote at {@link outputPath} the blob `key`. */
  commitOutput(key: string): Promise<void>;
  /** Forgets the output of a task that did not finish (its file is not a blob). */
  discardOutput(key: string): Promise<void>;
  /** The task is over: the stager may evict what it downloaded for it. */
  release(): Promise<void>;
  /** Removes everything this stager wrote locally. */
  close(): Promise<void>;
}

/**
 * The store is a directory this process shares (the embedded default, or a
 * volume mounted in every pod): paths in place, no copies.
 */
class InPlaceStager implements Stager {
  readonly inPlace = true;
  constructor(private readonly store: BlobStore & { localPath(key: string): string }) {}
  localPath(key: string): string {
    return this.store.localPath(key);
  }
  input(key: string): Promise<string> {
    return Promise.resolve(this.store.localPath(key));
  }
  outputPath(key: string): string {
    return this.store.localPath(key);
  }
  commitOutput(): Promise<void> {
    // The wrapper wrote the blob in place, atomically.
    return Promise.resolve();
  }
  discardOutput(): Promise<void> {
    return Promise.resolve();
  }
  release(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A local file standing for a blob, with when it was last used (for eviction). */
interface Cached {
  path: string;
  size: number;
  used: number;
  /** The download, while it runs: concurrent readers of one key share it. */
  pending?: Promise<string>;
}

/**
 * The store is remote (S3): inputs are downloaded into a cache directory
 * before the algorithm sees them, and a large result is uploaded after the
 * algorithm wrote it, so the control plane never carries payload bytes.
 * Downloads are atomic (temporary file, then rename); the cache keeps recent
 * inputs (a batch often reads the same blob in every item) up to `maxBytes`.
 */
class CopyStager implements Stager {
  readonly inPlace = false;
  private readonly cache = new Map<string, Cached>();
  private bytes = 0;
  private clock = 0;
  /** Keys the current task reads: never evicted while it runs. */
  private readonly inUse = new Set<string>();

  constructor(
    private readonly store: BlobStore,
    private readonly dir: string,
    private readonly maxBytes: number,
  ) {}

  private local(area: 'in' | 'out', key: string): string {
    // One flat file per key: keys of different depths never collide as file and directory.
    return join(this.dir, area, encodeURIComponent(key));
  }

  async input(key: string): Promise<string> {
    this.inUse.add(key);
    const hit = this.cache.get(key);
    if (hit) {
      hit.used = ++this.clock;
      return hit.pending ?? hit.path;
    }
    const path = this.local('in', key);
    const entry: Cached = { path, size: 0, used: ++this.clock };
    entry.pending = this.store.getToFile(key, path).then(
      (size) => {
        entry.size = size;
        entry.pending = undefined;
        this.bytes += size;
        return path;
      },
      (err: unknown) => {
        this.cache.delete(key);
        throw err;
      },
    );
    this.cache.set(key, entry);
    return entry.pending;
  }

  localPath(key: string): string {
    throw new Error(`blob "${key}" has no local path: the store is remote`);
  }

  outputPath(key: string): string {
    return this.local('out', key);
  }

  async commitOutput(key: string): Promise<void> {
    const path = this.local('out', key);
    const size = await this.store.putFile(key, path);
    // The result is likely the next task's input on this worker (a linear pipeline): keep it as cached input.
    const cached = this.local('in', key);
    const old = this.cache.get(key);
    if (old && !old.pending) this.bytes -= old.size;
    await mkdir(join(this.dir, 'in'), { recursive: true });
    await rename(path, cached);
    this.cache.set(key, { path: cached, size, used: ++this.clock });
    this.bytes += size;
  }

  async discardOutput(key: string): Promise<void> {
    await rm(this.local('out', key), { force: true });
  }

  async release(): Promise<void> {
    this.inUse.clear();
    if (this.bytes <= this.maxBytes) return;
    const victims = [...this.cache.entries()].filter(([, c]) => !c.pending).sort((a, b) => a[1].used - b[1].used);
    for (const [key, c] of victims) {
      if (this.bytes <= this.maxBytes) break;
      if (this.inUse.has(key)) continue;
      this.cache.delete(key);
      this.bytes -= c.size;
      await rm(c.path, { force: true });
    }
  }

  async close(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * The stager for a store: paths in place when this machine sees the store as
 * a directory, downloads and uploads through `cacheDir` otherwise.
 */
export async function createStager(
  store: BlobStore,
  opts: { cacheDir: string; maxCacheBytes: number },
): Promise<Stager> {
  if (store.localPath) {
    const s = store as BlobStore & { localPath(key: string): string };
    return new InPlaceStager(s);
  }
  // A leftover of an earlier worker with this id would only waste space.
  await rm(opts.cacheDir, { recursive: true, force: true });
  await mkdir(opts.cacheDir, { recursive: true });
  return new CopyStager(store, opts.cacheDir, opts.maxCacheBytes);
}
