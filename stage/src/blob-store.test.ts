import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsBlobStore, Status, WeftError, type BlobStore } from '@weft/common';
import { BlobStageStore, contentKey, manifestKey } from './blob-store.js';
import { sha256, stageIdOf, type StageManifest } from './manifest.js';
import { materialize } from './materialize.js';

const A = Buffer.from('export const f = () => 1;\n');
const B = Buffer.from('#!/bin/sh\necho hi\n');

function manifestOf(): StageManifest {
  return {
    version: 1,
    entry: 'm/a.mjs',
    exportName: 'f',
    files: [
      { path: 'bin/run.sh', hash: sha256(B), size: B.length, mode: 0o755 },
      { path: 'm/a.mjs', hash: sha256(A), size: A.length, mode: 0o644 },
    ],
  };
}

async function list(blobs: BlobStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const k of blobs.list(prefix)) keys.push(k);
  return keys.sort();
}

describe('BlobStageStore', () => {
  let tmp: string;
  let blobs: FsBlobStore;
  let store: BlobStageStore;
  beforeEach(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'weft-blob-stage-'));
    blobs = new FsBlobStore(join(tmp, 'blobs'));
    store = new BlobStageStore(blobs);
  });
  afterEach(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('stores content under cas/<2 hex>/<hash>, from bytes or a stream, and says what is missing', async () => {
    const [ha, hb] = [sha256(A), sha256(B)];
    expect(await store.missing([ha, hb, ha])).toEqual([ha, hb, ha]);
    await store.put(ha, A);
    await store.put(hb, Readable.from([B.subarray(0, 5), B.subarray(5)]));
    expect(await store.missing([ha, hb])).toEqual([]);
    expect(await list(blobs, 'cas/')).toEqual([contentKey(ha), contentKey(hb)].sort());
    expect(contentKey(ha)).toBe(`cas/${ha.slice(0, 2)}/${ha}`);
    expect(await store.get(hb)).toEqual(B);
    // Read-only on the fs store, since laid-out stages hardlink it.
    expect((await stat(blobs.localPath(contentKey(ha)))).mode & 0o777).toBe(0o444);
  });

  it('refuses content that does not match its hash and leaves nothing behind', async () => {
    const claimed = sha256(A);
    const err = await store.put(claimed, Readable.from([B])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeftError);
    expect((err as WeftError).code).toBe(Status.DATA_LOSS);
    expect((err as Error).message).toMatch(/does not match its hash/);
    expect(await store.missing([claimed])).toEqual([claimed]);
    expect(await blobs.has(contentKey(claimed))).toBe(false);
    // No temporary file either.
    expect(await readdir(join(tmp, 'blobs', 'cas', claimed.slice(0, 2))).catch(() => [])).toEqual([]);
    await expect(store.put('not-a-hash', A)).rejects.toThrow(/not a sha256 hash/);
  });

  it('refuses a manifest before all of its content, then stores it at stages/<id>.json', async () => {
    const m = manifestOf();
    const id = stageIdOf(m);
    await store.put(sha256(A), A);
    await expect(store.putManifest(id, m)).rejects.toThrow(/1 file\(s\) of stage .* were not uploaded/);
    expect(await store.hasManifest(id)).toBe(false);
    await store.put(sha256(B), B);
    await expect(store.putManifest('0'.repeat(64), m)).rejects.toThrow(/does not match stage id/);
    await store.putManifest(id, m);
    expect(await store.hasManifest(id)).toBe(true);
    expect(await list(blobs, 'stages/')).toEqual([manifestKey(id)]);
    expect(await store.getManifest(id)).toEqual(m);
    const missing = await store.getManifest('f'.repeat(64)).catch((e: unknown) => e);
    expect((missing as WeftError).code).toBe(Status.NOT_FOUND);
  });

  it('lays a stage out by hardlinking from the fs store, and by copying from a store without a local view', async () => {
    const m = manifestOf();
    await store.put(sha256(A), A);
    await store.put(sha256(B), B);
    await store.putManifest(stageIdOf(m), m);
    const linked = await materialize(await store.getManifest(stageIdOf(m)), store, join(tmp, 'run'));
    const [laid, blob] = await Promise.all([stat(linked.entry), stat(blobs.localPath(contentKey(sha256(A))))]);
    expect(laid.ino).toBe(blob.ino);

    // The same blobs seen through a store that has no localPath (as S3 is).
    const remote: BlobStore = {
      url: blobs.url,
      put: (k, p) => blobs.put(k, p),
      putStream: (k, b) => blobs.putStream(k, b),
      putFile: (k, p) => blobs.putFile(k, p),
      get: (k) => blobs.get(k),
      getToFile: (k, p) => blobs.getToFile(k, p),
      read: (k, o) => blobs.read(k, o),
      size: (k) => blobs.size(k),
      has: (k) => blobs.has(k),
      list: (p) => blobs.list(p),
      deletePrefix: (p) => blobs.deletePrefix(p),
      check: () => blobs.check(),
      close: () => blobs.close(),
    };
    const viaRemote = new BlobStageStore(remote);
    expect(viaRemote.localPath(sha256(A))).toBeUndefined();
    const copied = await materialize(await viaRemote.getManifest(stageIdOf(m)), viaRemote, join(tmp, 'copied'));
    const st = await stat(copied.entry);
    expect(st.ino).not.toBe(blob.ino);
    expect(st.mode & 0o777).toBe(0o444);
    expect((await stat(join(copied.dir, 'bin', 'run.sh'))).mode & 0o777).toBe(0o555);
  });
});
