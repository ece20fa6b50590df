import { chmod, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HashCache } from './hash-cache.js';
import { planDirectory, stageDirectory } from './directory.js';
import { sha256, stageIdOf } from './manifest.js';
import { materialize } from './materialize.js';
import { MemoryStageStore } from './store.js';

describe('stageDirectory', () => {
  let tmp: string;
  let code: string;
  beforeEach(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'weft-stage-dir-'));
    code = join(tmp, 'code');
    await mkdir(join(code, 'lib'), { recursive: true });
    await mkdir(join(code, 'node_modules', 'dep'), { recursive: true });
    await mkdir(join(code, '.git', 'objects'), { recursive: true });
    await writeFile(join(code, 'index.js'), 'export const start = () => 1;\n');
    await writeFile(join(code, 'lib', 'util.js'), 'export const x = 2;\n');
    await writeFile(join(code, 'run.sh'), '#!/bin/sh\n');
    await chmod(join(code, 'run.sh'), 0o755);
    await writeFile(join(code, 'node_modules', 'dep', 'index.js'), 'module.exports = 3;\n');
    await writeFile(join(code, '.git', 'HEAD'), 'ref: refs/heads/main\n');
    await writeFile(join(code, '.env'), 'A=1\n');
  });
  afterEach(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('stages every file but .git, node_modules included, with modes, and uploads only what is missing', async () => {
    const store = new MemoryStageStore();
    const cache = new HashCache({ dir: null });
    const first = await stageDirectory(code, store, { entry: 'index.js', hashCache: cache });
    expect(first.manifest.files.map((f) => [f.path, f.mode])).toEqual([
      ['.env', 0o644],
      ['index.js', 0o644],
      ['lib/util.js', 0o644],
      ['node_modules/dep/index.js', 0o644],
      ['run.sh', 0o755],
    ]);
    expect(first.manifest).toMatchObject({ version: 1, entry: 'index.js', exportName: 'start' });
    expect(first.stageId).toBe(stageIdOf(first.manifest));
    expect(first).toMatchObject({ files: 5, hashed: 5, newlyUploaded: 5, cached: 0 });
    expect(first.bytes).toBe(first.manifest.files.reduce((n, f) => n + f.size, 0));
    expect(store.manifests.get(first.stageId)).toEqual(first.manifest);

    // Unchanged: no file is read again, nothing is uploaded, same stage.
    const again = await stageDirectory(code, store, { entry: 'index.js', hashCache: cache });
    expect(again).toMatchObject({ stageId: first.stageId, hashed: 0, newlyUploaded: 0, cached: 5 });

    // One file changed: only it is hashed and uploaded.
    await writeFile(join(code, 'lib', 'util.js'), 'export const x = 22;\n');
    await utimes(join(code, 'lib', 'util.js'), new Date(), new Date(Date.now() + 5000));
    const changed = await stageDirectory(code, store, { entry: 'index.js', hashCache: cache });
    expect(changed).toMatchObject({ hashed: 1, newlyUploaded: 1, cached: 4 });
    expect(changed.stageId).not.toBe(first.stageId);
    expect(store.blobs.get(sha256('export const x = 22;\n'))?.toString()).toBe('export const x = 22;\n');
  });

  it('follows symbolic links to files and directories, once around a loop, and skips dangling ones', async () => {
    await writeFile(join(tmp, 'outside.js'), 'export const o = 1;\n');
    await symlink(join(tmp, 'outside.js'), join(code, 'linked.js'));
    await symlink(join(code, 'lib'), join(code, 'lib-alias'));
    await symlink(code, join(code, 'lib', 'loop'));
    await symlink(join(tmp, 'nowhere'), join(code, 'dangling.js'));
    const plan = await planDirectory(code, { entry: 'index.js', hashCache: new HashCache({ dir: null }) });
    const paths = plan.manifest.files.map((f) => f.path);
    expect(paths).toContain('linked.js');
    expect(paths).toContain('lib-alias/util.js');
    expect(paths).not.toContain('dangling.js');
    // The loop back to the root is not walked again.
    expect(paths.some((p) => p.includes('loop/'))).toBe(false);
    expect(await readFile(join(code, 'linked.js'), 'utf8')).toBe('export const o = 1;\n');
  });

  it('lays out as the same tree and refuses an entry point that is not one of the files', async () => {
    const store = new MemoryStageStore();
    const staged = await stageDirectory(code, store, { entry: 'lib/util.js', hashCache: new HashCache({ dir: null }) });
    const out = await materialize(staged.manifest, store, join(tmp, 'run'));
    expect(await readFile(join(out.dir, 'node_modules', 'dep', 'index.js'), 'utf8')).toBe('module.exports = 3;\n');
    expect(out.entry).toBe(join(out.dir, 'lib', 'util.js'));

    await expect(
      stageDirectory(code, store, { entry: 'main.py', hashCache: new HashCache({ dir: null }) }),
    ).rejects.toThrow(/entry point "main.py" is not a file in/);
    await expect(
      stageDirectory(join(tmp, 'missing'), store, { entry: 'index.js', hashCache: new HashCache({ dir: null }) }),
    ).rejects.toThrow(/is not a directory/);
  });
});
