/**
 * Algorithm code through the blob store: a spec's local `code.path` (a
 * directory, or a .tar.gz unpacked here first) is staged content-addressed,
 * uploading only what the store lacks, and the spec then names the stage
 * (`code.stage`), so that a control plane and workers on other machines can
 * run it. Used by `weft algorithm apply` (through the Closures upload calls)
 * and by `weft server --register` (straight into its blob store).
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extract } from 'tar';
import { isServiceError } from '@weft/common';
import type { AlgorithmSpec } from '@weft/proto';
import { HashCache, stageDirectory, type DirectoryStageResult, type StageStore } from '@weft/stage';
import { CliError } from './errors.js';

const ARCHIVE = /\.(tar\.gz|tgz)$/;

/** The default entry point of each algorithm env, as the wrappers load it. */
function entryPointOf(spec: AlgorithmSpec): string {
  return spec.code?.entryPoint || (spec.env === 'python' ? 'main.py' : 'index.js');
}

/** What {@link stageAlgorithmCode} did to a spec. */
export interface StagedCode {
  /** The spec to apply: `code.stage` set when there was a local path. */
  spec: AlgorithmSpec;
  /** What staging uploaded; undefined when the spec had no local code. */
  staged: DirectoryStageResult | undefined;
}

/**
 * Stages the spec's `code.path` (absolute, as {@link loadAlgorithmSpecs}
 * leaves it) into the store and returns the spec with `code.stage` set; `path`
 * stays as a note of where the code came from. A spec without a path is
 * returned as it is.
 *
 * @param where how to name the spec in an error (`algorithms.yaml[2]`).
 */
export async function stageAlgorithmCode(
  spec: AlgorithmSpec,
  store: StageStore,
  where: string,
  options: { hashCache?: HashCache } = {},
): Promise<StagedCode> {
  const path = spec.code?.path ?? '';
  if (!path) return { spec, staged: undefined };
  const st = await stat(path).catch(() => undefined);
  if (st === undefined) throw new CliError(`${where}: code.path "${path}" does not exist`);
  const entry = entryPointOf(spec);
  let unpacked: string | undefined;
  try {
    let dir = path;
    if (ARCHIVE.test(path) && st.isFile()) {
      unpacked = await mkdtemp(join(tmpdir(), 'weft-code-'));
      try {
        await extract({ file: path, cwd: unpacked });
      } catch (err) {
        throw new CliError(`${where}: cannot unpack code.path "${path}": ${(err as Error).message}`);
      }
      dir = unpacked;
    } else if (!st.isDirectory()) {
      throw new CliError(`${where}: code.path "${path}" must be a directory or a .tar.gz`);
    }
    let staged: DirectoryStageResult;
    try {
      // An unpacked archive is new files each time: remembering their hashes would only grow the cache.
      const hashCache = unpacked === undefined ? options.hashCache : new HashCache({ dir: null });
      staged = await stageDirectory(dir, store, { entry, ...(hashCache ? { hashCache } : {}) });
    } catch (err) {
      // The server's refusals and lost connections are worded by the caller, as for every call.
      if (err instanceof CliError || isServiceError(err)) throw err;
      const what = (err as Error).message;
      throw new CliError(
        what.startsWith('entry point')
          ? `${where}: code.entryPoint: ${what.replace(unpacked ?? '\0', path)}`
          : `${where}: cannot upload code.path "${path}": ${what}`,
        1,
        { cause: err },
      );
    }
    const code = { path, entryPoint: spec.code?.entryPoint ?? '', stage: staged.stageId };
    return { spec: { ...spec, code }, staged };
  } finally {
    if (unpacked !== undefined) await rm(unpacked, { recursive: true, force: true });
  }
}
