/**
 * The control plane with its payloads on S3 (a real s3rver process), in
 * every run of the suite: bad settings refused at start, a store that fails
 * mid-job, and a SIGKILL of the control plane while results go to S3.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBlobStore, type BlobStore } from '@weft/common';
import { JobState } from '@weft/proto';
import { CLI, FIXTURES, cleanup, clients, startServer, tempDir, until, type ServerProc } from './helpers.js';
import { S3_ENV, closedPort, startS3, type S3Server } from './s3.js';
import { spawn } from 'node:child_process';

let s3: S3Server;
beforeAll(async () => {
  s3 = await startS3();
  Object.assign(process.env, S3_ENV);
});
afterAll(async () => {
  await s3?.stop();
});

/** Runs `weft server` until it exits (a refused start) or prints that it listens; returns its exit and stderr. */
function startOnce(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const dataDir = tempDir('weft-s3-bad-');
  const base: Record<string, string | undefined> = { ...process.env };
  for (const k of Object.keys(base)) if (k.startsWith('AWS_')) delete base[k];
  return new Promise((resolve) => {
    const proc = spawn(
      process.execPath,
      [CLI, 'server', '--port', '0', '--metrics-port', '-1', '--data-dir', dataDir],
      {
        env: { ...base, WEFT_LOG_LEVEL: 'warn', AWS_EC2_METADATA_DISABLED: 'true', ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/listening on/.test(stderr)) proc.kill('SIGKILL');
    });
    proc.on('exit', (code) => {
      cleanup(dataDir);
      resolve({ code, stderr });
    });
  });
}

describe('bad S3 settings are refused at start with one line naming the setting', () => {
  const cases: [string, () => Promise<Record<string, string>>, RegExp][] = [
    [
      'an unknown bucket',
      () => Promise.resolve({ ...S3_ENV, WEFT_BLOBS: s3.url('x').replace('s3://weft/', 's3://nope/') }),
      /^weft: server: WEFT_BLOBS: bucket "nope" does not exist at http:\/\/127\.0\.0\.1:\d+$/,
    ],
    [
      'wrong credentials',
      () => Promise.resolve({ ...S3_ENV, AWS_ACCESS_KEY_ID: 'NOBODY', WEFT_BLOBS: s3.url('x') }),
      /^weft: server: AWS_ACCESS_KEY_ID\/AWS_SECRET_ACCESS_KEY: http:\/\/127\.0\.0\.1:\d+ refused the credentials for bucket "weft" \(InvalidAccessKeyId\)$/,
    ],
    [
      'no credentials at all',
      () =>
        Promise.resolve({
          AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials',
          AWS_CONFIG_FILE: '/nonexistent/config',
          WEFT_BLOBS: s3.url('x'),
        }),
      /^weft: server: AWS credentials: none found for the S3 store \(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/,
    ],
    [
      'an unreachable endpoint',
      async () => ({ ...S3_ENV, WEFT_BLOBS: `s3://weft/x?endpoint=http://127.0.0.1:${await closedPort()}` }),
      /^weft: server: WEFT_BLOBS endpoint: cannot reach http:\/\/127\.0\.0\.1:\d+: /,
    ],
    [
      'a malformed URL parameter',
      () => Promise.resolve({ ...S3_ENV, WEFT_BLOBS: `${s3.url('x')}&part_size_mib=1` }),
      /^weft: server: WEFT_BLOBS part_size_mib: "1" must be a number of MiB >= 5$/,
    ],
  ];
  for (const [what, env, line] of cases) {
    it(what, async () => {
      const { code, stderr } = await startOnce(await env());
      expect(code).not.toBe(0);
      expect(code).not.toBe(null);
      const lines = stderr.trim().split('\n');
      expect(lines, stderr).toHaveLength(1);
      expect(lines[0]).toMatch(line);
    });
  }
});

describe('a store that fails mid-job', () => {
  let server: ServerProc;
  let c: ReturnType<typeof clients>;
  let store: BlobStore;
  const prefix = 'midjob';
  beforeAll(async () => {
    server = await startServer({ env: { ...S3_ENV, WEFT_BLOBS: s3.url(prefix) } });
    c = clients(server.address);
    await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
    store = await openBlobStore(s3.url(prefix));
  });
  afterAll(async () => {
    c?.close();
    await store?.close();
    await server?.stop();
    if (server) cleanup(server.dataDir);
  });

  const gatedJob = (dir: string, policy: string, limit: number): Promise<string> =>
    c.exec({
      name: 'gated',
      nodes: [
        {
          nodeName: 'G',
          algorithmName: 'gated',
          input: [{ dir, bytes: 200 * 1024 }],
          retry: { policy, limit },
        },
      ],
    });

  it('fails the task with the store’s reason when it cannot upload a result, leaving no blob', async () => {
    const dir = tempDir('weft-gated-');
    const jobId = await gatedJob(dir, 'Never', 0);
    await until(() => existsSync(join(dir, 'started-1')), 30_000, 'the task to start');
    await s3.kill();
    try {
      writeFileSync(join(dir, 'go-1'), '');
      const st = await c.wait(jobId);
      expect(st.state).toBe(JobState.JOB_STATE_FAILED);
      expect(st.error).toMatch(/StorageError: cannot upload the task's result: S3 (upload|put) "jobs\/[^"]+\/0\/0"/);
    } finally {
      await s3.restart();
    }
    expect(await store.has(`jobs/${jobId}/0/0`)).toBe(false);
    cleanup(dir);
  });

  it('retries a task whose upload failed per its retry policy, and completes once the store is back', async () => {
    const dir = tempDir('weft-gated-');
    const jobId = await gatedJob(dir, 'OnCrash', 3);
    await until(() => existsSync(join(dir, 'started-1')), 30_000, 'the first attempt to start');
    await s3.kill();
    try {
      writeFileSync(join(dir, 'go-1'), '');
      // The failed upload is retried on the same algorithm: a second attempt starts.
      await until(() => existsSync(join(dir, 'started-2')), 30_000, 'the retry to start');
    } finally {
      await s3.restart();
    }
    writeFileSync(join(dir, 'go-2'), '');
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    expect(server.stderr()).toMatch(/task retried.*cannot upload the task's result/);
    const [value] = (await c.values(jobId)) as [unknown];
    // Large results are given by reference; the blob holds the whole result.
    expect(value).toBeDefined();
    expect(await store.size(`jobs/${jobId}/0/0`)).toBeGreaterThan(200 * 1024);
    cleanup(dir);
  });

  it('fails a task whose input cannot be downloaded with the store’s reason', async () => {
    // A 200 KiB result is a blob; the child reads it through S3.
    const dir = tempDir('weft-gated-');
    const hold = tempDir('weft-gated-');
    writeFileSync(join(dir, 'go-1'), '');
    const jobId = await c.exec({
      name: 'download',
      nodes: [
        { nodeName: 'G', algorithmName: 'gated', input: [{ dir, bytes: 200 * 1024 }] },
        // Holds D back until the store is down; its own result is small enough to be inline.
        { nodeName: 'Hold', algorithmName: 'gated', input: [{ dir: hold, bytes: 10 }] },
        { nodeName: 'D', algorithmName: 'digest', input: ['@G', '@Hold'], retry: { policy: 'Never', limit: 0 } },
      ],
    });
    await until(async () => (await c.status({ jobId })).nodes[0]!.succeeded === 1, 30_000, 'G to finish');
    await s3.kill();
    writeFileSync(join(hold, 'go-1'), '');
    try {
      const st = await c.wait(jobId);
      expect(st.state).toBe(JobState.JOB_STATE_FAILED);
      expect(st.error).toMatch(/StorageError: cannot download the task's input: S3 get "jobs\/[^"]+\/0\/0"/);
    } finally {
      await s3.restart();
    }
    cleanup(dir);
    cleanup(hold);
  });
});

describe('control plane restart with payloads on S3', () => {
  it('completes a batch whose results are S3 blobs after a SIGKILL mid-run, each result recorded once', async () => {
    const dataDir = tempDir('weft-s3-restart-');
    const env = { ...S3_ENV, WEFT_BLOBS: s3.url('restart') };
    const n = 200;
    const bytes = 70 * 1024; // above the 64 KiB inline threshold: every item's result is a blob
    const first = await startServer({ dataDir, env });
    let c = clients(first.address);
    await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
    const jobId = await c.exec({
      name: 's3restart',
      nodes: [
        { nodeName: 'Big', algorithmName: 'bigslow', input: ['#@flowInput.items', 10, bytes] },
        { nodeName: 'Sizes', algorithmName: 'sizes', input: ['@Big'] },
      ],
      flowInput: { items: Array.from({ length: n }, (_, i) => i) },
    });
    await until(async () => (await c.status({ jobId })).nodes[0]!.succeeded >= 40, 30_000, 'part of the batch');
    c.close();
    await first.kill();

    const second = await startServer({ dataDir, env });
    c = clients(second.address);
    const st = await c.wait(jobId, 90_000);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toEqual([{ count: n, total: n * bytes, ordered: true }]);
    c.close();
    await second.stop();

    const db = new Database(join(dataDir, 'weft.db'), { readonly: true });
    const rows = db
      .prepare(`SELECT batch_index, state, result_key FROM tasks WHERE job_id = ? AND node_name = 'Big'`)
      .all(jobId) as { batch_index: number; state: string; result_key: string }[];
    db.close();
    expect(rows).toHaveLength(n);
    expect(new Set(rows.map((r) => r.batch_index)).size).toBe(n);
    expect(rows.every((r) => r.state === 'succeeded' && r.result_key === `jobs/${jobId}/0/${r.batch_index}`)).toBe(
      true,
    );
    const store = await openBlobStore(env.WEFT_BLOBS);
    let blobs = 0;
    for await (const k of store.list(`jobs/${jobId}/0/`)) if (k) blobs++;
    await store.close();
    expect(blobs).toBe(n);
    // Nothing of the payloads went to the data directory.
    expect(existsSync(join(dataDir, 'blobs', 'jobs', jobId))).toBe(false);
    cleanup(dataDir);
  });
});
