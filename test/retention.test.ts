import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { JobState } from '@weft/proto';
import { FIXTURES, cleanup, clients, startServer, tempDir, until } from './helpers.js';
import { serverBlobs } from './s3.js';

const dataDir = tempDir('weft-retention-');
afterAll(() => cleanup(dataDir));

describe('retention', () => {
  it('deletes intermediate results first and whole jobs later', async () => {
    // Intermediates live 1 s, jobs 4 s; the collector runs every 500 ms.
    const server = await startServer({
      dataDir,
      env: { WEFT_RETAIN_INTERMEDIATE: '1s', WEFT_RETAIN_JOBS: '4s', WEFT_RETENTION_INTERVAL: '500ms' },
    });
    const c = clients(server.address);
    const blobs = await serverBlobs(server.dataDir);
    try {
      await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
      // A stores a 200 KiB blob (intermediate); B's result is small (kept until the job goes).
      const jobId = await c.exec({
        name: 'p',
        nodes: [
          { nodeName: 'A', algorithmName: 'echo', input: [{ makeBuffer: 200 * 1024 }] },
          { nodeName: 'B', algorithmName: 'echo', input: ['@A.len'] },
        ],
      });
      expect((await c.wait(jobId)).state).toBe(JobState.JOB_STATE_COMPLETED);
      const intermediate = `jobs/${jobId}/0/0`;
      expect(await blobs.has(intermediate)).toBe(true);
      await until(async () => !(await blobs.has(intermediate)), 10_000, 'the intermediate blob to be deleted');
      expect(await c.values(jobId)).toEqual([200 * 1024]);
      await until(
        () =>
          c.status({ jobId }).then(
            () => false,
            () => true,
          ),
        15_000,
        'the job to be forgotten',
      );
      const left: string[] = [];
      for await (const k of blobs.list(`jobs/${jobId}/`)) left.push(k);
      expect(left).toEqual([]);
    } finally {
      c.close();
      await blobs.close();
      await server.stop();
    }
  });
});
