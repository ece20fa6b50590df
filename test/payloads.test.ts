/**
 * Payloads through blob storage, on whichever store the suite runs with:
 * the data directory by default, a real S3-compatible server with
 * WEFT_TEST_BLOBS=s3. A 64 MiB binary hand-off, and where the bytes live.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobState } from '@weft/proto';
import { FIXTURES, cleanup, clients, startServer, type ServerProc } from './helpers.js';
import { serverBlobs, testingOnS3 } from './s3.js';

let server: ServerProc;
let c: ReturnType<typeof clients>;

beforeAll(async () => {
  server = await startServer();
  c = clients(server.address);
  await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
});
afterAll(async () => {
  c?.close();
  await server?.stop();
  if (server) cleanup(server.dataDir);
});

/** The pattern echo's makeBuffer writes. */
function pattern(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < b.length; i += 4096) b[i] = i % 251;
  return b;
}

describe(`payloads on ${testingOnS3() ? 'S3 (s3rver)' : 'the data directory'}`, () => {
  it('hands 64 MiB of binary from one node to the next byte for byte, through blob storage', async () => {
    const bytes = 64 * 1024 * 1024;
    const jobId = await c.exec({
      name: 'handoff',
      nodes: [
        { nodeName: 'P', algorithmName: 'echo', input: [{ makeBuffer: bytes }] },
        { nodeName: 'C', algorithmName: 'digest', input: ['@P.buf'] },
      ],
    });
    const st = await c.wait(jobId, 120_000);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toEqual([
      { len: bytes, sha256: createHash('sha256').update(pattern(bytes)).digest('hex') },
    ]);

    // The producer's result is a blob in the configured store, and only there.
    const store = await serverBlobs(server.dataDir);
    try {
      const keys: string[] = [];
      for await (const k of store.list(`jobs/${jobId}/`)) keys.push(k);
      expect(keys).toEqual([`jobs/${jobId}/0/0`]);
      expect(await store.size(keys[0]!)).toBeGreaterThan(bytes);
    } finally {
      await store.close();
    }
    const local = join(server.dataDir, 'blobs', 'jobs');
    expect(existsSync(local) && readdirSync(local).includes(jobId)).toBe(!testingOnS3());
  });
});
