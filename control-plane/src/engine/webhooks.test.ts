import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger } from '@weft/common';
import { JobState, JobStatus, NodeState, NodeStatus } from '@weft/proto';
import { Webhooks, parseLevel, progressPayload, resultPayload, type ResultEntry } from './webhooks.js';

interface Call {
  at: number;
  body: Record<string, unknown>;
  contentType: string | undefined;
}

/** What the receiver does with the n-th call (0-based): a status code, 'drop' the connection, or 'hang'. */
type Behaviour = (n: number) => number | 'drop' | 'hang';

interface Receiver {
  url: string;
  calls: Call[];
  close(): Promise<void>;
}

const servers: Server[] = [];

async function receiver(behaviour: Behaviour = () => 200): Promise<Receiver> {
  const calls: Call[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const n = calls.length;
      calls.push({
        at: Date.now(),
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
        contentType: req.headers['content-type'],
      });
      const what = behaviour(n);
      if (what === 'hang') return;
      if (what === 'drop') {
        req.socket.destroy();
        return;
      }
      res.writeHead(what, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook?token=secret`,
    calls,
    close: () => closeServer(server),
  };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => (s.listening ? closeServer(s) : Promise.resolve())));
});

interface Line {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

function testLogger(lines: Line[] = []): Logger {
  const at =
    (level: string) =>
    (msg: string, fields?: Record<string, unknown>): void => {
      lines.push({ level, msg, fields });
    };
  const log: Logger = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => log,
  };
  return log;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(5);
  }
}

function node(partial: Partial<NodeStatus>): NodeStatus {
  return NodeStatus.fromPartial({ algorithmName: 'algo', ...partial });
}

function status(partial: Partial<JobStatus> = {}): JobStatus {
  return JobStatus.fromPartial({
    jobId: 'job-1',
    pipelineName: 'simple',
    state: JobState.JOB_STATE_ACTIVE,
    progress: 33.333333,
    nodes: [
      node({ nodeName: 'green', state: NodeState.NODE_STATE_SUCCEEDED, total: 1, succeeded: 1 }),
      node({ nodeName: 'yellow', state: NodeState.NODE_STATE_ACTIVE, total: 2, active: 2, batch: true }),
    ],
    ...partial,
  });
}

const RESULTS: ResultEntry[] = [
  { nodeName: 'black', algorithmName: 'black-alg', batchIndex: -1, result: { n: 42n, big: 2n ** 64n } },
  { nodeName: 'yellow', algorithmName: 'yellow-alg', batchIndex: 1, result: Buffer.from('hi') },
  {
    nodeName: 'yellow',
    algorithmName: 'yellow-alg',
    batchIndex: 2,
    info: { path: 'results/job-1/yellow/2', size: 5_000_000, isBigData: true, message: 'too large' },
  },
];

describe('progressPayload', () => {
  it('has HKube’s keys and formats progress with two decimals', () => {
    const p = progressPayload(status(), 'info');
    expect(Object.keys(p).sort()).toEqual(['data', 'jobId', 'level', 'pipeline', 'status', 'timestamp']);
    expect(p).toMatchObject({ jobId: 'job-1', pipeline: 'simple', level: 'info', status: 'active' });
    expect(typeof p['timestamp']).toBe('number');
    const data = p['data'] as Record<string, unknown>;
    expect(Object.keys(data).sort()).toEqual(['activeNodes', 'details', 'progress']);
    expect(data['progress']).toBe('33.33');
    expect(data['details']).toBe('33.33% completed, 1 succeed, 0 failed, 2 active, 0 pending, 0 skipped');
    expect(data['activeNodes']).toEqual([{ nodeName: 'yellow', algorithmName: 'algo' }]);
  });

  it('leaves activeNodes out when none run, adds error, counts nodes without known tasks', () => {
    const p = progressPayload(
      status({
        state: JobState.JOB_STATE_FAILED,
        progress: 100,
        error: 'node yellow failed',
        nodes: [
          node({ nodeName: 'a', state: NodeState.NODE_STATE_FAILED, total: 3, succeeded: 1, failed: 1, skipped: 1 }),
          node({ nodeName: 'b', state: NodeState.NODE_STATE_SKIPPED }),
        ],
      }),
      'error',
    );
    expect(Object.keys(p).sort()).toEqual(['data', 'error', 'jobId', 'level', 'pipeline', 'status', 'timestamp']);
    expect(p).toMatchObject({ status: 'failed', level: 'error', error: 'node yellow failed' });
    const data = p['data'] as Record<string, unknown>;
    expect(Object.keys(data).sort()).toEqual(['details', 'progress']);
    expect(data['details']).toBe('100.00% completed, 1 succeed, 1 failed, 0 active, 0 pending, 2 skipped');
  });

  it('uses HKube’s lower-case status names', () => {
    const name = (state: JobState): unknown => progressPayload(status({ state }), 'info')['status'];
    expect(name(JobState.JOB_STATE_PENDING)).toBe('pending');
    expect(name(JobState.JOB_STATE_COMPLETED)).toBe('completed');
    expect(name(JobState.JOB_STATE_STOPPED)).toBe('stopped');
    expect(name(JobState.JOB_STATE_PAUSED)).toBe('paused');
  });
});

describe('resultPayload', () => {
  it('has HKube’s keys, one entry per leaf, binary as $base64 and bigint as number or string', () => {
    const p = resultPayload(status({ state: JobState.JOB_STATE_COMPLETED, progress: 100 }), RESULTS);
    expect(Object.keys(p).sort()).toEqual(['data', 'jobId', 'pipeline', 'status', 'timestamp']);
    expect(p).toMatchObject({ jobId: 'job-1', pipeline: 'simple', status: 'completed' });
    expect(p['data']).toEqual([
      { nodeName: 'black', algorithmName: 'black-alg', result: { n: 42, big: '18446744073709551616' } },
      { nodeName: 'yellow', algorithmName: 'yellow-alg', batchIndex: 1, result: { $base64: 'aGk=' } },
      {
        nodeName: 'yellow',
        algorithmName: 'yellow-alg',
        batchIndex: 2,
        info: { path: 'results/job-1/yellow/2', size: 5_000_000, isBigData: true, message: 'too large' },
      },
    ]);
    const keys = (p['data'] as Record<string, unknown>[]).map((e) => Object.keys(e).sort());
    expect(keys).toEqual([
      ['algorithmName', 'nodeName', 'result'],
      ['algorithmName', 'batchIndex', 'nodeName', 'result'],
      ['algorithmName', 'batchIndex', 'info', 'nodeName'],
    ]);
    expect(() => JSON.stringify(p)).not.toThrow();
  });

  it('adds error for a failed job and sends result null when there is none', () => {
    const p = resultPayload(status({ state: JobState.JOB_STATE_FAILED, error: 'boom' }), [
      { nodeName: 'x', algorithmName: 'y', batchIndex: -1 },
    ]);
    expect(Object.keys(p).sort()).toEqual(['data', 'error', 'jobId', 'pipeline', 'status', 'timestamp']);
    expect(p).toMatchObject({
      status: 'failed',
      error: 'boom',
      data: [{ nodeName: 'x', algorithmName: 'y', result: null }],
    });
  });
});

describe('parseLevel', () => {
  it('reads pipeline verbosity levels, HKube spellings included', () => {
    expect(parseLevel('warn')).toBe('warn');
    expect(parseLevel('warning')).toBe('warn');
    expect(parseLevel('CRITICAL')).toBe('critical');
    expect(parseLevel('')).toBe('info');
    expect(parseLevel(undefined)).toBe('info');
  });
});

describe('Webhooks.result', () => {
  it('is delivered when the receiver fails twice (500, dropped connection) and then answers', async () => {
    const r = await receiver((n) => (n === 0 ? 500 : n === 1 ? 'drop' : 200));
    const lines: Line[] = [];
    const hooks = new Webhooks({ log: testLogger(lines), backoffMs: 10 });
    const done = await hooks.result(r.url, status({ state: JobState.JOB_STATE_COMPLETED, progress: 100 }), RESULTS);
    expect(done).toBe(true);
    expect(r.calls).toHaveLength(3);
    const last = r.calls[2]!;
    expect(last.contentType).toBe('application/json');
    expect(Object.keys(last.body).sort()).toEqual(['data', 'jobId', 'pipeline', 'status', 'timestamp']);
    expect(last.body).toMatchObject({ jobId: 'job-1', pipeline: 'simple', status: 'completed' });
    expect(last.body['data']).toEqual(resultPayload(status(), RESULTS)['data']);
    // The same body each time.
    expect(r.calls[0]!.body).toEqual(last.body);
    // Retries are logged without the URL's query (it may hold a token).
    expect(JSON.stringify(lines)).not.toContain('secret');
    await hooks.close();
  });

  it('gives up after `attempts` and resolves false', async () => {
    const r = await receiver(() => 503);
    const lines: Line[] = [];
    const hooks = new Webhooks({ log: testLogger(lines), attempts: 3, backoffMs: 5 });
    const done = await hooks.result(r.url, status({ state: JobState.JOB_STATE_FAILED }), []);
    expect(done).toBe(false);
    expect(r.calls).toHaveLength(3);
    expect(lines.some((l) => l.level === 'warn' && l.msg.includes('not delivered'))).toBe(true);
    await hooks.close();
  });

  it('resolves false (never rejects) for an unreachable receiver and an invalid URL', async () => {
    const r = await receiver();
    const url = r.url;
    await r.close();
    const hooks = new Webhooks({ log: testLogger(), attempts: 2, backoffMs: 5 });
    await expect(hooks.result(url, status(), RESULTS)).resolves.toBe(false);
    await expect(hooks.result('not a url', status(), RESULTS)).resolves.toBe(false);
    await expect(hooks.result('file:///etc/passwd', status(), RESULTS)).resolves.toBe(false);
    await hooks.close();
  });

  it('times out an attempt that gets no answer', async () => {
    const r = await receiver((n) => (n === 0 ? 'hang' : 200));
    const hooks = new Webhooks({ log: testLogger(), backoffMs: 5, timeoutMs: 150 });
    const start = Date.now();
    await expect(hooks.result(r.url, status(), RESULTS)).resolves.toBe(true);
    expect(r.calls).toHaveLength(2);
    expect(Date.now() - start).toBeGreaterThanOrEqual(140);
    await hooks.close();
  });
});

describe('Webhooks.progress', () => {
  it('throttles: the first at once, then only the latest after the interval', async () => {
    const r = await receiver();
    const hooks = new Webhooks({ log: testLogger(), progressIntervalMs: 300 });
    const start = Date.now();
    for (let i = 0; i < 20; i++) {
      hooks.progress(r.url, status({ progress: i * 5 }), { level: 'info', minLevel: 'info' });
      await sleep(5);
    }
    expect(Date.now() - start).toBeLessThan(300);
    await until(() => r.calls.length >= 2);
    await sleep(400); // nothing more arrives
    expect(r.calls.length).toBeLessThanOrEqual(3);
    expect(r.calls[0]!.at - start).toBeLessThan(100);
    expect(r.calls[0]!.body['data']).toMatchObject({ progress: '0.00' });
    expect(r.calls[1]!.at - r.calls[0]!.at).toBeGreaterThanOrEqual(250);
    const last = r.calls[r.calls.length - 1]!;
    expect(last.contentType).toBe('application/json');
    expect(last.body).toMatchObject({ jobId: 'job-1', level: 'info', status: 'active', data: { progress: '95.00' } });
    await hooks.close();
  });

  it('keeps jobs apart: each job’s first report goes out at once', async () => {
    const r = await receiver();
    const hooks = new Webhooks({ log: testLogger(), progressIntervalMs: 10_000 });
    hooks.progress(r.url, status({ jobId: 'a' }), { level: 'info', minLevel: 'info' });
    hooks.progress(r.url, status({ jobId: 'b' }), { level: 'info', minLevel: 'info' });
    await until(() => r.calls.length === 2);
    expect(r.calls.map((c) => c.body['jobId']).sort()).toEqual(['a', 'b']);
    await hooks.close();
  });

  it('drops reports less severe than the pipeline’s verbosity level', async () => {
    const r = await receiver();
    const hooks = new Webhooks({ log: testLogger(), progressIntervalMs: 0 });
    hooks.progress(r.url, status({ progress: 10 }), { level: 'info', minLevel: 'warn' });
    hooks.progress(r.url, status({ progress: 20 }), { level: 'debug', minLevel: 'warn' });
    await sleep(100);
    expect(r.calls).toHaveLength(0);
    hooks.progress(r.url, status({ state: JobState.JOB_STATE_FAILED, error: 'x' }), {
      level: 'error',
      minLevel: 'warn',
    });
    await until(() => r.calls.length === 1);
    expect(r.calls[0]!.body).toMatchObject({ level: 'error', status: 'failed', error: 'x' });
    await hooks.close();
    expect(r.calls).toHaveLength(1);
  });

  it('retries a failed report unless a newer one replaces it', async () => {
    const r = await receiver((n) => (n === 0 ? 500 : 200));
    const hooks = new Webhooks({ log: testLogger(), backoffMs: 5, progressIntervalMs: 0 });
    hooks.progress(r.url, status({ progress: 50 }), { level: 'info', minLevel: 'trace' });
    await until(() => r.calls.length === 2);
    expect(r.calls[1]!.body['data']).toMatchObject({ progress: '50.00' });
    await hooks.close();
  });
});

describe('Webhooks.close', () => {
  it('sends the pending progress report and waits for it', async () => {
    const r = await receiver();
    const hooks = new Webhooks({ log: testLogger(), progressIntervalMs: 60_000 });
    hooks.progress(r.url, status({ progress: 10 }), { level: 'info', minLevel: 'info' });
    hooks.progress(r.url, status({ progress: 60 }), { level: 'info', minLevel: 'info' });
    hooks.progress(r.url, status({ progress: 70 }), { level: 'info', minLevel: 'info' });
    const start = Date.now();
    await hooks.close();
    expect(Date.now() - start).toBeLessThan(1000);
    expect(r.calls).toHaveLength(2);
    expect(r.calls[1]!.body['data']).toMatchObject({ progress: '70.00' });
    // Closed: nothing more goes out.
    hooks.progress(r.url, status({ progress: 80 }), { level: 'info', minLevel: 'info' });
    await expect(hooks.result(r.url, status(), [])).resolves.toBe(false);
    await sleep(50);
    expect(r.calls).toHaveLength(2);
  });

  it('waits for in-flight results, then gives up after its timeout', async () => {
    const r = await receiver(() => 'hang');
    const hooks = new Webhooks({ log: testLogger(), attempts: 5, backoffMs: 5, timeoutMs: 30_000 });
    const delivered = hooks.result(r.url, status(), RESULTS);
    await until(() => r.calls.length === 1);
    const start = Date.now();
    await hooks.close(200);
    expect(Date.now() - start).toBeLessThan(1000);
    expect(Date.now() - start).toBeGreaterThanOrEqual(180);
    await expect(delivered).resolves.toBe(false);
    expect(r.calls).toHaveLength(1);
  });

  it('resolves at once when nothing is pending, and twice', async () => {
    const hooks = new Webhooks({ log: testLogger() });
    await hooks.close();
    await hooks.close();
  });
});
