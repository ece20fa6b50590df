/**
 * Python algorithms through a real control plane: env python runs
 * `/usr/bin/python3 -m weft_shim` (wrappers/python-shim) beside the sidecar.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode } from '@weft/common';
import { JobState, NodeState } from '@weft/proto';
import {
  FIXTURES,
  ROOT,
  alive,
  cleanup,
  clients,
  startServer,
  tempDir,
  until,
  weft,
  type ServerProc,
} from './helpers.js';

let server: ServerProc;
let c: ReturnType<typeof clients>;
const dir = tempDir('weft-python-');
const marker = (name: string) => join(dir, name);
const readMarker = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as { pid: number; sidecar: number };

beforeAll(async () => {
  server = await startServer({ env: { WEFT_HEARTBEAT_TIMEOUT_MS: '1500', WEFT_STOP_GRACE_MS: '1000' } });
  c = clients(server.address);
  await c.applyFile(join(FIXTURES, 'python', 'algorithms.yaml'));
  await c.applyFile(join(ROOT, 'examples', 'numbers-mixed', 'algorithms.yaml'));
});

afterAll(async () => {
  c.close();
  await server.stop();
  cleanup(dir);
});

describe('Python algorithms', () => {
  it('runs a Python algorithm end to end, its progress reaching watchers', async () => {
    const jobId = await c.exec({ name: 'py', nodes: [{ nodeName: 'E', algorithmName: 'py-echo', input: ['héllo'] }] });
    const events = await c.watch(jobId);
    const last = events.at(-1)?.event;
    expect(last?.$case === 'status' && last.value.state).toBe(JobState.JOB_STATE_COMPLETED);
    const progress = events.flatMap((e) => (e.event?.$case === 'progress' ? [e.event.value] : []));
    expect(progress).toContainEqual(expect.objectContaining({ nodeName: 'E', percent: 50, message: 'echoing' }));
    expect(await c.values(jobId)).toEqual(['héllo']);
  });

  it('runs the mixed-language numbers example (Python, Node, Python) from the CLI and prints 30', async () => {
    const r = await weft(['exec', 'raw', '-f', 'examples/numbers-mixed/pipeline.yaml', '--wait', '-o', 'json'], {
      WEFT_SERVER: server.address,
    });
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { jobId: string; status: string; result: unknown[] };
    expect(doc.status).toBe('completed');
    expect(doc.result).toEqual([{ nodeName: 'Reduce', algorithmName: 'reduce-py', result: 30 }]);
    const st = await c.status({ jobId: doc.jobId });
    expect(st.nodes.map((n) => [n.nodeName, n.total, n.succeeded, n.state])).toEqual([
      ['Range', 1, 1, NodeState.NODE_STATE_SUCCEEDED],
      ['Multiply', 5, 5, NodeState.NODE_STATE_SUCCEEDED],
      ['Reduce', 1, 1, NodeState.NODE_STATE_SUCCEEDED],
    ]);
  });

  it('turns a Python exception into a task error with its type, message and traceback', async () => {
    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'T', algorithmName: 'py-thrower', input: [2] }],
    });
    const st = await c.wait(jobId);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.error).toMatch(/node "T" \(task \S+:0:0\) failed: ItemError: item 2 is out of range/);
    const err = st.nodes[0]!.errors[0]!;
    expect(err.attempts).toBe(1); // an algorithm error is not retried under OnCrash
    expect(err.failure).toMatchObject({ type: 'ItemError', message: 'item 2 is out of range', crash: false });
    expect(err.failure?.stack).toMatch(
      /^Traceback \(most recent call last\):\n {2}File ".*thrower\/main\.py", line \d+, in start\n[\s\S]*in check\n[\s\S]*ItemError: item 2 is out of range\n$/,
    );
    expect(err.failure?.stack).not.toMatch(/weft_shim/);
    // `weft exec status` shows type and message; -o json also the traceback.
    const text = await weft(['exec', 'status', jobId, '--server', server.address]);
    expect(text.stdout).toMatch(/ItemError: item 2 is out of range/);
    const json = await weft(['exec', 'status', jobId, '--server', server.address, '-o', 'json']);
    expect(json.stdout).toMatch(/Traceback \(most recent call last\)/);
    expect(json.stdout).toMatch(/in check/);
  });

  it('runs a task again on a new worker when its Python process dies mid-task', async () => {
    const m = marker('crashonce');
    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'C', algorithmName: 'py-crashonce', input: [{ marker: m }] }],
    });
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    const first = readMarker(m);
    const [out] = (await c.values(jobId)) as [{ attempt: number; pid: number }];
    expect(out.attempt).toBe(2);
    expect(out.pid).not.toBe(first.pid);
    await until(() => !alive(first.sidecar), 5000, 'the crashed worker’s sidecar to exit');
  });

  it('fails after the retry limit when the Python process dies every time', async () => {
    const jobId = await c.exec({ name: 'p', nodes: [{ nodeName: 'Boom', algorithmName: 'py-crasher', input: [1] }] });
    const st = await c.wait(jobId);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    // The sidecar sees the socket close or the process exit first, whichever comes first.
    expect(st.error).toMatch(
      /node "Boom" \(task \S+:0:0\) failed after 4 attempts: Crash: algorithm (closed its connection|process exited \(code 7)/,
    );
    expect(st.nodes[0]!.errors[0]).toMatchObject({ attempts: 4, failure: { crash: true } });
  });

  it('stops a cooperative Python algorithm: stop() is called and the worker stays warm', async () => {
    const m = marker('coop');
    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'B', algorithmName: 'py-busy', input: [{ marker: m, cooperative: true }] }],
    });
    await until(() => existsSync(m), 20_000, 'the task to start');
    const r = await weft(['exec', 'stop', jobId, '--server', server.address]);
    expect(r.code).toBe(0);
    expect((await c.status({ jobId })).state).toBe(JobState.JOB_STATE_STOPPED);
    await until(() => existsSync(m + '.stopped'), 5000, 'the algorithm to see the stop');
    expect(readFileSync(m + '.stopped', 'utf8')).toBe('1');
    await new Promise((res) => setTimeout(res, 1500));
    expect(alive(readMarker(m).pid)).toBe(true);
  });

  it('kills a Python algorithm whose start blocks and ignores stop, after the grace period', async () => {
    const m = marker('blocked');
    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'B', algorithmName: 'py-busy', input: [{ marker: m, cooperative: false }] }],
    });
    await until(() => existsSync(m), 20_000, 'the task to start');
    const { pid } = readMarker(m);
    await c.stop({ jobId, reason: 'test' });
    expect((await c.status({ jobId })).state).toBe(JobState.JOB_STATE_STOPPED);
    await until(() => !alive(pid), 10_000, 'the blocked algorithm to be killed');
  });

  it('round-trips bytes, nested values, int64 and floats between Python and Node nodes', async () => {
    const v = {
      bin: Buffer.from([0, 1, 2, 254, 255]),
      nested: { a: [1, { b: [true, null, 'x'] }], s: 'é😀' },
      big: 2n ** 60n + 1n,
      neg: -(2n ** 62n),
      f: 0.5,
      small: 42,
      i40: 2 ** 40,
    };
    const jobId = await c.exec(
      {
        name: 'types',
        nodes: [
          { nodeName: 'P1', algorithmName: 'py-echo', input: ['@flowInput.v'] },
          { nodeName: 'N', algorithmName: 'node-echo', input: ['@P1'] },
          { nodeName: 'P2', algorithmName: 'py-types', input: ['@N'] },
          { nodeName: 'K', algorithmName: 'py-types', input: [{ emit: 'intKeys' }] },
        ],
      },
      encode({ v }),
    );
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    const [p2, k] = (await c.values(jobId)) as [{ seen: unknown; value: typeof v }, unknown];
    expect(p2.value).toEqual(v);
    expect(Buffer.isBuffer(p2.value.bin)).toBe(true);
    expect(typeof p2.value.big).toBe('bigint');
    expect(p2.seen).toEqual({
      bin: 'bytes',
      nested: { a: ['int', { b: ['bool', 'NoneType', 'str'] }], s: 'str' },
      big: 'int',
      neg: 'int',
      f: 'float',
      small: 'int',
      // Node writes integers outside 32 bits (and below 2^53) as float64: Python sees a float of the same value.
      i40: 'float',
    });
    // Node reads map keys as strings.
    expect(k).toEqual({ '1': 'one', '2': 'two' });
  });

  it('hands large results between Python and Node through blob storage, and fans out over Python metadata', async () => {
    const jobId = await c.exec({
      name: 'big',
      nodes: [
        { nodeName: 'PyBig', algorithmName: 'py-echo', input: [{ makeBuffer: 512 * 1024 }] },
        { nodeName: 'NodeChild', algorithmName: 'node-echo', input: ['@PyBig.buf', '@PyBig.len'] },
        { nodeName: 'NodeBig', algorithmName: 'node-echo', input: [{ makeBuffer: 512 * 1024 }] },
        { nodeName: 'PyChild', algorithmName: 'py-echo', input: ['@NodeBig.len', '@NodeBig.buf'] },
        { nodeName: 'PyRange', algorithmName: 'py-echo', input: [{ range: 30000 }] },
        { nodeName: 'Pick', algorithmName: 'node-echo', input: ['#[0, 1]', '@PyRange.100'] },
        { nodeName: 'PySum', algorithmName: 'py-echo', input: [{ sumOf: '@PyRange' }] },
        { nodeName: 'PyItems', algorithmName: 'py-echo', input: [{ itemsWithPad: 3 }] },
        { nodeName: 'Each', algorithmName: 'node-echo', input: ['#@PyItems.items'] },
      ],
    });
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    const [nodeChild, pyChild, pick0, pick1, sum, ...each] = (await c.values(jobId)) as [
      [Buffer, number],
      [number, Buffer],
      unknown,
      unknown,
      number,
      ...unknown[],
    ];
    expect(Buffer.isBuffer(nodeChild[0])).toBe(true);
    expect(nodeChild[0].length).toBe(512 * 1024);
    expect(nodeChild[0][4096]).toBe(4096 % 251);
    expect(nodeChild[1]).toBe(512 * 1024);
    expect(pyChild[0]).toBe(512 * 1024);
    expect(Buffer.isBuffer(pyChild[1])).toBe(true);
    expect(pyChild[1][8192]).toBe(8192 % 251);
    expect([pick0, pick1]).toEqual([
      [0, 101],
      [1, 101],
    ]);
    expect(sum).toBe((30000 * 30001) / 2);
    expect(each).toEqual([10, 20, 30]);
    expect(st.nodes.find((n) => n.nodeName === 'Each')?.total).toBe(3);
  });

  it('warns in the worker log that requirements.txt is not installed, and runs anyway', async () => {
    const jobId = await c.exec({ name: 'p', nodes: [{ nodeName: 'R', algorithmName: 'py-reqs', input: [] }] });
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toEqual(['ran without its requirements']);
    const logs = join(server.dataDir, 'logs');
    const text = readdirSync(logs)
      .filter((f) => f.startsWith('py-reqs'))
      .map((f) => readFileSync(join(logs, f), 'utf8'))
      .join('\n');
    expect(text).toMatch(/requirements\.txt, which the local executor does NOT install/);
  });

  it('runs child jobs from Python code with the code API (api.start_algorithm, start_*_subpipeline)', async () => {
    await c.store({
      name: 'py-doubler',
      nodes: [{ nodeName: 'D', algorithmName: 'py-echo', input: ['@flowInput.n'] }],
    });
    const call = async (mode: string): Promise<unknown> => {
      const jobId = await c.exec({
        name: 'caller',
        nodes: [{ nodeName: 'C', algorithmName: 'py-caller', input: [mode] }],
      });
      const st = await c.wait(jobId, 30_000);
      expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
      if (mode === 'algorithm') expect(st.childJobIds).toHaveLength(1);
      return (await c.values(jobId))[0];
    };
    expect(await call('algorithm')).toEqual({ n: 21 });
    expect(await call('stored')).toEqual([{ nodeName: 'D', algorithmName: 'py-echo', result: 5 }]);
    const [raw] = (await call('raw')) as [{ result: Buffer }];
    expect([...raw.result]).toEqual([1, 2, 3]);
    expect(await call('big')).toBe(2 * 1024 * 1024); // the child's result comes from blob storage
    expect(await call('fails')).toMatch(/^caught: child job \S+ failed: .*ItemError: item 5 is out of range/);
    expect(await call('noresult')).toEqual({ got: null });
  });

  it('fails the job when the Python entry point cannot be imported, leaving the traceback in the worker log', async () => {
    const jobId = await c.exec({ name: 'p', nodes: [{ nodeName: 'X', algorithmName: 'py-broken', input: [] }] });
    const st = await c.wait(jobId);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.error).toMatch(/node "X".*WorkerStartFailed: .*exited \(code 1/);
    const logs = join(server.dataDir, 'logs');
    const text = readdirSync(logs)
      .filter((f) => f.startsWith('py-broken'))
      .map((f) => readFileSync(join(logs, f), 'utf8'))
      .join('\n');
    expect(text).toMatch(/ModuleNotFoundError: No module named 'module_that_does_not_exist'/);
  });
});
