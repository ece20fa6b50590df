/**
 * The built-in `weft-closure` worker: runs staged functions submitted with
 * @weft/client. A warm worker keeps every stage it has laid out and loaded,
 * so a second run of the same code costs one call.
 * @packageDocumentation
 */
import { join } from 'node:path';
import {
  FsStageStore,
  decodeValue,
  encodeValue,
  loadStaged,
  materialize,
  type StagedFunction,
} from '@weft/client/remote';
import type { TaskArgs } from '../algorithm.js';

/** The task's single input. */
export interface ClosureTask {
  stageId: string;
  /** Arguments, encoded with the client's value codec. */
  args: Uint8Array;
  /** The control plane's stage store (content-addressed files and manifests). */
  stageDir: string;
}

const loaded = new Map<string, Promise<StagedFunction>>();

function load(stageDir: string, stageId: string): Promise<StagedFunction> {
  let fn = loaded.get(stageId);
  if (!fn) {
    const store = new FsStageStore(stageDir);
    fn = (async () => {
      const manifest = await store.getManifest(stageId);
      const { dir } = await materialize(manifest, store, join(stageDir, 'run'));
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
  if (!t || typeof t.stageId !== 'string' || !(t.args instanceof Uint8Array) || typeof t.stageDir !== 'string') {
    throw new TypeError('weft-closure: input[0] must be { stageId, args, stageDir }');
  }
  const fn = await load(t.stageDir, t.stageId);
  const callArgs = decodeValue(t.args);
  if (!Array.isArray(callArgs)) throw new TypeError('weft-closure: the arguments must be an array');
  const result: unknown = await fn(...(callArgs as unknown[]));
  try {
    return encodeValue(result);
  } catch (err) {
    throw new TypeError(`the function's return value cannot be sent back: ${(err as Error).message}`);
  }
}
