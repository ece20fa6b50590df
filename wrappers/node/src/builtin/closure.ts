/**
 * The built-in `weft-closure` worker: runs staged functions submitted with
 * @weft/client. Stages come from the blob store the sidecar gives it
 * (`WEFT_STORAGE_URL`) and are laid out under `WEFT_CACHE_DIR` (default
 * `<os tmp>/weft-cache`). A warm worker keeps every stage it has laid out
 * and loaded, so a second run of the same code costs one call.
 *
 * weft's own packages are not staged with closures: this worker provides its
 * own copies, importable from every stage it lays out (see `provideRoot`).
 * @weft/client is an optional peer of this package (it carries the
 * TypeScript compiler, which no algorithm or server should have to install):
 * where it is installed beside the worker, closures can submit closures.
 * @packageDocumentation
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBlobStore } from '@weft/common';
import {
  BlobStageStore,
  WORKER_PACKAGES,
  decodeValue,
  encodeValue,
  loadStaged,
  materialize,
  packageDirs,
  provideRoot,
  type StagedFunction,
} from '@weft/stage';
import type { TaskArgs } from '../algorithm.js';

/** The task's single input. */
export interface ClosureTask {
  stageId: string;
  /** Arguments, encoded with the client's value codec. */
  args: Uint8Array;
}

/** The worker's cache directory: `$WEFT_CACHE_DIR`, else `<os tmp>/weft-cache`. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env['WEFT_CACHE_DIR'] || join(tmpdir(), 'weft-cache');
}

let stages: Promise<{ store: BlobStageStore; layoutDir: string }> | undefined;

/** The stage store and where stages are laid out, opened once per process. */
function openStages(): Promise<{ store: BlobStageStore; layoutDir: string }> {
  stages ??= (async () => {
    const url = process.env['WEFT_STORAGE_URL'];
    if (!url) throw new Error('weft-closure: WEFT_STORAGE_URL is not set (the sidecar sets it)');
    const blobs = await openBlobStore(url, { setting: 'WEFT_STORAGE_URL' });
    const provided = packageDirs(WORKER_PACKAGES, (s) => import.meta.resolve(s));
    const layoutDir = await provideRoot(join(cacheDir(), 'stages'), provided);
    return { store: new BlobStageStore(blobs), layoutDir };
  })();
  // A failure is not kept: the next run tries again.
  stages.catch(() => (stages = undefined));
  return stages;
}

const loaded = new Map<string, Promise<StagedFunction>>();

function load(stageId: string): Promise<StagedFunction> {
  let fn = loaded.get(stageId);
  if (!fn) {
    fn = (async () => {
      const { store, layoutDir } = await openStages();
      const manifest = await store.getManifest(stageId);
      const { dir } = await materialize(manifest, store, layoutDir);
      return loadStaged(dir, manifest);
    })();
    // A failed load is not kept: the next run tries again.
    fn.catch(() => loaded.delete(stageId));
    loaded.set(stageId, fn);
  }
  return fn;
}

export async function start(args: TaskArgs): Promise<Buffer> {
  const t = args.input[0] as Partial<ClosureTask> | undefined;
  if (!t || typeof t.stageId !== 'string' || !(t.args instanceof Uint8Array)) {
    throw new TypeError('weft-closure: input[0] must be { stageId, args }');
  }
  const fn = await load(t.stageId);
  const callArgs = decodeValue(t.args);
  if (!Array.isArray(callArgs)) throw new TypeError('weft-closure: the arguments must be an array');
  const result: unknown = await fn(...(callArgs as unknown[]));
  try {
    return encodeValue(result);
  } catch (err) {
    throw new TypeError(`the function's return value cannot be sent back: ${(err as Error).message}`);
  }
}
