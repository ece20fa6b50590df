import { createHash } from 'node:crypto';
import { invalid } from '@weft/common';

/** One file of a stage. */
export interface StageFile {
  /** Path inside the stage: relative, `/`-separated, no `.` or `..` segments. */
  readonly path: string;
  /** sha256 of the content, lowercase hex. */
  readonly hash: string;
  /** Content size in bytes. */
  readonly size: number;
  /** Permission bits: 0o755 for files with an executable bit, 0o644 for the rest (as git records them). */
  readonly mode: number;
}

/**
 * What a stage is: every file the function needs, by content hash, and how to
 * call it. The stage id is the sha256 of the manifest's canonical JSON (see
 * {@link stageIdOf}), so a stage is immutable and identical code staged
 * from two machines, or twice, gets the same id.
 *
 * - An exported function: `entry` is its module, `exportName` its export.
 * - A closure: `entry` is the generated module (see `ClosureModule`),
 *   `exportName` is `default`, the factory, and `captured` is the msgpack
 *   file of captured values to call the factory with; the factory returns the
 *   closure.
 */
export interface StageManifest {
  readonly version: 1;
  /** Stage path of the module to import. */
  readonly entry: string;
  /** The export to call, or for a closure the factory (`default`). */
  readonly exportName: string;
  /** Closures only: stage path of the captured values, msgpack as `encodeValue` writes it. */
  readonly captured?: string;
  /** Every file, sorted by path. */
  readonly files: readonly StageFile[];
}

/** sha256 of bytes or text (UTF-8), lowercase hex. */
export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * JSON with object keys sorted and no whitespace, so that equal values give
 * equal text whatever order their keys were set in.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The stage id: sha256 (hex) of the manifest's canonical JSON. */
export function stageIdOf(manifest: StageManifest): string {
  return sha256(canonicalJson(manifest));
}

const HASH = /^[0-9a-f]{64}$/;

/** True for a safe stage path: relative, `/`-separated, no empty, `.` or `..` segments. */
export function isStagePath(path: string): boolean {
  if (path === '' || path.startsWith('/') || path.includes('\\') || path.includes('\0')) return false;
  return path.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

/**
 * Checks that a manifest received from elsewhere is well formed before any
 * of it touches the disk: paths stay inside the stage directory, no path is
 * both a file and a directory, hashes and modes are what they claim to be
 * and the entry and captured files are part of the stage.
 */
export function validateManifest(value: unknown): StageManifest {
  if (typeof value !== 'object' || value === null) throw invalid('manifest', 'must be an object');
  const m = value as Record<string, unknown>;
  if (m['version'] !== 1) throw invalid('manifest.version', `unsupported version ${JSON.stringify(m['version'])}`);
  if (!Array.isArray(m['files'])) throw invalid('manifest.files', 'must be an array');
  const files = m['files'] as unknown[];
  const paths = new Set<string>();
  let previous = '';
  files.forEach((f, i) => {
    const field = `manifest.files[${i}]`;
    if (typeof f !== 'object' || f === null) throw invalid(field, 'must be an object');
    const { path, hash, size, mode } = f as Record<string, unknown>;
    if (typeof path !== 'string' || !isStagePath(path))
      throw invalid(`${field}.path`, `unsafe path ${JSON.stringify(path)}`);
    if (path <= previous) throw invalid(`${field}.path`, 'files must be sorted by path, without duplicates');
    previous = path;
    if (typeof hash !== 'string' || !HASH.test(hash))
      throw invalid(`${field}.hash`, 'must be a sha256 in lowercase hex');
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw invalid(`${field}.size`, 'must be a byte count');
    }
    if (mode !== 0o644 && mode !== 0o755) throw invalid(`${field}.mode`, 'must be 0o644 or 0o755');
    paths.add(path);
  });
  for (const path of paths) {
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const dir = segments.slice(0, i).join('/');
      if (paths.has(dir)) throw invalid('manifest.files', `"${dir}" is both a file and a directory`);
    }
  }
  if (typeof m['entry'] !== 'string' || !paths.has(m['entry']))
    throw invalid('manifest.entry', 'must be one of the files');
  if (typeof m['exportName'] !== 'string' || m['exportName'] === '') {
    throw invalid('manifest.exportName', 'must be a non-empty string');
  }
  if (m['captured'] !== undefined && (typeof m['captured'] !== 'string' || !paths.has(m['captured']))) {
    throw invalid('manifest.captured', 'must be one of the files');
  }
  return value as StageManifest;
}
