import { describe, expect, it } from 'vitest';
import type { S3Client } from '@aws-sdk/client-s3';
import { S3BlobStore, formatS3Url, parseS3Url } from './s3.js';

const url = (s: string): URL => new URL(s);

describe('parseS3Url', () => {
  it('reads bucket, prefix and every setting from the URL', () => {
    const s = parseS3Url(
      url(
        's3://my-bucket/weft/prod/?endpoint=http://minio:9000&region=eu-west-1&path_style=true&part_size_mib=16&queue_size=2',
      ),
      {},
    );
    expect(s).toEqual({
      bucket: 'my-bucket',
      prefix: 'weft/prod',
      endpoint: 'http://minio:9000',
      region: 'eu-west-1',
      pathStyle: true,
      checksums: 'when_required',
      partSize: 16 * 1024 * 1024,
      queueSize: 2,
      multipartThreshold: 256 * 1024 * 1024,
    });
  });

  it('takes AWS defaults from the environment, with checksums on for AWS itself', () => {
    const s = parseS3Url(url('s3://b-1'), { AWS_REGION: 'us-west-2' });
    expect(s).toMatchObject({ prefix: '', endpoint: undefined, region: 'us-west-2', pathStyle: false });
    expect(s.checksums).toBe('when_supported');
    expect(parseS3Url(url('s3://b-1'), {}).region).toBe('us-east-1');
    expect(parseS3Url(url('s3://b-1'), { AWS_ENDPOINT_URL_S3: 'https://acc.r2.cloudflarestorage.com' })).toMatchObject({
      endpoint: 'https://acc.r2.cloudflarestorage.com',
      pathStyle: true,
      checksums: 'when_required',
    });
  });

  it('round-trips through the URL sent to sidecars', () => {
    const s = parseS3Url(url('s3://bkt/a/b?endpoint=https://storage.googleapis.com&region=auto'), {});
    expect(parseS3Url(url(formatS3Url(s)), {})).toEqual(s);
  });

  it('refuses bad settings, naming each', () => {
    expect(() => parseS3Url(url('s3://Bad_Bucket/x'), {})).toThrow('WEFT_BLOBS: "Bad_Bucket" is not a valid bucket');
    expect(() => parseS3Url(url('s3://key:secret@bkt/x'), {})).toThrow('credentials do not belong in the URL');
    expect(() => parseS3Url(url('s3://bkt/x?endpoint=minio:9000'), {})).toThrow(
      'WEFT_BLOBS endpoint: "minio:9000" must be http:// or https://',
    );
    expect(() => parseS3Url(url('s3://bkt/x?part_size_mib=1'), {})).toThrow(
      'WEFT_BLOBS part_size_mib: "1" must be a number of MiB >= 5',
    );
    expect(() => parseS3Url(url('s3://bkt/x?path_style=maybe'), {})).toThrow('WEFT_BLOBS path_style');
    expect(() => parseS3Url(url('s3://bkt/x?regoin=eu'), {})).toThrow('unknown parameter "regoin"');
    expect(() => parseS3Url(url('s3://bkt/x?queue_size=0'), {})).toThrow('WEFT_BLOBS queue_size');
    expect(() => parseS3Url(url('s3://bkt/x?multipart_threshold_mib=x'), {})).toThrow(
      'WEFT_BLOBS multipart_threshold_mib',
    );
  });
});

/** A client whose every request fails as S3 would answer. */
function failing(err: object): S3Client {
  return { send: () => Promise.reject(Object.assign(new Error('message from S3'), err)) } as unknown as S3Client;
}

describe('S3BlobStore.check', () => {
  const settings = parseS3Url(url('s3://bkt/p?endpoint=http://127.0.0.1:9&region=auto'), {});
  const check = (err: object): Promise<void> => new S3BlobStore(settings, failing(err)).check();

  it('names the credential variables when the secret is wrong or the key may not write', async () => {
    await expect(check({ name: 'SignatureDoesNotMatch', $metadata: { httpStatusCode: 403 } })).rejects.toThrow(
      'AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: http://127.0.0.1:9 refused the credentials for bucket "bkt" (SignatureDoesNotMatch)',
    );
    await expect(check({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } })).rejects.toThrow('(AccessDenied)');
  });

  it('says how to provide credentials when there are none', async () => {
    await expect(check({ name: 'CredentialsProviderError' })).rejects.toThrow(
      /^AWS credentials: none found for the S3 store \(set AWS_ACCESS_KEY_ID/,
    );
  });

  it('names the region setting when the bucket lives elsewhere', async () => {
    await expect(check({ name: 'PermanentRedirect', $metadata: { httpStatusCode: 301 } })).rejects.toThrow(
      'WEFT_BLOBS region: bucket "bkt" is not in region "auto"',
    );
  });
});
