import { chmod, link, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Status, WeftError } from '@weft/common';
import { forEachLimit } from './limit.js';
import { sha256, stageIdOf, validateManifest, type StageFile, type StageManifest } from './manifest.js';
import { decodeValue } from './serializable.js';
import type { StageReader } from './store.js';

/** A stage laid out on disk. */
export interface MaterializedStage {
  readonly stageId: string;
  /** Absolute directory of the stage: `<cacheDir>/<stageId>`. */
  readonly dir: string;
  /** Absolute path of the entry module. */
  readonly entry: string;
}

/** A staged function, ready to call with the task's arguments. */
export type StagedFunction = (...args: unknown[]) => unknown;

/** Options of {@link materialize}. */
export interface MaterializeOptions {
  /** Files written at once; default 16. */
  readonly concurrency?: number;
}

function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Lays a stage out as `<cacheDir>/<stageId>/`, once: a stage is immutable,
 * so a directory that exists is complete and is reused as it is.
 *
 * The files are written into a temporary directory next to it, which is then
 * renamed into place. Concurrent materializers of the same stage (threads or
 * processes) each build their own temporary copy; the first rename wins, the
 * others find the directory there and discard theirs. Nothing ever sees a
 * partial stage.
 *
 * Files are hardlinked from the reader's local content when it has a
 * `localPath` with the right mode, and copied otherwise, with their hash
 * verified. Staged files are read-only (the manifest's mode without write
 * bits): a stage is shared by every run of it, and a hardlinked file is the
 * store's own copy.
 *
 * The manifest is validated first ({@link validateManifest}), so that a
 * manifest from elsewhere cannot write outside the stage directory.
 */
export async function materialize(
  manifest: StageManifest,
  reader: StageReader,
  cacheDir: string,
  options: MaterializeOptions = {},
): Promise<MaterializedStage> {
  const m = validateManifest(manifest);
  const stageId = stageIdOf(m);
  const dir = join(cacheDir, stageId);
  const result: MaterializedStage = { stageId, dir, entry: join(dir, ...m.entry.split('/')) };
  if (await exists(dir)) return result;

  await mkdir(cacheDir, { recursive: true });
  const tmp = await mkdtemp(join(cacheDir, `.tmp-${stageId.slice(0, 12)}-`));
  try {
    const dirs = new Set(m.files.map((f) => dirname(f.path)).filter((d) => d !== '.'));
    for (const d of [...dirs].sort()) await mkdir(join(tmp, ...d.split('/')), { recursive: true });
    await forEachLimit(m.files, options.concurrency ?? 16, (f) =>
      writeStageFile(f, reader, join(tmp, ...f.path.split('/'))),
    );
    try {
      await rename(tmp, dir);
    } catch (err) {
      // Another materializer got there first (ENOTEMPTY/EEXIST); its copy is as good as ours.
      if (!(await exists(dir))) throw err;
      await rm(tmp, { recursive: true, force: true });
    }
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return result;
}

async function writeStageFile(f: StageFile, reader: StageReader, dest: string): Promise<void> {
  const mode = f.mode & ~0o222;
  const local = reader.localPath?.(f.hash);
  if (local !== undefined) {
    try {
      const st = await stat(local);
      // A hardlink shares the store's mode bits, so it is only right when they are already ours.
      if ((st.mode & 0o777) === mode && st.size === f.size) {
        await link(local, dest);
        return;
      }
    } catch {
      // Not there, another file system (EXDEV) or links not allowed: copy instead.
    }
  }
  const data = await reader.get(f.hash);
  if (sha256(data) !== f.hash) {
    throw new WeftError(Status.DATA_LOSS, `content of ${f.path} does not match its hash ${f.hash}`);
  }
  await writeFile(dest, data, { mode });
  await chmod(dest, mode); // writeFile's mode is filtered through the umask
}

/**
 * Loads a materialized stage and returns the function it stages: the export
 * `exportName` of the entry module (for a CommonJS module, also a property of
 * `module.exports`), or for a closure what the generated module's factory
 * returns when given the decoded captured values.
 */
export async function loadStaged(stageDir: string, manifest: StageManifest): Promise<StagedFunction> {
  const m = validateManifest(manifest);
  const entry = join(stageDir, ...m.entry.split('/'));
  const namespace = (await import(pathToFileURL(entry).href)) as Record<string, unknown>;
  const notCallable = (what: string): WeftError =>
    new WeftError(Status.FAILED_PRECONDITION, `stage ${stageIdOf(m)}: ${what} is not a function`);

  if (m.captured !== undefined) {
    const factory = namespace['default'];
    if (typeof factory !== 'function') throw notCallable(`the default export of ${m.entry}`);
    const captured = decodeValue(await readFile(join(stageDir, ...m.captured.split('/'))));
    const fn: unknown = (factory as (captured: unknown) => unknown)(captured);
    if (typeof fn !== 'function') throw notCallable(`the closure built by ${m.entry}`);
    return fn as StagedFunction;
  }

  let fn = namespace[m.exportName];
  const moduleExports = namespace['default'];
  if (typeof fn !== 'function' && typeof moduleExports === 'object' && moduleExports !== null) {
    fn = (moduleExports as Record<string, unknown>)[m.exportName];
  }
  if (typeof fn !== 'function') throw notCallable(`export "${m.exportName}" of ${m.entry}`);
  return fn as StagedFunction;
}
