import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobState } from '@weft/proto';
import { FIXTURES, clients, startServer, type ServerProc } from './helpers.js';

let server: ServerProc;
let c: ReturnType<typeof clients>;

beforeAll(async () => {
  server = await startServer();
  c = clients(server.address);
  await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
  await c.store({ name: 'doubler', nodes: [{ nodeName: 'D', algorithmName: 'slowsum', input: ['@flowInput.n'] }] });
});

afterAll(async () => {
  c.close();
  await server.stop();
});

async function call(mode: string): Promise<{ value: unknown; jobId: string }> {
  const jobId = await c.exec({ name: 'caller', nodes: [{ nodeName: 'C', algorithmName: 'caller', input: [mode] }] });
  const st = await c.wait(jobId, 30_000);
  expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
  return { value: (await c.values(jobId))[0], jobId };
}

describe('the code API (api.start*)', () => {
  it('startAlgorithm resolves with the child’s result; the child is listed in the parent’s status', async () => {
    const { value, jobId } = await call('algorithm');
    expect(value).toBe(42);
    const parent = await c.status({ jobId });
    expect(parent.childJobIds).toHaveLength(1);
    const child = await c.status({ jobId: parent.childJobIds[0]! });
    expect(child.parentJobId).toBe(jobId);
    expect(child.state).toBe(JobState.JOB_STATE_COMPLETED);
    expect(child.tags).toContain('code-api');
  });

  it('startStoredSubpipeline runs a stored pipeline with a flowInput', async () => {
    expect((await call('stored')).value).toEqual([{ nodeName: 'D', algorithmName: 'slowsum', result: 10 }]);
  });

  it('startRawSubpipeline runs a descriptor, binary flowInput intact, in both call forms', async () => {
    const { value } = await call('raw');
    const [entry] = value as [{ result: Buffer }];
    expect(Buffer.isBuffer(entry.result)).toBe(true);
    expect([...entry.result]).toEqual([1, 2, 3]);
    expect((await call('hkube-raw')).value).toEqual([{ nodeName: 'E', algorithmName: 'echo', result: 'hi' }]);
  });

  it('reads a large child result from storage', async () => {
    expect((await call('big')).value).toBe(2 * 1024 * 1024);
  });

  it('rejects when the child job fails, and honours includeResult false', async () => {
    expect((await call('fails')).value).toMatch(/^caught: child job \S+ failed: .*ProtocolError/);
    expect((await call('noresult')).value).toEqual({ got: null });
  });
});
