import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { JobState } from '@weft/proto';
import { FIXTURES, cleanup, clients, startServer, tempDir, until } from './helpers.js';

const dataDir = tempDir('weft-shutdown-');
afterAll(() => cleanup(dataDir));

describe('graceful shutdown', () => {
  it('leaves running jobs to resume, not failed, after SIGTERM', async () => {
    const first = await startServer({ dataDir });
    let c = clients(first.address);
    await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
    const marker = join(dataDir, 'sleep-marker');
    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'S', algorithmName: 'sleepy', input: [{ marker, ms: 60_000 }] }],
    });
    await until(() => existsSync(marker), 20_000, 'the task to start');
    c.close();
    expect(await first.stop()).toBe(0);

    const second = await startServer({ dataDir });
    c = clients(second.address);
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    // The interrupted run does not count as a failed attempt: the rerun is attempt 1 again.
    expect(((await c.values(jobId)) as [{ attempt: number }])[0].attempt).toBe(1);
    c.close();
    await second.stop();
  });
});
