import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  FsStageStore,
  HashCache,
  MemoryStageStore,
  sha256,
  stageIdOf,
  type BlobData,
  type StageStore,
} from '@weft/stage';
import { locate, type LocatedFunction } from './locate.js';
import { planStage, stage } from './stage.js';

const FIXTURES = fileURLToPath(new URL('../test-fixtures/', import.meta.url));
const PROJ = join(FIXTURES, 'proj');
const run = promisify(execFile);

/** The located form of an exported function, as locate() gives it, without loading the module. */
function exported(file: string, exportName: string): LocatedFunction {
  return { file, line: 1, column: 1, exportName, captured: {}, moduleImportsUsed: [] };
}

/** A copy of the fixture project that a test may change. */
async function copyProject(dir: string): Promise<string> {
  const copy = join(dir, 'proj');
  await cp(PROJ, copy, { recursive: true });
  return copy;
}

async function text(data: BlobData): Promise<string> {
  if (data instanceof Uint8Array) return Buffer.from(data).toString('utf8');
  const chunks: Buffer[] = [];
  for await (const chunk of data) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A store that records what `missing` answered. */
class RecordingStore implements StageStore {
  readonly answers: string[][] = [];
  constructor(readonly inner: MemoryStageStore) {}
  async missing(hashes: readonly string[]): Promise<string[]> {
    const answer = await this.inner.missing(hashes);
    this.answers.push(answer);
    return answer;
  }
  put(hash: string, data: BlobData): Promise<void> {
    return this.inner.put(hash, data);
  }
  putManifest(...args: Parameters<StageStore['putManifest']>): Promise<void> {
    return this.inner.putManifest(...args);
  }
}

const LIB_FILES = [
  'data/config.json',
  'node_modules/fake-pkg/index.js',
  'node_modules/fake-pkg/lib/util.js',
  'node_modules/fake-pkg/node_modules/fake-dep/index.js',
  'node_modules/fake-pkg/node_modules/fake-dep/package.json',
  'node_modules/fake-pkg/package.json',
  'node_modules/shared-dep/index.cjs',
  'node_modules/shared-dep/package.json',
  'package.json',
  'src/format.js',
  'src/lib.js',
  'src/math.js',
  'src/scale.js',
];

describe('planStage', () => {
  let tmp: string;
  beforeEach(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'weft-stage-'));
  });
  afterEach(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('stages exactly the files an exported function needs', async () => {
    const plan = await planStage(exported(join(PROJ, 'src/lib.js'), 'describe'), {
      hashCache: new HashCache({ dir: null }),
    });
    // Relative modules (also via dynamic import), the JSON file, the TS module
    // compiled at its .js path, the package with its dependencies, the
    // project's package.json. Not: the type-only module, unused files,
    // built-ins, the package's dot directory or its nested node_modules that
    // are not dependencies, packages nothing imports.
    expect(plan.manifest.files.map((f) => f.path)).toEqual(LIB_FILES);
    expect(plan.root).toBe(PROJ);
    expect(plan.manifest.entry).toBe('src/lib.js');
    expect(plan.manifest.exportName).toBe('describe');
    expect(plan.manifest.captured).toBeUndefined();
    expect(plan.stageId).toBe(stageIdOf(plan.manifest));
  });

  it('records hashes, sizes and modes, and compiles TypeScript keeping .js specifiers', async () => {
    const plan = await planStage(exported(join(PROJ, 'src/lib.js'), 'describe'), {
      hashCache: new HashCache({ dir: null }),
    });
    const lib = plan.manifest.files.find((f) => f.path === 'src/lib.js')!;
    const libBytes = await readFile(join(PROJ, 'src/lib.js'));
    expect(lib).toEqual({ path: 'src/lib.js', hash: sha256(libBytes), size: libBytes.length, mode: 0o644 });

    const format = plan.manifest.files.find((f) => f.path === 'src/format.js')!;
    const compiled = await text(await plan.content(format.hash));
    expect(compiled).toContain('export function formatLabel(label, n) {');
    expect(compiled).not.toContain(': string');
    expect(compiled).not.toContain('types.js');
    expect(format.size).toBe(Buffer.byteLength(compiled));
  });

  it('stages a closure as its generated module, captured values and what its imports need', async () => {
    const closures = (await import(join(PROJ, 'src/closures.js'))) as {
      makeClosure(x: number, label: string, obj: object, bytes: Uint8Array): (extra: number) => string;
    };
    const located = locate(closures.makeClosure(3, 'hi', { nested: { k: 4 } }, new Uint8Array([1, 2, 3])));
    const plan = await planStage(located, { hashCache: new HashCache({ dir: null }) });
    const closurePath = located.closure!.path.slice(PROJ.length + 1);
    const capturedPath = located.closure!.capturedPath.slice(PROJ.length + 1);
    expect(plan.manifest.entry).toBe(closurePath);
    expect(plan.manifest.exportName).toBe('default');
    expect(plan.manifest.captured).toBe(capturedPath);
    // Not the defining module (closures.js) nor lib.js: only what the closure uses.
    expect(plan.manifest.files.map((f) => f.path)).toEqual(
      [
        'node_modules/fake-pkg/index.js',
        'node_modules/fake-pkg/lib/util.js',
        'node_modules/fake-pkg/node_modules/fake-dep/index.js',
        'node_modules/fake-pkg/node_modules/fake-dep/package.json',
        'node_modules/fake-pkg/package.json',
        'node_modules/shared-dep/index.cjs',
        'node_modules/shared-dep/package.json',
        'package.json',
        closurePath,
        capturedPath,
        'src/math.js',
        'src/scale.js',
      ].sort(),
    );
    const entry = plan.manifest.files.find((f) => f.path === closurePath)!;
    expect(await text(await plan.content(entry.hash))).toBe(located.closure!.code);
  });

  it('gives a stable stage id, which changes when a file changes', async () => {
    const proj = await copyProject(tmp);
    const located = exported(join(proj, 'src/lib.js'), 'describe');
    const first = await planStage(located, { hashCache: new HashCache({ dir: null }) });
    const second = await planStage(located, { hashCache: new HashCache({ dir: null }) });
    expect(second.stageId).toBe(first.stageId);
    // Stage paths are relative: the same project elsewhere is the same stage.
    const original = await planStage(exported(join(PROJ, 'src/lib.js'), 'describe'), {
      hashCache: new HashCache({ dir: null }),
    });
    expect(original.stageId).toBe(first.stageId);

    // Same size, different content, saved later (as an editor would).
    const math = join(proj, 'src/math.js');
    const before = await readFile(math, 'utf8');
    await writeFile(math, before.replace('a * b', 'b * a'));
    const later = new Date(Date.now() + 5000);
    await utimes(math, later, later);
    const cache = new HashCache({ dir: null });
    const changed = await planStage(located, { hashCache: cache });
    expect(changed.stageId).not.toBe(first.stageId);
    const changedFiles = changed.manifest.files.filter(
      (f, i) => f.hash !== first.manifest.files[i]!.hash || f.path !== first.manifest.files[i]!.path,
    );
    expect(changedFiles.map((f) => f.path)).toEqual(['src/math.js']);
  });

  it('uploads nothing and hashes nothing the second time an unchanged project is staged', async () => {
    const proj = await copyProject(tmp);
    const located = exported(join(proj, 'src/lib.js'), 'describe');
    const memory = new MemoryStageStore();
    const store = new RecordingStore(memory);
    const cache = new HashCache({ dir: join(tmp, 'cache') });

    const first = await stage(located, store, { hashCache: cache });
    expect(first.hashed).toBe(LIB_FILES.length);
    expect(first.newlyUploaded).toBe(new Set(first.manifest.files.map((f) => f.hash)).size);
    expect(first.cached).toBe(0);
    expect(memory.puts).toBe(first.newlyUploaded);
    expect(memory.manifests.get(first.stageId)).toEqual(first.manifest);

    const second = await stage(located, store, { hashCache: cache });
    expect(second.stageId).toBe(first.stageId);
    expect(store.answers[1]).toEqual([]);
    expect(second.newlyUploaded).toBe(0);
    expect(second.cached).toBe(first.newlyUploaded);
    expect(second.hashed).toBe(0);
    expect(memory.puts).toBe(first.newlyUploaded);

    // A new cache over the same directory, as in a new process, starts warm.
    const fresh = await planStage(located, { hashCache: new HashCache({ dir: join(tmp, 'cache') }) });
    expect(fresh.hashed).toBe(0);
    expect(fresh.stageId).toBe(first.stageId);

    // Touching one file re-hashes that file only.
    const later = new Date(Date.now() + 5000);
    await utimes(join(proj, 'src/scale.js'), later, later);
    const touched = await stage(located, store, { hashCache: cache });
    expect(touched.hashed).toBe(1);
    expect(touched.stageId).toBe(first.stageId);
    expect(touched.newlyUploaded).toBe(0);
  });

  it('lets a new client process skip hashing through the persistent cache', async () => {
    const proj = await copyProject(tmp);
    const cacheDir = join(tmp, 'cache');
    const args = [
      '--import',
      join(FIXTURES, 'register-ts.mjs'),
      join(FIXTURES, 'plan-stage.mjs'),
      join(proj, 'src/lib.js'),
      'describe',
      cacheDir,
    ];
    const first = JSON.parse((await run(process.execPath, args, { cwd: tmp })).stdout) as {
      stageId: string;
      hashed: number;
    };
    const second = JSON.parse((await run(process.execPath, args, { cwd: tmp })).stdout) as typeof first;
    expect(first.hashed).toBe(LIB_FILES.length);
    expect(second).toEqual({ stageId: first.stageId, hashed: 0 });
    expect((await stat(join(cacheDir, 'stage-hashes.json'))).isFile()).toBe(true);
  });

  it('keeps a symlinked workspace package at its node_modules path, as real files', async () => {
    const proj = join(tmp, 'ws');
    await mkdir(join(proj, 'packages/shared'), { recursive: true });
    await mkdir(join(proj, 'node_modules'), { recursive: true });
    await writeFile(join(proj, 'package.json'), '{"type":"module"}');
    await writeFile(join(proj, 'packages/shared/package.json'), '{"name":"shared","type":"module"}');
    await writeFile(join(proj, 'packages/shared/index.js'), 'export const v = 1;');
    await symlink('../packages/shared', join(proj, 'node_modules/shared'));
    await writeFile(join(proj, 'main.js'), "import { v } from 'shared';\nexport const f = () => v;\n");
    const plan = await planStage(exported(join(proj, 'main.js'), 'f'), { hashCache: new HashCache({ dir: null }) });
    expect(plan.manifest.files.map((f) => f.path)).toEqual([
      'main.js',
      'node_modules/shared/index.js',
      'node_modules/shared/package.json',
      'package.json',
    ]);
  });

  it("leaves out weft's own packages, which the worker provides, wherever they are imported", async () => {
    const proj = join(tmp, 'provided');
    await mkdir(join(proj, 'node_modules/@weft/client'), { recursive: true });
    await mkdir(join(proj, 'node_modules/helper'), { recursive: true });
    await writeFile(join(proj, 'package.json'), '{"type":"module"}');
    await writeFile(join(proj, 'node_modules/@weft/client/package.json'), '{"name":"@weft/client"}');
    await writeFile(join(proj, 'node_modules/@weft/client/index.js'), 'export const big = 1;');
    await writeFile(
      join(proj, 'node_modules/helper/package.json'),
      '{"name":"helper","dependencies":{"@weft/common":"*"}}',
    );
    await writeFile(join(proj, 'node_modules/helper/index.js'), 'export const h = 2;');
    await writeFile(
      join(proj, 'main.js'),
      "import { Submitter } from '@weft/client';\nimport { h } from 'helper';\n" +
        "export const f = async () => [h, (await import('@weft/stage')).sha256, Submitter];\n",
    );
    const paths = async (provided?: readonly string[]): Promise<string[]> =>
      (
        await planStage(exported(join(proj, 'main.js'), 'f'), {
          hashCache: new HashCache({ dir: null }),
          ...(provided ? { provided } : {}),
        })
      ).manifest.files.map((f) => f.path);
    // @weft/common is not installed here: as a provided package, the helper's dependency on it is not looked for.
    expect(await paths()).toEqual([
      'main.js',
      'node_modules/helper/index.js',
      'node_modules/helper/package.json',
      'package.json',
    ]);
    // With nothing provided, @weft/client is staged like any package (and the missing @weft/common is an error).
    await expect(paths([])).rejects.toThrow(/depends on "@weft\/common", which is not installed/);
  });

  it('follows # subpath imports, require with implied extensions, and TS entry files', async () => {
    const proj = join(tmp, 'misc');
    await mkdir(join(proj, 'src/internal'), { recursive: true });
    await writeFile(
      join(proj, 'package.json'),
      JSON.stringify({ type: 'module', imports: { '#internal/*': './src/internal/*' } }),
    );
    await writeFile(
      join(proj, 'src/main.ts'),
      "import { a } from '#internal/a.js';\nexport const f = (): number => a;\n",
    );
    await writeFile(join(proj, 'src/internal/a.js'), "import b from './b.cjs';\nexport const a = b;\n");
    await writeFile(join(proj, 'src/internal/b.cjs'), "module.exports = require('./c');\n");
    await writeFile(join(proj, 'src/internal/c.js'), 'module.exports = 1;\n');
    const plan = await planStage(exported(join(proj, 'src/main.ts'), 'f'), { hashCache: new HashCache({ dir: null }) });
    expect(plan.manifest.entry).toBe('src/main.js');
    expect(plan.manifest.files.map((f) => f.path)).toEqual([
      'package.json',
      'src/internal/a.js',
      'src/internal/b.cjs',
      'src/internal/c.js',
      'src/main.js',
    ]);
  });

  it('names what cannot be found', async () => {
    const proj = join(tmp, 'broken');
    await mkdir(proj, { recursive: true });
    await writeFile(join(proj, 'a.mjs'), "import 'no-such-package';\nexport const f = () => 1;\n");
    await writeFile(join(proj, 'b.mjs'), "import './missing.mjs';\nexport const f = () => 1;\n");
    const cache = new HashCache({ dir: null });
    await expect(planStage(exported(join(proj, 'a.mjs'), 'f'), { hashCache: cache })).rejects.toThrow(
      `cannot find package "no-such-package" imported from ${join(proj, 'a.mjs')}`,
    );
    await expect(planStage(exported(join(proj, 'b.mjs'), 'f'), { hashCache: cache })).rejects.toThrow(
      `cannot find "./missing.mjs" imported from ${join(proj, 'b.mjs')}`,
    );
  });
});

describe('FsStageStore', () => {
  let tmp: string;
  beforeEach(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'weft-store-'));
  });
  afterEach(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('stores content under its hash, read-only, from bytes or a stream', async () => {
    const store = new FsStageStore(tmp);
    const a = Buffer.from('alpha');
    const b = Buffer.from('beta'.repeat(10000));
    expect(await store.missing([sha256(a), sha256(b)])).toEqual([sha256(a), sha256(b)]);
    await store.put(sha256(a), a);
    await store.put(sha256(b), Readable.from([b.subarray(0, 100), b.subarray(100)]));
    expect(await store.missing([sha256(a), sha256(b)])).toEqual([]);
    expect(await store.get(sha256(b))).toEqual(b);
    const path = store.localPath(sha256(a));
    expect(path).toBe(join(tmp, 'cas', sha256(a).slice(0, 2), sha256(a)));
    expect((await stat(path)).mode & 0o777).toBe(0o444);
  });

  it('rejects content that does not match its hash, keeping nothing', async () => {
    const store = new FsStageStore(tmp);
    const wrong = sha256('something else');
    await expect(store.put(wrong, Buffer.from('content'))).rejects.toThrow('does not match its hash');
    expect(await store.missing([wrong])).toEqual([wrong]);
  });

  it('refuses a manifest whose files were not uploaded or whose id is wrong', async () => {
    const store = new FsStageStore(tmp);
    const content = Buffer.from('x');
    const manifest = {
      version: 1 as const,
      entry: 'a.js',
      exportName: 'f',
      files: [{ path: 'a.js', hash: sha256(content), size: 1, mode: 0o644 }],
    };
    await expect(store.putManifest(stageIdOf(manifest), manifest)).rejects.toThrow('were not uploaded');
    await store.put(sha256(content), content);
    await expect(store.putManifest(sha256('nope'), manifest)).rejects.toThrow('does not match stage id');
    await store.putManifest(stageIdOf(manifest), manifest);
    expect(await store.getManifest(stageIdOf(manifest))).toEqual(manifest);
  });
});
