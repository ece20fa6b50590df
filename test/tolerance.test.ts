import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { JobState, NodeState } from '@weft/proto';
import { FIXTURES, cleanup, clients, startServer, tempDir, until, type ServerProc } from './helpers.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach(cleanup));

/** Items 1..1000; multiples of 20 (5%) fail; the rest are doubled by a wait-any node and summed. */
const items = Array.from({ length: 1000 }, (_, i) => i + 1);
const expectedSum = 2 * (500500 - 20 * ((50 * 51) / 2));

function descriptor(batchTolerance: number, ms: number) {
  return {
    name: `tolerance-${batchTolerance}`,
    nodes: [
      { nodeName: 'A', algorithmName: 'flaky', input: ['#@flowInput.items', '@flowInput.ms'] },
      { nodeName: 'B', algorithmName: 'slowsum', input: ['*@A'] },
      { nodeName: 'C', algorithmName: 'slowsum', input: ['@B'] },
    ],
    options: { batchTolerance },
    flowInput: { items, ms },
  };
}

async function run(batchTolerance: number, killMidway: boolean) {
  const dataDir = tempDir('weft-tolerance-');
  dirs.push(dataDir);
  let server: ServerProc = await startServer({ dataDir });
  let c = clients(server.address);
  await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
  const jobId = await c.exec(descriptor(batchTolerance, killMidway ? 4 : 0));
  if (killMidway) {
    await until(async () => {
      const st = await c.status({ jobId });
      return (
        st.state !== JobState.JOB_STATE_ACTIVE || (st.nodes[0]?.succeeded ?? 0) + (st.nodes[0]?.failed ?? 0) >= 200
      );
    }, 30_000);
    c.close();
    await server.kill();
    server = await startServer({ dataDir });
    c = clients(server.address);
  }
  const st = await c.wait(jobId, 90_000);
  const values = st.state === JobState.JOB_STATE_COMPLETED ? await c.values(jobId) : [];
  c.close();
  await server.stop();
  return { st, values };
}

describe('batchTolerance with wait-any and reduce over 1,000 items, 5% failing', () => {
  for (const killMidway of [false, true]) {
    const how = killMidway ? ' (control plane SIGKILLed and restarted mid-run)' : '';
    it(`completes under batchTolerance 10${how}`, async () => {
      const { st, values } = await run(10, killMidway);
      expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
      const [a, b, cNode] = st.nodes;
      expect([a?.total, a?.succeeded, a?.failed]).toEqual([1000, 950, 50]);
      expect([b?.total, b?.succeeded, b?.skipped]).toEqual([1000, 950, 50]);
      expect(cNode?.state).toBe(NodeState.NODE_STATE_SUCCEEDED);
      expect(a?.errors).toHaveLength(50);
      expect(values).toEqual([expectedSum]);
    });

    it(`fails under batchTolerance 2${how}`, async () => {
      const { st } = await run(2, killMidway);
      expect(st.state).toBe(JobState.JOB_STATE_FAILED);
      expect(st.error).toMatch(/node "A": \d+ of 1000 batch items failed \([\d.]+%\), reaching batchTolerance 2%/);
    });
  }
});
