import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Status, WeftError, invalid } from '../errors.js';
import { checkBlobKey, writeStreamAtomic } from './fs.js';
import type { BlobStore } from './port.js';

const MiB = 1024 * 1024;

/** Everything an S3 blob store needs besides credentials, which come from the AWS environment. */
export interface S3Settings {
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing slashes; '' for the bucket's root. */
  prefix: string;
  /** e.g. `http://127.0.0.1:9000` for MinIO; undefined for AWS S3 itself. */
  endpoint: string | undefined;
  region: string;
  /** Path-style URLs (`endpoint/bucket/key`): MinIO and most S3-compatible stores need them. */
  pathStyle: boolean;
  /**
   * Whether to send and check CRC checksums on every request (`when_supported`, the SDK's
   * default since 3.729) or only where S3 requires them (`when_required`). Many S3-compatible
   * stores reject the newer checksum headers, so any custom endpoint defaults to `when_required`.
   */
  checksums: 'when_supported' | 'when_required';
  /** Multipart part size: memory of one upload is at most partSize × queueSize. */
  partSize: number;
  /**
   * Blobs of known size up to this many bytes go in one streamed PutObject;
   * larger ones, and streams of unknown length, as multipart uploads. One PUT
   * needs no buffering and no server-side assembly of parts (which on some
   * S3-compatible servers costs a second copy); parts give parallelism and
   * per-part retries for big objects.
   */
  multipartThreshold: number;
  /** Parts uploaded at once. */
  queueSize: number;
}

/** Accepts true/false/1/0/yes/no, naming the parameter when it is anything else. */
function flag(v: string, name: string): boolean {
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  throw invalid(`WEFT_BLOBS ${name}`, `"${v}" is not true or false`);
}

function mib(v: string, name: string, min: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw invalid(`WEFT_BLOBS ${name}`, `"${v}" must be a number of MiB >= ${min}`);
  return Math.round(n * MiB);
}

/**
 * Reads `s3://bucket/prefix?endpoint=…&region=…&path_style=…&checksums=…&part_size_mib=…&queue_size=…`.
 * Settings missing from the URL come from the environment: `AWS_ENDPOINT_URL_S3` or
 * `AWS_ENDPOINT_URL`, `AWS_REGION` or `AWS_DEFAULT_REGION` (else us-east-1).
 */
export function parseS3Url(url: URL, env: NodeJS.ProcessEnv = process.env): S3Settings {
  if (url.protocol !== 's3:') throw invalid('WEFT_BLOBS', `"${url.href}" is not an s3:// URL`);
  const bucket = url.hostname;
  // S3's bucket naming rules (the DNS-compatible subset every S3-compatible store accepts).
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw invalid('WEFT_BLOBS', `"${bucket}" is not a valid bucket name (3-63 of a-z, 0-9, '.', '-')`);
  }
  if (url.username || url.password) {
    throw invalid('WEFT_BLOBS', 'credentials do not belong in the URL: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY');
  }
  const q = url.searchParams;
  const known = new Set([
    'endpoint',
    'region',
    'path_style',
    'checksums',
    'part_size_mib',
    'queue_size',
    'multipart_threshold_mib',
  ]);
  for (const k of q.keys()) {
    if (!known.has(k)) throw invalid('WEFT_BLOBS', `unknown parameter "${k}" (known: ${[...known].join(', ')})`);
  }
  const endpoint = q.get('endpoint') || env['AWS_ENDPOINT_URL_S3'] || env['AWS_ENDPOINT_URL'] || undefined;
  if (endpoint !== undefined) {
    let e: URL;
    try {
      e = new URL(endpoint);
    } catch {
      throw invalid('WEFT_BLOBS endpoint', `"${endpoint}" is not a URL (e.g. http://127.0.0.1:9000)`);
    }
    if (e.protocol !== 'http:' && e.protocol !== 'https:') {
      throw invalid('WEFT_BLOBS endpoint', `"${endpoint}" must be http:// or https://`);
    }
  }
  const checksums = q.get('checksums') ?? (endpoint ? 'when_required' : 'when_supported');
  if (checksums !== 'when_required' && checksums !== 'when_supported') {
    throw invalid('WEFT_BLOBS checksums', `"${checksums}" must be when_required or when_supported`);
  }
  const queueSize = Number(q.get('queue_size') ?? 4);
  if (!Number.isInteger(queueSize) || queueSize < 1 || queueSize > 64) {
    throw invalid('WEFT_BLOBS queue_size', `"${q.get('queue_size')}" must be an integer from 1 to 64`);
  }
  return {
    bucket,
    prefix: decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, ''),
    endpoint,
    region: q.get('region') || env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || 'us-east-1',
    pathStyle: q.has('path_style') ? flag(q.get('path_style')!, 'path_style') : endpoint !== undefined,
    checksums,
    // S3 refuses parts under 5 MiB (except the last).
    partSize: q.has('part_size_mib') ? mib(q.get('part_size_mib')!, 'part_size_mib', 5) : 8 * MiB,
    queueSize,
    // S3 takes at most 5 GiB in one PUT.
    multipartThreshold: q.has('multipart_threshold_mib')
      ? Math.min(5 * 1024 * MiB, mib(q.get('multipart_threshold_mib')!, 'multipart_threshold_mib', 5))
      : 256 * MiB,
  };
}

/** The canonical URL of the settings: what sidecars receive, so they need only credentials. */
export function formatS3Url(s: S3Settings): string {
  const q = new URLSearchParams();
  if (s.endpoint) q.set('endpoint', s.endpoint);
  q.set('region', s.region);
  q.set('path_style', String(s.pathStyle));
  q.set('checksums', s.checksums);
  q.set('part_size_mib', String(s.partSize / MiB));
  q.set('queue_size', String(s.queueSize));
  q.set('multipart_threshold_mib', String(s.multipartThreshold / MiB));
  return `s3://${s.bucket}/${s.prefix}?${q.toString()}`;
}

interface AwsError {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function awsError(err: unknown): AwsError {
  return typeof err === 'object' && err !== null ? err : { message: String(err) };
}

function isNotFound(err: unknown): boolean {
  const e = awsError(err);
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
}

/** Network failures, as Node and the SDK name them. */
const NETWORK =
  /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|TimeoutError|socket hang up/;

/**
 * Blob storage in an S3 bucket (AWS S3, MinIO, Cloudflare R2, GCS through its
 * XML API): one object per blob under `prefix/`. A PUT and a completed
 * multipart upload are atomic, so readers never see a partial blob; a failed
 * multipart upload is aborted (stores that lack AbortMultipartUpload keep the
 * parts invisible until a bucket lifecycle rule removes them).
 */
export class S3BlobStore implements BlobStore {
  readonly url: string;
  readonly settings: S3Settings;
  private readonly client: S3Client;
  private readonly keyPrefix: string;

  constructor(settings: S3Settings, client?: S3Client) {
    this.settings = settings;
    this.url = formatS3Url(settings);
    this.keyPrefix = settings.prefix ? `${settings.prefix}/` : '';
    const config: S3ClientConfig = {
      region: settings.region,
      forcePathStyle: settings.pathStyle,
      requestChecksumCalculation: settings.checksums === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
      responseChecksumValidation: settings.checksums === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
      // An unreachable endpoint must fail a start or a task within seconds, not minutes.
      requestHandler: { connectionTimeout: 5000, requestTimeout: 120_000 },
      maxAttempts: 3,
    };
    if (settings.endpoint) config.endpoint = settings.endpoint;
    // The pinned SDK supports Node 20, which weft supports; its multi-line warning that later
    // SDK releases will not would land in every worker's log. A user may still set it to "false".
    process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
    this.client = client ?? new S3Client(config);
  }

  /** Opens the store an `s3://` URL names (see {@link parseS3Url}). */
  static fromUrl(url: URL, env: NodeJS.ProcessEnv = process.env): S3BlobStore {
    return new S3BlobStore(parseS3Url(url, env));
  }

  private key(key: string): string {
    checkBlobKey(key);
    return this.keyPrefix + key;
  }

  /** A failure of the store as one line that says which blob and which setting to look at. */
  private fail(op: string, key: string, err: unknown): WeftError {
    if (err instanceof WeftError) return err;
    if (isNotFound(err)) return new WeftError(Status.NOT_FOUND, `blob "${key}" does not exist`, { cause: err });
    const e = awsError(err);
    const status = e.$metadata?.httpStatusCode;
    const where = this.settings.endpoint ?? `AWS S3 (${this.settings.region})`;
    return new WeftError(
      Status.UNAVAILABLE,
      `S3 ${op} "${key}" in bucket "${this.settings.bucket}" at ${where} failed: ${e.name ?? 'Error'}` +
        `${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`,
      { cause: err },
    );
  }

  async put(key: string, parts: readonly Uint8Array[]): Promise<number> {
    const size = parts.reduce((n, p) => n + p.byteLength, 0);
    if (size > this.settings.multipartThreshold) return this.putStream(key, Readable.from(parts));
    const k = this.key(key);
    // Small blobs as one buffer; larger ones streamed from their parts, without a copy.
    const body = size <= MiB ? Buffer.concat(parts) : Readable.from(parts);
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.settings.bucket, Key: k, Body: body, ContentLength: size }),
      );
    } catch (err) {
      throw this.fail('put', key, err);
    }
    return size;
  }

  async putStream(key: string, body: Readable | AsyncIterable<Uint8Array>): Promise<number> {
    const k = this.key(key);
    let size = 0;
    const counted = Readable.from(
      (async function* () {
        for await (const c of body as AsyncIterable<Uint8Array>) {
          size += c.byteLength;
          yield c;
        }
      })(),
      { objectMode: false },
    );
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.settings.bucket, Key: k, Body: counted },
      partSize: this.settings.partSize,
      queueSize: this.settings.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      throw this.fail('upload', key, err);
    }
    return size;
  }

  async putFile(key: string, path: string): Promise<number> {
    const { size } = await stat(path);
    if (size > this.settings.multipartThreshold) {
      return this.putStream(key, createReadStream(path, { highWaterMark: MiB }));
    }
    const k = this.key(key);
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.settings.bucket,
          Key: k,
          Body: createReadStream(path),
          ContentLength: size,
        }),
      );
    } catch (err) {
      throw this.fail('put', key, err);
    }
    return size;
  }

  private async body(key: string, range?: string): Promise<Readable> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.settings.bucket, Key: this.key(key), ...(range ? { Range: range } : {}) }),
      );
      if (!(out.Body instanceof Readable)) throw new Error('the response has no body stream');
      return out.Body;
    } catch (err) {
      throw this.fail('get', key, err);
    }
  }

  async get(key: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    const body = await this.body(key);
    try {
      for await (const c of body) chunks.push(c as Buffer);
    } catch (err) {
      throw this.fail('get', key, err);
    }
    return Buffer.concat(chunks);
  }

  async getToFile(key: string, path: string): Promise<number> {
    const body = await this.body(key);
    try {
      return await writeStreamAtomic(path, body);
    } catch (err) {
      await rm(path, { force: true });
      throw this.fail('download', key, err);
    }
  }

  async *read(key: string, opts: { chunkSize?: number; start?: number; end?: number } = {}): AsyncIterable<Uint8Array> {
    const range =
      opts.start !== undefined || opts.end !== undefined ? `bytes=${opts.start ?? 0}-${opts.end ?? ''}` : undefined;
    const body = await this.body(key, range);
    const chunk = opts.chunkSize ?? MiB;
    // The HTTP body arrives in whatever pieces the socket gives; hand out at most chunkSize at a time.
    try {
      for await (const c of body) {
        const b = c as Buffer;
        for (let i = 0; i < b.byteLength; i += chunk) yield b.subarray(i, Math.min(b.byteLength, i + chunk));
      }
    } catch (err) {
      throw this.fail('read', key, err);
    }
  }

  async size(key: string): Promise<number> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key: this.key(key) }));
      return out.ContentLength ?? 0;
    } catch (err) {
      throw this.fail('head', key, err);
    }
  }

  async has(key: string): Promise<boolean> {
    try {
      await this.size(key);
      return true;
    } catch (err) {
      if (err instanceof WeftError && err.code === Status.NOT_FOUND) return false;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    let token: string | undefined;
    do {
      let out;
      try {
        out = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.settings.bucket,
            Prefix: this.keyPrefix + prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        );
      } catch (err) {
        throw this.fail('list', prefix, err);
      }
      for (const o of out.Contents ?? []) if (o.Key) yield o.Key.slice(this.keyPrefix.length);
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  /** Deletes the blob `prefix` and every blob under `prefix/`, as removing a directory does on fs. */
  async deletePrefix(prefix: string): Promise<void> {
    const p = prefix.replace(/\/+$/, '');
    checkBlobKey(p, 'prefix');
    let batch: string[] = [];
    const flush = async (): Promise<void> => {
      const keys = batch;
      batch = [];
      if (keys.length === 0) return;
      try {
        const out = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.settings.bucket,
            Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
          }),
        );
        if (out.Errors && out.Errors.length > 0) {
          const e = out.Errors[0]!;
          throw new Error(`${out.Errors.length} key(s) not deleted, e.g. ${e.Key}: ${e.Code} ${e.Message}`);
        }
      } catch (err) {
        // Stores without multi-object delete (GCS's XML API for a long time) answer NotImplemented.
        const e = awsError(err);
        if (e.name !== 'NotImplemented' && e.$metadata?.httpStatusCode !== 501) throw this.fail('delete', p, err);
        for (const Key of keys) {
          await this.client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key }));
        }
      }
    };
    // The exact key first: a prefix that names one blob.
    for await (const key of this.list(p)) {
      if (key !== p && !key.startsWith(`${p}/`)) continue;
      batch.push(this.keyPrefix + key);
      if (batch.length === 1000) await flush();
    }
    await flush();
  }

  async check(): Promise<void> {
    const s = this.settings;
    const where = s.endpoint ?? `AWS S3 (${s.region})`;
    try {
      // A write, not HeadBucket: a read-only key would pass HeadBucket and fail every task later,
      // and HEAD answers carry no error code to tell a missing bucket from a refused key.
      const probe = `${this.keyPrefix}.weft/check`;
      await this.client.send(new PutObjectCommand({ Bucket: s.bucket, Key: probe, Body: Buffer.from('ok') }));
      await this.client.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: probe }));
    } catch (err) {
      const e = awsError(err);
      const code = e.$metadata?.httpStatusCode;
      const text = `${e.name ?? ''} ${e.Code ?? ''} ${e.code ?? ''} ${e.message ?? ''}`;
      let message: string;
      if (e.name === 'CredentialsProviderError' || /Could not load credentials/i.test(text)) {
        message =
          'AWS credentials: none found for the S3 store (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ' +
          'or AWS_PROFILE / AWS_SHARED_CREDENTIALS_FILE)';
      } else if (e.name === 'NoSuchBucket' || (code === 404 && !/key/i.test(e.name ?? ''))) {
        message = `WEFT_BLOBS: bucket "${s.bucket}" does not exist at ${where}`;
      } else if (
        code === 403 ||
        /InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|Forbidden|InvalidToken|ExpiredToken/.test(text)
      ) {
        message =
          `AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: ${where} refused the credentials for bucket "${s.bucket}" ` +
          `(${e.name && e.name !== 'Unknown' ? e.name : `HTTP ${code}`})`;
      } else if (e.name === 'PermanentRedirect' || code === 301) {
        message = `WEFT_BLOBS region: bucket "${s.bucket}" is not in region "${s.region}" (set ?region=…)`;
      } else if (NETWORK.test(text) || code === undefined) {
        message = `WEFT_BLOBS endpoint: cannot reach ${where}: ${e.message ?? e.name ?? 'no answer'}`;
      } else {
        message = `WEFT_BLOBS: ${where} answered ${e.name ?? 'an error'} (HTTP ${code}) for bucket "${s.bucket}"`;
      }
      throw new WeftError(Status.FAILED_PRECONDITION, message, { cause: err });
    }
  }

  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
  }
}
