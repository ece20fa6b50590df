import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsStageStore, HashCache, materialize, sha256, type StageManifest, type StageReader } from '@weft/stage';
import { locate, type LocatedFunction } from './locate.js';
import { stage } from './stage.js';

const FIXTURES = fileURLToPath(new URL('../test-fixtures/', import.meta.url));
const SRC = join(FIXTURES, 'proj/src');
const run = promisify(execFile);

type Fn = (...args: never[]) => unknown;
interface Closures {
  makeClosure: (x: number, label: string, obj: { nested: { k: number } }, bytes: Uint8Array) => Fn;
  makeShouter: (s: string) => Fn;
  makeFactorial: () => Fn;
  makeMapReader: (map: Map<string, number>, tags: Set<string>) => Fn;
}

async function closures(): Promise<Closures> {
  return (await import(join(SRC, 'closures.js'))) as Closures;
}

describe('materialize and loadStaged', () => {
  let tmp: string;
  let storeDir: string;
  let store: FsStageStore;
  beforeEach(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'weft-materialize-'));
    storeDir = join(tmp, 'store');
    store = new FsStageStore(storeDir);
  });
  afterEach(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  /**
   * Stages a function, then in a fresh Node process that shares nothing with
   * this one (its own working directory, only the store to read from)
   * materializes the stage into `cacheDir`, loads the function and calls it.
   */
  async function runRemotely(located: LocatedFunction, args: unknown[], cacheDir = join(tmp, 'stages')) {
    const staged = await stage(located, store, { hashCache: new HashCache({ dir: null }) });
    const { stdout } = await run(
      process.execPath,
      [
        '--import',
        join(FIXTURES, 'register-ts.mjs'),
        join(FIXTURES, 'run-staged.mjs'),
        storeDir,
        staged.stageId,
        cacheDir,
        JSON.stringify(args),
      ],
      { cwd: tmp },
    );
    const out = JSON.parse(stdout) as { result: unknown; entry: string };
    expect(out.entry.startsWith(join(cacheDir, staged.stageId))).toBe(true);
    return { ...out, stageId: staged.stageId, manifest: staged.manifest };
  }

  it('runs an exported function that needs relative, TypeScript, JSON and package modules', async () => {
    const lib = (await import(join(SRC, 'lib.js'))) as {
      describe: (n: number) => string;
      later: (n: number) => Promise<number>;
    };
    const expected = lib.describe(2);
    expect(expected).toBe('total:38');
    const { result } = await runRemotely(locate(lib.describe), [2]);
    expect(result).toBe(expected);
    const later = await runRemotely(locate(lib.later), [4]);
    expect(later.result).toBe(await lib.later(4));
  });

  it('runs an exported function of a TypeScript module', async () => {
    const format = (await import(join(SRC, 'format.ts'))) as { formatLabel: (l: string, n: number) => string };
    const { result } = await runRemotely(locate(format.formatLabel), ['n', 7]);
    expect(result).toBe('n:7');
  });

  it('runs a closure defined in a TypeScript module', async () => {
    const format = (await import(join(SRC, 'format.ts'))) as { makeLabeler: (prefix: string) => Fn };
    const located = locate(format.makeLabeler('p'));
    expect(located.moduleImportsUsed).toEqual(['./format.js']);
    expect((await runRemotely(located, [3])).result).toBe('p:3');
  });

  it('runs a closure with its captured values and imports', async () => {
    const fn = (await closures()).makeClosure(3, 'hi', { nested: { k: 4 } }, new Uint8Array([1, 2, 3]));
    const expected = fn(5 as never);
    expect(expected).toBe('hi:15:17:4:3:1');
    const { result } = await runRemotely(locate(fn), [5]);
    expect(result).toBe(expected);
  });

  it('runs closures that use an export of their module, call themselves, or capture a Map and a Set', async () => {
    const c = await closures();
    expect((await runRemotely(locate(c.makeShouter('hey')), [])).result).toBe('HEY!');
    expect((await runRemotely(locate(c.makeFactorial()), [5])).result).toBe(120);
    const reader = c.makeMapReader(new Map([['a', 1]]), new Set(['x', 'y']));
    expect((await runRemotely(locate(reader), ['a'])).result).toEqual([1, 'x,y', 2]);
  });

  it('is safe when several processes materialize the same stage at once', async () => {
    const lib = (await import(join(SRC, 'lib.js'))) as { describe: (n: number) => string };
    const located = locate(lib.describe);
    const cacheDir = join(tmp, 'shared-stages');
    const results = await Promise.all([1, 2, 3, 4].map(() => runRemotely(located, [2], cacheDir)));
    expect(results.map((r) => r.result)).toEqual(['total:38', 'total:38', 'total:38', 'total:38']);
    // One stage directory, no temporary directories left behind.
    expect(await readdir(cacheDir)).toEqual([results[0]!.stageId]);
  });

  it('is safe when one process materializes the same stage concurrently, and hardlinks from the store', async () => {
    const lib = (await import(join(SRC, 'lib.js'))) as { describe: (n: number) => string };
    const staged = await stage(locate(lib.describe), store, { hashCache: new HashCache({ dir: null }) });
    const cacheDir = join(tmp, 'stages');
    const results = await Promise.all(Array.from({ length: 8 }, () => materialize(staged.manifest, store, cacheDir)));
    expect(new Set(results.map((r) => r.dir)).size).toBe(1);
    expect(await readdir(cacheDir)).toEqual([staged.stageId]);

    const dir = results[0]!.dir;
    for (const f of staged.manifest.files) {
      const st = await stat(join(dir, f.path));
      expect(st.size).toBe(f.size);
      expect(st.mode & 0o777).toBe(f.mode & ~0o222);
    }
    const entry = staged.manifest.files.find((f) => f.path === staged.manifest.entry)!;
    const [staged1, blob] = await Promise.all([stat(results[0]!.entry), stat(store.blobPath(entry.hash))]);
    expect(staged1.ino).toBe(blob.ino);
  });

  it('copies and verifies content from a reader without local paths', async () => {
    const content = Buffer.from('export const f = () => 1;\n');
    const manifest: StageManifest = {
      version: 1,
      entry: 'm/a.mjs',
      exportName: 'f',
      files: [{ path: 'm/a.mjs', hash: sha256(content), size: content.length, mode: 0o755 }],
    };
    const honest: StageReader = { get: () => Promise.resolve(content) };
    const out = await materialize(manifest, honest, join(tmp, 'ok'));
    expect((await stat(out.entry)).mode & 0o777).toBe(0o555);

    const tampered: StageReader = { get: () => Promise.resolve(Buffer.from('export const f = () => 2;\n')) };
    await expect(materialize(manifest, tampered, join(tmp, 'bad'))).rejects.toThrow('does not match its hash');
    expect(await readdir(join(tmp, 'bad'))).toEqual([]);
  });

  it('refuses manifests with paths that leave the stage', async () => {
    const content = Buffer.from('x');
    const reader: StageReader = { get: () => Promise.resolve(content) };
    for (const path of ['../evil.js', '/etc/evil.js', 'a/../../evil.js', 'a//b.js']) {
      const manifest = {
        version: 1 as const,
        entry: path,
        exportName: 'f',
        files: [{ path, hash: sha256(content), size: 1, mode: 0o644 }],
      };
      await expect(materialize(manifest, reader, join(tmp, 'evil'))).rejects.toThrow('unsafe path');
    }
    expect(await readdir(tmp)).not.toContain('evil.js');
    expect(await readdir(join(tmp, '..'))).not.toContain('evil.js');
  });
});
