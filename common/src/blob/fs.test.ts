import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsBlobStore } from './fs.js';
import { openBlobStore } from './registry.js';
import { blobStoreContract } from './blob-store.contract.js';

const root = mkdtempSync(join(tmpdir(), 'weft-fs-blobs-'));
blobStoreContract('fs', () => new FsBlobStore(root));

describe('fs blob store', () => {
  it('keeps blobs as plain files under the root, with no temporary files left', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-fs-'));
    const store = new FsBlobStore(dir);
    await store.put('jobs/j1/0/0', [Buffer.from('x')]);
    expect(store.localPath('jobs/j1/0/0')).toBe(join(dir, 'jobs', 'j1', '0', '0'));
    expect(readdirSync(join(dir, 'jobs', 'j1', '0'))).toEqual(['0']);
  });

  it('opens from its URL, relative or absolute', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-fs-'));
    const store = await openBlobStore(`fs:${dir}`);
    expect(store.url).toBe(`fs:${dir}`);
    expect(store.localPath?.('a/b')).toBe(join(dir, 'a', 'b'));
  });

  it('refuses an unwritable directory at check(), naming WEFT_BLOBS', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'weft-fs-')), 'a-file');
    writeFileSync(file, 'not a directory');
    const store = new FsBlobStore(join(file, 'blobs'));
    await expect(store.check()).rejects.toThrow(`WEFT_BLOBS: directory ${join(file, 'blobs')} is not writable`);
  });

  it('refuses unknown schemes and non-URLs, naming the setting', async () => {
    await expect(openBlobStore('gs://bucket/x')).rejects.toThrow('WEFT_BLOBS: unsupported storage scheme "gs:"');
    await expect(openBlobStore('just words', { setting: '--blobs' })).rejects.toThrow(
      '--blobs: "just words" is not a storage URL',
    );
  });
});
