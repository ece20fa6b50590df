/**
 * The S3 adapter against a real S3-compatible server (s3rver in its own
 * process): the blob store contract, multipart uploads, and the start-up
 * check's one-line refusals.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Client } from '@aws-sdk/client-s3';
import { S3BlobStore, parseS3Url } from '../common/src/blob/s3.js';
import { blobStoreContract } from '../common/src/blob/blob-store.contract.js';
import { openBlobStore } from '@weft/common';
import { closedPort, startS3, type S3Server } from './s3.js';

let s3: S3Server;
beforeAll(async () => {
  s3 = await startS3();
  Object.assign(process.env, s3.env);
});
afterAll(async () => {
  await s3?.stop();
});

/** The store under test, with 5 MiB parts from 5 MiB on, so the contract's 12 MiB blobs are multipart uploads. */
function store(url = `${s3.url('contract')}&part_size_mib=5&multipart_threshold_mib=5`): Promise<S3BlobStore> {
  return openBlobStore(url) as Promise<S3BlobStore>;
}

blobStoreContract('s3 (s3rver)', () => store());

function withCredentials(id: string, secret: string): S3BlobStore {
  const settings = parseS3Url(new URL(s3.url('creds')));
  return new S3BlobStore(
    settings,
    new S3Client({
      region: settings.region,
      endpoint: settings.endpoint!,
      forcePathStyle: true,
      credentials: { accessKeyId: id, secretAccessKey: secret },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    }),
  );
}

describe('S3 blob store', () => {
  it('sends sidecars a URL that carries every setting but no secret, and reopens from it', async () => {
    const a = await store();
    expect(a.url).toContain(`endpoint=${encodeURIComponent(s3.endpoint)}`);
    expect(a.url).not.toMatch(/S3RVER/);
    const b = await store(a.url);
    expect(b.settings).toEqual(a.settings);
    await a.put('same/key', [Buffer.from('visible to both')]);
    expect((await b.get('same/key')).toString()).toBe('visible to both');
  });

  it('keeps every blob under its prefix in the bucket', async () => {
    const a = await store(s3.url('one/prefix'));
    const other = await store(s3.url('other'));
    await a.put('jobs/j/0/0', [Buffer.from('x')]);
    expect(await other.has('jobs/j/0/0')).toBe(false);
    const keys: string[] = [];
    for await (const k of a.list('jobs/')) keys.push(k);
    expect(keys).toEqual(['jobs/j/0/0']);
  });

  it('refuses an unknown bucket at check(), naming WEFT_BLOBS and the bucket', async () => {
    const bad = await store(`s3://no-such-bucket/x?endpoint=${encodeURIComponent(s3.endpoint)}`);
    await expect(bad.check()).rejects.toThrow(`WEFT_BLOBS: bucket "no-such-bucket" does not exist at ${s3.endpoint}`);
  });

  // s3rver does not verify SigV4 signatures, so a wrong secret passes here; common/src/blob/s3.test.ts
  // checks how SignatureDoesNotMatch is reported.
  it('refuses an unknown access key, naming the credential variables', async () => {
    await expect(withCredentials('NOBODY', 'S3RVER').check()).rejects.toThrow(
      /^AWS_ACCESS_KEY_ID\/AWS_SECRET_ACCESS_KEY: .* refused the credentials for bucket "weft" \(InvalidAccessKeyId\)/,
    );
  });

  it('refuses an unreachable endpoint, naming the endpoint', async () => {
    const port = await closedPort();
    const bad = await store(`s3://weft/x?endpoint=http://127.0.0.1:${port}`);
    await expect(bad.check()).rejects.toThrow(`WEFT_BLOBS endpoint: cannot reach http://127.0.0.1:${port}`);
  });

  it('fails a read with UNAVAILABLE naming the blob while the server is down, and works again after', async () => {
    const a = await store();
    await a.put('outage/k', [Buffer.from('v')]);
    await s3.kill();
    try {
      const err = await a.get('outage/k').then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).toMatch(/^S3 get "outage\/k" in bucket "weft" at http:\/\/127\.0\.0\.1:\d+ failed: /);
    } finally {
      await s3.restart();
    }
    expect((await a.get('outage/k')).toString()).toBe('v');
  });
});
