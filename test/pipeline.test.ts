import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode } from '@weft/common';
import { JobState, NodeState } from '@weft/proto';
import { FIXTURES, ROOT, clients, startServer, weft, type ServerProc } from './helpers.js';

let server: ServerProc;
let c: ReturnType<typeof clients>;

beforeAll(async () => {
  server = await startServer();
  c = clients(server.address);
  await c.applyFile(join(ROOT, 'examples', 'numbers', 'algorithms.yaml'));
  await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
});

afterAll(async () => {
  c.close();
  expect(await server.stop()).toBe(0);
});

describe('pipelines end to end', () => {
  it('runs the numbers pipeline from the CLI with live progress and prints 30', async () => {
    const r = await weft(['exec', 'raw', '-f', 'examples/numbers/pipeline.yaml', '--wait', '-o', 'json'], {
      WEFT_SERVER: server.address,
    });
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as {
      jobId: string;
      status: string;
      result: { nodeName: string; result: unknown }[];
    };
    expect(doc.status).toBe('completed');
    expect(doc.result).toEqual([{ nodeName: 'Reduce', algorithmName: 'reduce', result: 30 }]);
    const st = await c.status({ jobId: doc.jobId });
    expect(st.nodes.map((n) => [n.nodeName, n.total, n.succeeded, n.state])).toEqual([
      ['Range', 1, 1, NodeState.NODE_STATE_SUCCEEDED],
      ['Multiply', 5, 5, NodeState.NODE_STATE_SUCCEEDED],
      ['Reduce', 1, 1, NodeState.NODE_STATE_SUCCEEDED],
    ]);
    expect(st.progress).toBe(100);
  });

  it('prints the result in text mode', async () => {
    const r = await weft(['exec', 'raw', '-f', 'examples/numbers/pipeline.yaml', '--wait'], {
      WEFT_SERVER: server.address,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Reduce: 30/);
  });

  it('streams node counts and the algorithm’s own progress to watchers', async () => {
    const jobId = await c.exec({
      name: 'numbers',
      nodes: [
        { nodeName: 'Range', algorithmName: 'range', input: ['@flowInput.data'] },
        { nodeName: 'Multiply', algorithmName: 'multiply', input: ['#@Range', '@flowInput.mul'] },
        { nodeName: 'Reduce', algorithmName: 'reduce', input: ['@Multiply'] },
      ],
      flowInput: { data: 10, mul: 3 },
    });
    const events = await c.watch(jobId);
    expect(events[0]?.event?.$case).toBe('status');
    const last = events.at(-1)?.event;
    expect(last?.$case === 'status' && last.value.state).toBe(JobState.JOB_STATE_COMPLETED);
    const progress = events.flatMap((e) => (e.event?.$case === 'progress' ? [e.event.value] : []));
    expect(progress).toContainEqual(
      expect.objectContaining({ nodeName: 'Reduce', percent: 50, message: 'summing 10 values' }),
    );
    expect(events.some((e) => e.event?.$case === 'node' && e.event.value.nodeName === 'Multiply')).toBe(true);
    expect(await c.values(jobId)).toEqual([165]);
  });

  it('keeps binary data binary end to end, inline and through blob storage', async () => {
    const small = Buffer.from([0, 1, 2, 255, 254]);
    const jobId = await c.exec(
      {
        name: 'binary',
        nodes: [
          { nodeName: 'A', algorithmName: 'echo', input: ['@flowInput.blob'] },
          { nodeName: 'B', algorithmName: 'echo', input: [{ wrapped: '@A', n: '@flowInput.n' }] },
          { nodeName: 'Big', algorithmName: 'echo', input: [{ makeBuffer: 512 * 1024 }] },
          { nodeName: 'BigChild', algorithmName: 'echo', input: ['@Big.buf', '@Big.len'] },
        ],
      },
      encode({ blob: small, n: 7 }),
    );
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    const [b, bigChild] = (await c.values(jobId)) as [{ wrapped: Buffer; n: number }, [Buffer, number]];
    expect(Buffer.isBuffer(b.wrapped)).toBe(true);
    expect([...b.wrapped]).toEqual([...small]);
    expect(b.n).toBe(7);
    expect(Buffer.isBuffer(bigChild[0])).toBe(true);
    expect(bigChild[0].length).toBe(512 * 1024);
    expect(bigChild[1]).toBe(512 * 1024);
    expect(bigChild[0][4096]).toBe(4096 % 251);
  });

  it('fans out over a blob-stored array and reduces in batch order', async () => {
    // [1..30000] encodes to ~90 KiB, above the 64 KiB inline threshold: Range’s output goes to blob storage.
    const jobId = await c.exec({
      name: 'bigfan',
      nodes: [
        { nodeName: 'Range', algorithmName: 'range', input: ['@flowInput.n'] },
        { nodeName: 'Pick', algorithmName: 'echo', input: ['#[0, 1, 2]', '@Range.100'] },
        { nodeName: 'Reduce', algorithmName: 'reduce', input: ['@Range'] },
      ],
      flowInput: { n: 30000 },
    });
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    const values = await c.values(jobId);
    expect(values).toEqual([[0, 101], [1, 101], [2, 101], (30000 * 30001) / 2]);
  });

  it('resolves references nested inside objects and arrays, and literal batches', async () => {
    const jobId = await c.exec({
      name: 'nested',
      nodes: [
        {
          nodeName: 'A',
          algorithmName: 'echo',
          input: [{ cfg: { k: '@flowInput.k', list: ['@flowInput.x', 'plain'] } }],
        },
        { nodeName: 'B', algorithmName: 'echo', input: ['#[10, 20]', { from: '@A.cfg.k' }] },
        { nodeName: 'C', algorithmName: 'echo', input: ['@B'] },
      ],
      flowInput: { k: 'v', x: [1, 2] },
    });
    expect((await c.wait(jobId)).state).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toEqual([
      [
        [10, { from: 'v' }],
        [20, { from: 'v' }],
      ],
    ]);
  });

  it('skips a node whose batch is empty; its children see an empty array', async () => {
    const jobId = await c.exec({
      name: 'empty',
      nodes: [
        { nodeName: 'M', algorithmName: 'multiply', input: ['#@flowInput.items', 2] },
        { nodeName: 'R', algorithmName: 'reduce', input: ['@M'] },
      ],
      flowInput: { items: [] },
    });
    const st = await c.wait(jobId);
    expect(st.state).toBe(JobState.JOB_STATE_COMPLETED);
    expect(st.nodes[0]!.state).toBe(NodeState.NODE_STATE_SKIPPED);
    expect(await c.values(jobId)).toEqual([0]);
  });

  it('gives the algorithm process its algorithmEnv', async () => {
    const jobId = await c.exec({
      name: 'env',
      nodes: [{ nodeName: 'E', algorithmName: 'envcheck', input: ['GREETING'] }],
    });
    expect((await c.wait(jobId)).state).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toEqual([{ GREETING: 'hello from algorithmEnv' }]);
  });

  it('lists jobs and exposes Prometheus metrics', async () => {
    const r = await weft(['exec', 'ls', '-o', 'json'], { WEFT_SERVER: server.address });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/numbers/);
    const res = await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`);
    const text = await res.text();
    expect(text).toMatch(/weft_jobs_total\{state="completed"\} \d+/);
    expect(text).toMatch(/weft_tasks_total\{algorithm="multiply",outcome="succeeded"\} \d+/);
    expect(text).toMatch(/weft_dispatch_latency_seconds_bucket/);
    expect(text).toMatch(/weft_workers\{algorithm="multiply",state="ready"\}/);
  });
});
