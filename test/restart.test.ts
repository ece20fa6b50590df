import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { decode } from '@weft/common';
import { JobState } from '@weft/proto';
import { FIXTURES, alive, cleanup, clients, pidsWithEnv, startServer, tempDir, until } from './helpers.js';

const dataDir = tempDir('weft-restart-');
afterAll(() => cleanup(dataDir));

describe('control plane restart', () => {
  it('completes a 1,000-item batch job after a SIGKILL mid-run, recording every item exactly once', async () => {
    const items = Array.from({ length: 1000 }, (_, i) => i + 1);
    const first = await startServer({ dataDir });
    let c = clients(first.address);
    await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
    const jobId = await c.exec({
      name: 'restart',
      nodes: [
        { nodeName: 'Double', algorithmName: 'slowsum', input: ['#@flowInput.items', '@flowInput.ms'] },
        { nodeName: 'Sum', algorithmName: 'slowsum', input: ['@Double'] },
      ],
      flowInput: { items, ms: 8 },
    });
    let before = 0;
    await until(
      async () => {
        before = (await c.status({ jobId })).nodes[0]!.succeeded;
        return before >= 150;
      },
      30_000,
      'part of the batch to finish',
    );
    // Sidecars and algorithms carry the control plane's address in WEFT_SERVER.
    const workerPids = pidsWithEnv('WEFT_SERVER', first.address);
    expect(workerPids.length).toBeGreaterThanOrEqual(2);
    c.close();
    await first.kill();
    expect(before).toBeLessThan(1000);

    const second = await startServer({ dataDir });
    c = clients(second.address);
    const st = await c.wait(jobId, 60_000);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toEqual([1001000]);
    c.close();
    await second.stop();

    const db = new Database(join(dataDir, 'weft.db'), { readonly: true });
    const rows = db
      .prepare(
        `SELECT batch_index, result_inline, state FROM tasks WHERE job_id = ? AND node_name = 'Double' ORDER BY batch_index`,
      )
      .all(jobId) as { batch_index: number; result_inline: Buffer; state: string }[];
    db.close();
    expect(rows).toHaveLength(1000);
    rows.forEach((r, i) => {
      expect(r.batch_index).toBe(i);
      expect(r.state).toBe('succeeded');
      expect(decode(r.result_inline)).toBe(2 * (i + 1));
    });
    // Workers of the killed control plane noticed the lost stream and exited.
    for (const pid of workerPids) await until(() => !alive(pid), 10_000, `orphan ${pid} to exit`);
  });

  it('shuts down gracefully on SIGTERM, taking its workers with it', async () => {
    const server = await startServer({ dataDir: tempDir('weft-term-') });
    const c = clients(server.address);
    await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
    const jobId = await c.exec({ name: 'p', nodes: [{ nodeName: 'A', algorithmName: 'echo', input: [1] }] });
    await c.wait(jobId);
    c.close();
    const t0 = Date.now();
    expect(await server.stop()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    cleanup(server.dataDir);
  });
});
