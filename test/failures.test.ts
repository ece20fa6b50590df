import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobState, NodeState } from '@weft/proto';
import { FIXTURES, alive, cleanup, clients, startServer, tempDir, until, weft, type ServerProc } from './helpers.js';

let server: ServerProc;
let c: ReturnType<typeof clients>;
const dir = tempDir('weft-fail-');

beforeAll(async () => {
  server = await startServer({ env: { WEFT_HEARTBEAT_TIMEOUT_MS: '1500', WEFT_STOP_GRACE_MS: '1000' } });
  c = clients(server.address);
  await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
});

afterAll(async () => {
  c.close();
  await server.stop();
  cleanup(dir);
});

const marker = (name: string) => join(dir, name);
const readMarker = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as { pid: number; sidecar: number };

describe('algorithm errors', () => {
  it('fails the job on an algorithm error without retrying, and its stored status matches the live one', async () => {
    const jobId = await c.exec({
      name: 'p',
      nodes: [
        { nodeName: 'A', algorithmName: 'echo', input: [[10, 20, 30]] },
        { nodeName: 'B', algorithmName: 'thrower', input: ['#@A'] },
      ],
      // Any failed item fails the job (HKube's default tolerates up to 80%).
      options: { batchTolerance: 0 },
    });
    const events = await c.watch(jobId);
    const last = events.at(-1)?.event;
    expect(last?.$case).toBe('status');
    const live = last?.$case === 'status' ? last.value : undefined;
    expect(live?.state).toBe(JobState.JOB_STATE_FAILED);
    expect(live?.error).toMatch(/node "B" batch item 1 \(task \S+:1:1\) failed: RangeError: item 1 is out of range/);
    const stored = await c.status({ jobId });
    expect(stored.nodes.map((n) => [n.nodeName, n.state, n.total])).toEqual([
      ['A', NodeState.NODE_STATE_SUCCEEDED, 1],
      ['B', NodeState.NODE_STATE_FAILED, 3],
    ]);
    expect(stored.nodes).toEqual(live?.nodes);
    const err = stored.nodes[1]!.errors[0]!;
    expect(err.attempts).toBe(1);
    expect(err.failure?.stack).toMatch(/RangeError: item 1 is out of range\n\s+at .*thrower\/index\.js/);
  });

  it('under the default batchTolerance (80%), reports a failed item and completes with null in its place', async () => {
    const jobId = await c.exec({
      name: 'p',
      nodes: [
        { nodeName: 'B', algorithmName: 'thrower', input: ['#[10, 20, 30]'] },
        { nodeName: 'R', algorithmName: 'echo', input: ['@B'] },
      ],
    });
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    expect([st.nodes[0]?.succeeded, st.nodes[0]?.failed]).toEqual([2, 1]);
    expect(st.nodes[0]?.errors[0]?.failure?.type).toBe('RangeError');
    expect(await c.values(jobId)).toEqual([[10, null, 30]]);
  });

  it('fails a task whose result cannot be decoded instead of leaving the job waiting', async () => {
    const jobId = await c.exec({ name: 'p', nodes: [{ nodeName: 'W', algorithmName: 'weird', input: [] }] });
    const st = await c.wait(jobId, 20_000);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.error).toMatch(/node "W".*ProtocolError: malformed frame from the algorithm/);
  });
});

describe('worker failures', () => {
  it('runs a task again on a new worker when its algorithm process is SIGKILLed mid-task', async () => {
    const m = marker('killed');
    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'S', algorithmName: 'sleepy', input: [{ marker: m, ms: 60_000 }] }],
    });
    await until(() => existsSync(m), 20_000, 'the first attempt to start');
    const first = readMarker(m);
    process.kill(first.pid, 'SIGKILL');
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    const [out] = (await c.values(jobId)) as [{ attempt: number; pid: number }];
    expect(out.attempt).toBe(2);
    expect(out.pid).not.toBe(first.pid);
    // The crashed worker's sidecar is gone too: workers are replaced whole.
    await until(() => !alive(first.sidecar), 5000, 'the old sidecar to exit');
  });

  it('fails the job after the retry limit when the algorithm crashes every time, naming node and task', async () => {
    const jobId = await c.exec({ name: 'p', nodes: [{ nodeName: 'Boom', algorithmName: 'crasher', input: [1] }] });
    const st = await c.wait(jobId);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.error).toMatch(/node "Boom" \(task \S+:0:0\) failed after 4 attempts: Crash:/);
    const n = st.nodes[0]!;
    expect(n.state).toBe(NodeState.NODE_STATE_FAILED);
    expect(n.errors[0]?.attempts).toBe(4);
    expect(n.errors[0]?.failure?.crash).toBe(true);
    const r = await weft(['exec', 'result', jobId, '--server', server.address]);
    expect(r.code).not.toBe(0);
  });

  it('notices a worker that stops sending heartbeats and retries its task', async () => {
    const m = marker('frozen');
    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'S', algorithmName: 'sleepy', input: [{ marker: m, ms: 60_000 }] }],
    });
    await until(() => existsSync(m), 20_000, 'the first attempt to start');
    const first = readMarker(m);
    process.kill(first.sidecar, 'SIGSTOP');
    const t0 = Date.now();
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(((await c.values(jobId)) as [{ attempt: number }])[0].attempt).toBe(2);
    await until(() => !alive(first.sidecar), 5000, 'the frozen sidecar to be killed');
  });

  it('stops a cooperative algorithm: stop() is called, the signal aborts, the worker stays warm', async () => {
    const m = marker('coop');
    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'B', algorithmName: 'busy', input: [{ marker: m, cooperative: true }] }],
    });
    await until(() => existsSync(m), 20_000, 'the task to start');
    const r = await weft(['exec', 'stop', jobId, '--server', server.address]);
    expect(r.code).toBe(0);
    const st = await c.status({ jobId });
    expect(st.state).toBe(JobState.JOB_STATE_STOPPED);
    await until(() => existsSync(m + '.stopped'), 5000, 'the algorithm to see the stop');
    expect(readFileSync(m + '.stopped', 'utf8')).toBe('1');
    await new Promise((res) => setTimeout(res, 1500));
    expect(alive(readMarker(m).pid)).toBe(true);
  });

  it('kills an algorithm that ignores stop after the grace period', async () => {
    const m = marker('spin');
    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'B', algorithmName: 'busy', input: [{ marker: m, cooperative: false }] }],
    });
    await until(() => existsSync(m), 20_000, 'the task to start');
    const { pid } = readMarker(m);
    await c.stop({ jobId, reason: 'test' });
    expect((await c.status({ jobId })).state).toBe(JobState.JOB_STATE_STOPPED);
    await until(() => !alive(pid), 10_000, 'the spinning algorithm to be killed');
  });
});
