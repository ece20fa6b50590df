/**
 * A real S3-compatible server for the tests: s3rver in its own process on a
 * loopback port (test/fixtures/s3/s3rver.mjs), with bucket "weft".
 *
 * `WEFT_TEST_BLOBS=s3` makes every control plane that `startServer` starts
 * keep its payloads there (see helpers.ts); tests of the S3 adapter itself
 * start one directly.
 *
 * s3rver lacks AbortMultipartUpload and ListParts, and checks only
 * UNSIGNED-PAYLOAD, streaming or hex SHA-256 payload signatures, which is why
 * the adapter pins checksums to `when_required` for custom endpoints.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { openBlobStore, type BlobStore } from '@weft/common';

const LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 's3', 's3rver.mjs');

export interface S3Server {
  /** e.g. http://127.0.0.1:41234 */
  readonly endpoint: string;
  readonly port: number;
  readonly bucket: string;
  /** Environment a weft process needs to reach it: credentials and region. */
  readonly env: Record<string, string>;
  /** A `WEFT_BLOBS` URL under its own prefix. */
  url(prefix: string): string;
  /** Stops the server (SIGKILL): every request fails until {@link restart}. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory, keeping what it stored. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** s3rver's built-in account. */
export const S3_ENV = {
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
  // Never ask an instance metadata service (a non-loopback address) for credentials.
  AWS_EC2_METADATA_DISABLED: 'true',
} as const;

const live = new Set<ChildProcess>();
afterAll(() => {
  for (const p of live) p.kill('SIGKILL');
});

function launch(dir: string, port: number): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, [LAUNCHER, dir, String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  proc.on('exit', () => live.delete(proc));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /\{"port":(\d+)\}/.exec(out);
      if (m) resolve({ proc, port: Number(m[1]) });
    });
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    proc.on('exit', (code) => reject(new Error(`s3rver exited with ${code}: ${err}`)));
  });
}

/** Starts s3rver on a free loopback port. */
export async function startS3(): Promise<S3Server> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-s3-'));
  const first = await launch(dir, 0);
  const port = first.port;
  let proc = first.proc;
  const endpoint = `http://127.0.0.1:${port}`;
  const gone = (p: ChildProcess): Promise<void> =>
    p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', () => r()));
  return {
    endpoint,
    port,
    bucket: 'weft',
    env: { ...S3_ENV },
    url: (prefix) => `s3://weft/${prefix}?endpoint=${encodeURIComponent(endpoint)}&path_style=true`,
    kill: async () => {
      proc.kill('SIGKILL');
      await gone(proc);
    },
    restart: async () => {
      ({ proc } = await launch(dir, port));
    },
    stop: async () => {
      proc.kill('SIGTERM');
      await gone(proc);
    },
  };
}

let shared: Promise<S3Server> | undefined;

/** One s3rver for the whole test file, started on first use. */
export function sharedS3(): Promise<S3Server> {
  return (shared ??= startS3());
}

/** True when the suite runs with payloads on S3 (`WEFT_TEST_BLOBS=s3`). */
export function testingOnS3(): boolean {
  return process.env['WEFT_TEST_BLOBS'] === 's3';
}

/**
 * The environment that puts a control plane's payloads on the shared s3rver.
 * The prefix follows the data directory, so a restarted server (same
 * directory) finds its blobs again.
 */
export async function s3ServerEnv(dataDir: string): Promise<Record<string, string>> {
  const s3 = await sharedS3();
  const prefix = `t-${createHash('sha256').update(dataDir).digest('hex').slice(0, 12)}`;
  return { ...s3.env, WEFT_BLOBS: s3.url(prefix) };
}

/**
 * The blob store a control plane started by `startServer` with this data
 * directory uses: its data directory's, or its prefix on the shared s3rver.
 */
export async function serverBlobs(dataDir: string): Promise<BlobStore> {
  if (!testingOnS3()) return openBlobStore(`fs:${join(dataDir, 'blobs')}`);
  Object.assign(process.env, S3_ENV);
  return openBlobStore((await s3ServerEnv(dataDir))['WEFT_BLOBS']!);
}

/** A loopback port nothing listens on: an endpoint that refuses every connection. */
export async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}
