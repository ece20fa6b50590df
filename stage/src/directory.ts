import { createHash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { readFile, readdir, realpath, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Status, WeftError } from '@weft/common';
import { HashCache } from './hash-cache.js';
import { forEachLimit } from './limit.js';
import { isStagePath, sha256, stageIdOf, type StageFile, type StageManifest } from './manifest.js';
import type { BlobData, StageStore } from './store.js';
import { uploadStage, type StagePlan, type StageResult } from './upload.js';

/** Options of {@link planDirectory} and {@link stageDirectory}. */
export interface DirectoryStageOptions {
  /** Stage path of the entry point (`index.js`, `main.py`, `dist/main.js`); must be one of the files. */
  readonly entry: string;
  /** The export the entry point is called by; default `start` (an algorithm's). */
  readonly exportName?: string;
  /** Where hashes of unchanged files are remembered; default {@link HashCache.shared}. */
  readonly hashCache?: HashCache;
  /** Files hashed, and uploads in flight, at once; default 8. */
  readonly concurrency?: number;
}

/** What {@link stageDirectory} did. */
export interface DirectoryStageResult extends StageResult {
  /** Files in the stage. */
  readonly files: number;
  /** Their total size in bytes. */
  readonly bytes: number;
}

/** Files above this size are hashed and uploaded as streams rather than read into memory. */
const STREAM_ABOVE = 8 * 1024 * 1024;

interface Found {
  path: string;
  abs: string;
  st: Stats;
}

function stagingError(message: string): WeftError {
  return new WeftError(Status.FAILED_PRECONDITION, message);
}

/** Every regular file under dir, following symbolic links (a loop is walked once); `.git` is left out. */
async function walk(root: string): Promise<Found[]> {
  const found: Found[] = [];
  const visit = async (dir: string, prefix: string, seen: Set<string>): Promise<void> => {
    const real = await realpath(dir);
    if (seen.has(real)) return;
    const inner = new Set(seen).add(real);
    const entries = await readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      // Version control is not code; node_modules is kept, as an algorithm may ship its own.
      if (e.name === '.git') continue;
      const abs = join(dir, e.name);
      const path = prefix ? `${prefix}/${e.name}` : e.name;
      let st: Stats;
      try {
        st = await stat(abs);
      } catch {
        // A dangling symbolic link (a stale node_modules/.bin entry) has nothing to lay out.
        continue;
      }
      if (st.isDirectory()) await visit(abs, path, inner);
      else if (st.isFile()) {
        if (!isStagePath(path)) throw stagingError(`cannot stage ${abs}: its name cannot be laid out portably`);
        found.push({ path, abs, st });
      }
      // Sockets, FIFOs and devices are not code.
    }
  };
  await visit(root, '', new Set());
  return found;
}

async function hashFile(abs: string, size: number): Promise<string> {
  if (size <= STREAM_ABOVE) return sha256(await readFile(abs));
  const digest = createHash('sha256');
  await pipeline(createReadStream(abs), digest);
  return digest.digest('hex');
}

/**
 * Works out the stage of a directory tree (an algorithm's code): every
 * regular file under it except `.git`, symbolic links followed, with its
 * hash, size and executable bit. Hashes come from the hash cache while a
 * file's size and mtime are unchanged, so an unchanged tree costs one stat
 * per file. Nothing is uploaded.
 */
export async function planDirectory(dir: string, options: DirectoryStageOptions): Promise<StagePlan> {
  const root = resolve(dir);
  const st = await stat(root).catch(() => undefined);
  if (!st?.isDirectory()) throw stagingError(`${root} is not a directory`);
  const cache = options.hashCache ?? HashCache.shared();
  const found = await walk(root);
  let hashed = 0;
  const files: StageFile[] = new Array<StageFile>(found.length);
  const byHash = new Map<string, Found>();
  await forEachLimit(
    found.map((f, i) => ({ f, i })),
    options.concurrency ?? 8,
    async ({ f, i }) => {
      // The same kind as the closure stager's plain files, so the two share entries.
      let entry = cache.get('raw', f.abs, f.st);
      if (entry === undefined) {
        entry = { hash: await hashFile(f.abs, f.st.size), size: f.st.size };
        hashed++;
        cache.set('raw', f.abs, f.st, entry);
      }
      byHash.set(entry.hash, f);
      files[i] = { path: f.path, hash: entry.hash, size: entry.size, mode: f.st.mode & 0o111 ? 0o755 : 0o644 };
    },
  );
  await cache.flush();
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (!files.some((f) => f.path === options.entry)) {
    throw new WeftError(Status.INVALID_ARGUMENT, `entry point "${options.entry}" is not a file in ${root}`);
  }
  const manifest: StageManifest = {
    version: 1,
    entry: options.entry,
    exportName: options.exportName ?? 'start',
    files,
  };
  return {
    manifest,
    stageId: stageIdOf(manifest),
    root,
    hashed,
    content: async (hash): Promise<BlobData> => {
      const f = byHash.get(hash);
      if (f === undefined) throw new Error(`no file with hash ${hash} in this stage`);
      // Large files are streamed; the store verifies their hash as they arrive.
      if (f.st.size > STREAM_ABOVE) return createReadStream(f.abs);
      const content = await readFile(f.abs);
      if (sha256(content) !== hash) throw stagingError(`${f.abs} changed while it was being staged; stage again`);
      return content;
    },
  };
}

/**
 * Stages a directory tree (see {@link planDirectory}): asks the store which
 * contents it lacks, uploads only those, then stores the manifest. Staging
 * an unchanged tree again reads no file contents and uploads nothing.
 */
export async function stageDirectory(
  dir: string,
  store: StageStore,
  options: DirectoryStageOptions,
): Promise<DirectoryStageResult> {
  const plan = await planDirectory(dir, options);
  const result = await uploadStage(plan, store, options);
  return {
    ...result,
    files: plan.manifest.files.length,
    bytes: plan.manifest.files.reduce((n, f) => n + f.size, 0),
  };
}
