import { mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256, type StageManifest } from './manifest.js';
import { materialize } from './materialize.js';
import { WORKER_PACKAGES, packageDirs, provideRoot } from './provide.js';
import { MemoryStageStore } from './store.js';

describe('worker-provided packages', () => {
  let tmp: string;
  beforeEach(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'weft-provide-'));
  });
  afterEach(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it("finds the caller's package directories and leaves out what it cannot resolve", () => {
    const dirs = packageDirs([...WORKER_PACKAGES, '@weft/no-such-package'], (s) => import.meta.resolve(s));
    expect(dirs.has('@weft/no-such-package')).toBe(false);
    const common = dirs.get('@weft/common');
    expect(common).toBeDefined();
    expect(common!.endsWith('common')).toBe(true);
  });

  it('makes them importable from a stage laid out below the root, which keeps only its own files', async () => {
    const pkg = join(tmp, 'worker', 'greeting');
    await mkdir(pkg, { recursive: true });
    await writeFile(join(pkg, 'package.json'), JSON.stringify({ name: 'greeting', type: 'module', main: 'index.js' }));
    await writeFile(join(pkg, 'index.js'), "export const hello = 'hello from the worker';\n");
    const code = Buffer.from("import { hello } from 'greeting';\nexport const f = () => hello;\n");
    const manifest: StageManifest = {
      version: 1,
      entry: 'src/a.mjs',
      exportName: 'f',
      files: [{ path: 'src/a.mjs', hash: sha256(code), size: code.length, mode: 0o644 }],
    };
    const store = new MemoryStageStore();
    await store.put(sha256(code), code);

    const dirs = new Map([['greeting', pkg]]);
    const root = await provideRoot(join(tmp, 'cache'), dirs);
    // Idempotent, and another set of packages gets another root.
    expect(await provideRoot(join(tmp, 'cache'), dirs)).toBe(root);
    expect(await provideRoot(join(tmp, 'cache'), new Map())).not.toBe(root);
    expect(await readlink(join(root, 'node_modules', 'greeting'))).toBe(pkg);

    const laid = await materialize(manifest, store, root);
    const mod = (await import(pathToFileURL(laid.entry).href)) as { f: () => string };
    expect(mod.f()).toBe('hello from the worker');
    expect(await readFile(laid.entry, 'utf8')).toBe(code.toString());
  });
});
