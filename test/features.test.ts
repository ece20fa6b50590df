import { createServer, type IncomingMessage, type Server } from 'node:http';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobState } from '@weft/proto';
import { FIXTURES, ROOT, cleanup, clients, startServer, tempDir, until, weft, type ServerProc } from './helpers.js';

let server: ServerProc;
let c: ReturnType<typeof clients>;
const dir = tempDir('weft-features-');
const env = () => ({ WEFT_SERVER: server.address });

/** A webhook receiver that answers 500, then drops the connection, then 200. */
let hooks: Server;
let hookUrl = '';
const received: { path: string; body: Record<string, unknown> }[] = [];
let resultCalls = 0;

beforeAll(async () => {
  hooks = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (req.url === '/result') {
        resultCalls++;
        if (resultCalls === 1) {
          res.writeHead(500);
          res.end();
          return;
        }
        if (resultCalls === 2) {
          req.socket.destroy();
          return;
        }
      }
      received.push({ path: req.url ?? '', body: JSON.parse(body) as Record<string, unknown> });
      res.writeHead(200);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hooks.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(hooks.address() as { port: number }).port}`;
  server = await startServer({ env: { WEFT_STOP_GRACE_MS: '1000' } });
  c = clients(server.address);
  await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
  await c.applyFile(join(ROOT, 'examples', 'numbers', 'algorithms.yaml'));
});

afterAll(async () => {
  c.close();
  await server.stop();
  hooks.close();
  cleanup(dir);
});

const node = (nodeName: string, algorithmName: string, input: unknown[], more: Record<string, unknown> = {}) => ({
  nodeName,
  algorithmName,
  input,
  ...more,
});

describe('priorities', () => {
  it('runs the priority-5 job’s tasks before the priority-1 job’s on one worker', async () => {
    const low = await c.exec({ name: 'low', priority: 1, nodes: [node('S', 'stamp', ['#[1,2,3,4,5]', 60])] });
    const high = await c.exec({ name: 'high', priority: 5, nodes: [node('S', 'stamp', ['#[1,2,3,4,5]', 60])] });
    await c.wait(low);
    await c.wait(high);
    const lows = ((await c.values(low)) as { at: number }[]).map((v) => v.at).sort();
    const highs = ((await c.values(high)) as { at: number }[]).map((v) => v.at);
    // At most the one low task already running when the high job arrived runs before the high ones.
    expect(lows.filter((t) => t < Math.min(...highs)).length).toBeLessThanOrEqual(1);
    expect(Math.max(...highs)).toBeLessThan(lows.at(-1)!);
  });
});

describe('webhooks', () => {
  it('delivers the result to a receiver that fails its first two calls, and progress', async () => {
    const jobId = await c.exec({
      name: 'hooked',
      nodes: [node('A', 'echo', [{ v: 7 }]), node('R', 'reduce', [[1, 2, 3]])],
      webhooks: { result: `${hookUrl}/result`, progress: `${hookUrl}/progress` },
    });
    await c.wait(jobId);
    await until(() => received.some((r) => r.path === '/result'), 20_000, 'the result webhook');
    const result = received.find((r) => r.path === '/result')!.body;
    expect(resultCalls).toBe(3);
    expect(result).toMatchObject({ jobId, pipeline: 'hooked', status: 'completed' });
    expect(result['data']).toEqual([
      { nodeName: 'A', algorithmName: 'echo', result: { v: 7 } },
      { nodeName: 'R', algorithmName: 'reduce', result: 6 },
    ]);
    await until(() => received.some((r) => r.path === '/progress' && r.body['jobId'] === jobId), 10_000, 'progress');
    const progress = received.filter((r) => r.path === '/progress' && r.body['jobId'] === jobId);
    expect(progress.at(-1)?.body).toMatchObject({ jobId, pipeline: 'hooked', level: 'info' });
    // The algorithm's own api.progress report reaches the webhook too.
    await until(
      () => received.some((r) => JSON.stringify(r.body).includes('summing 3 values')),
      10_000,
      'the algorithm progress in a progress webhook',
    );
  });
});

describe('per-node retry and ttl', () => {
  it('does not retry a crash under policy Never', async () => {
    const jobId = await c.exec({ name: 'p', nodes: [node('X', 'crasher', [1], { retry: { policy: 'Never' } })] });
    const st = await c.wait(jobId);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.nodes[0]?.errors[0]?.attempts).toBe(1);
  });

  it('retries an algorithm error under OnError up to the limit', async () => {
    const jobId = await c.exec({
      name: 'p',
      nodes: [node('T', 'thrower', ['#[0,1]'], { retry: { policy: 'OnError', limit: 2 } })],
      options: { batchTolerance: 0 },
    });
    const st = await c.wait(jobId);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.error).toMatch(/batch item 1 .*failed after 3 attempts: RangeError/);
  });

  it('fails a task that outlives its ttl', async () => {
    const jobId = await c.exec({
      name: 'p',
      nodes: [
        node('S', 'busy', [{ marker: join(dir, 'ttl'), cooperative: true }], { ttl: 1, retry: { policy: 'Never' } }),
      ],
    });
    const st = await c.wait(jobId, 20_000);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.error).toMatch(/Timeout: algorithm ttl expired: S ran longer than 1 s/);
  });
});

describe('job options', () => {
  it('fails a job whose ttl expires', async () => {
    const jobId = await c.exec({
      name: 'p',
      nodes: [node('S', 'busy', [{ marker: join(dir, 'jobttl'), cooperative: true }])],
      options: { ttl: 1 },
    });
    const st = await c.wait(jobId, 20_000);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.error).toMatch(/ttl of 1 s expired/);
  });

  it('rejects or queues an exec over concurrentPipelines', async () => {
    const reject = {
      name: 'conc-reject',
      nodes: [node('S', 'stamp', ['x', 300])],
      options: { concurrentPipelines: { amount: 1 } },
    };
    const first = await c.exec(reject);
    const err = (await c.exec(reject).then(
      () => undefined,
      (e: unknown) => e,
    )) as ServiceError;
    expect(err.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/concurrentPipelines\.amount is 1/);
    await c.wait(first);

    const queue = {
      ...reject,
      name: 'conc-queue',
      options: { concurrentPipelines: { amount: 1, rejectOnFailure: false } },
    };
    const a = await c.exec(queue);
    const b = await c.exec(queue);
    expect((await c.status({ jobId: b })).state).toBe(JobState.JOB_STATE_PENDING);
    expect((await c.wait(a)).state).toBe(JobState.JOB_STATE_COMPLETED);
    expect((await c.wait(b)).state).toBe(JobState.JOB_STATE_COMPLETED);
  });
});

describe('descriptor constructs', () => {
  it('runs ranges, cartesian batches and an output node', async () => {
    const jobId = await c.exec({
      name: 'p',
      nodes: [
        node('R', 'echo', ['#[0...3]']),
        node('X', 'echo', ['#[1,2]', '#["a","b"]'], { batchOperation: 'cartesian' }),
        { nodeName: 'Out', algorithmName: '', kind: 'output', input: [{ range: '@R', pairs: '@X' }] },
      ],
    });
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    expect(st.nodes.find((n) => n.nodeName === 'R')?.total).toBe(4);
    expect(await c.values(jobId)).toEqual([
      [
        {
          range: [0, 1, 2, 3],
          pairs: [
            [1, 'a'],
            [1, 'b'],
            [2, 'a'],
            [2, 'b'],
          ],
        },
      ],
    ]);
  });

  it('inlines a stored pipeline as a sub-graph', async () => {
    await c.store({ name: 'inner-double', nodes: [node('D', 'slowsum', ['@flowInput.n'])], flowInput: { n: 1 } });
    const jobId = await c.exec({
      name: 'outer',
      nodes: [
        { nodeName: 'Sub', algorithmName: '', kind: 'pipeline', spec: { name: 'inner-double' }, input: [] },
        node('After', 'echo', ['@Sub']),
      ],
      flowInput: { n: 21 },
    });
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toEqual([42]);
  });
});

describe('job control', () => {
  it('holds a task retried while its job is paused until the job resumes', async () => {
    const marker = join(dir, 'pause-retry');
    const jobId = await c.exec({
      name: 'p',
      nodes: [node('K', 'crashonce-slow', [marker])],
    });
    await until(() => existsSync(marker), 20_000, 'the first run');
    await c.pause({ jobId });
    // The first run crashes after its marker; its retry must wait for resume.
    await new Promise((r) => setTimeout(r, 2000));
    const st = await c.status({ jobId });
    expect(st.state).toBe(JobState.JOB_STATE_PAUSED);
    expect(st.nodes[0]?.succeeded).toBe(0);
    await c.resume({ jobId });
    expect((await c.wait(jobId)).state).toBe(JobState.JOB_STATE_COMPLETED);
  });

  it('pauses and resumes a job', async () => {
    // Tasks long enough that the CLI (half a second to start on a busy machine) pauses before the last one ends.
    const jobId = await c.exec({ name: 'p', nodes: [node('S', 'stamp', ['#[1,2,3,4,5,6]', 400])] });
    await until(async () => ((await c.status({ jobId })).nodes[0]?.succeeded ?? 0) >= 1, 20_000, 'a first task');
    expect((await weft(['exec', 'pause', jobId], env())).code).toBe(0);
    const paused = await c.status({ jobId });
    expect(paused.state).toBe(JobState.JOB_STATE_PAUSED);
    await new Promise((r) => setTimeout(r, 600));
    const during = (await c.status({ jobId })).nodes[0]!;
    expect(during.succeeded).toBeLessThan(6);
    expect(during.active).toBe(0);
    expect((await weft(['exec', 'resume', jobId], env())).code).toBe(0);
    expect((await c.wait(jobId)).state).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toHaveLength(6);
  });

  it('reruns a job, and runs from a node reusing the other nodes’ results', async () => {
    const marker = join(dir, 'range-runs');
    const jobId = await c.exec({
      name: 'numbers',
      nodes: [
        node('Range', 'range', ['@flowInput.data']),
        node('Multiply', 'multiply', ['#@Range', '@flowInput.mul']),
        node('Reduce', 'reduce', ['@Multiply']),
      ],
      flowInput: { data: 5, mul: 2, marker },
    });
    expect((await c.wait(jobId)).state).toBe(JobState.JOB_STATE_COMPLETED);
    const rerun = await weft(['exec', 'rerun', jobId, '--wait', '-o', 'json'], env());
    expect(JSON.parse(rerun.stdout)).toMatchObject({ status: 'completed', result: [{ result: 30 }] });
    const from = await weft(['exec', 'from-node', jobId, 'Reduce', '--wait', '-o', 'json'], env());
    const doc = JSON.parse(from.stdout) as { jobId: string; status: string; result: { result: number }[] };
    expect(doc.status).toBe('completed');
    expect(doc.result[0]?.result).toBe(30);
    const st = await c.status({ jobId: doc.jobId });
    expect(st.parentJobId).toBe(jobId);
    // Only Reduce ran: Range and Multiply came from the earlier job.
    const history = await weft(['exec', 'status', doc.jobId, '-o', 'json'], env());
    expect(history.code).toBe(0);
    expect(st.nodes.map((n) => [n.nodeName, n.succeeded])).toEqual([
      ['Range', 1],
      ['Multiply', 5],
      ['Reduce', 1],
    ]);
  });

  it('streams a large result to a file with exec result --download', async () => {
    const jobId = await c.exec({ name: 'big', nodes: [node('Big', 'echo', [{ makeBuffer: 3 * 1024 * 1024 }])] });
    expect((await c.wait(jobId)).state).toBe(JobState.JOB_STATE_COMPLETED);
    const out = join(dir, 'download');
    const r = await weft(['exec', 'result', jobId, '--download', out], env());
    expect(r.code, r.stderr).toBe(0);
    const files = readdirSync(out);
    expect(files).toHaveLength(1);
    expect(existsSync(join(out, files[0]!))).toBe(true);
    expect(readFileSync(join(out, files[0]!)).byteLength).toBeGreaterThan(3 * 1024 * 1024);
  });

  it('lists and searches jobs by pipeline, state, tag and time', async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const jobId = await c.exec({ name: 'tagged', tags: ['nightly'], nodes: [node('A', 'echo', [1])] });
    await c.wait(jobId);
    const r = await weft(['exec', 'ls', '--tag', 'nightly', '--from', since, '-o', 'json'], env());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(jobId);
    const odd = await c.exec({ name: 'tagged', tags: ['night_ly%'], nodes: [node('A', 'echo', [1])] });
    await c.wait(odd);
    const oddList = await weft(['exec', 'ls', '--tag', 'night_ly%', '-o', 'json'], env());
    expect(oddList.stdout).toContain(odd);
    expect(oddList.stdout).not.toContain(jobId);
    const none = await weft(['exec', 'ls', '--tag', 'weekly', '-o', 'json'], env());
    expect(none.stdout).not.toContain(jobId);
    const graph = await weft(['exec', 'graph', jobId], env());
    expect(graph.code).toBe(0);
    expect(graph.stdout).toMatch(/A/);
  });
});

describe('triggers', () => {
  it('runs a stored pipeline when another completes, and on a cron schedule', async () => {
    const n = (nodeName: string) => [node(nodeName, 'echo', [nodeName])];
    await c.store({ name: 'first', nodes: n('F') });
    await c.store({ name: 'second', nodes: n('S'), triggers: { pipelines: ['first'] } });
    await c.store({ name: 'ticking', nodes: n('T'), triggers: { cron: { pattern: '* * * * * *', enabled: true } } });
    const first = await c.execStored('first');
    await c.wait(first);
    await until(async () => (await c.list({ pipelineName: 'second' })).length > 0, 10_000, 'the triggered job');
    const [second] = await c.list({ pipelineName: 'second' });
    expect(second?.parentJobId).toBe(first);
    await until(async () => (await c.list({ pipelineName: 'ticking' })).length >= 2, 10_000, 'two cron runs');
    // A cycle of pipeline triggers runs each pipeline once, not forever.
    await c.store({ name: 'ping', nodes: n('P'), triggers: { pipelines: ['pong'] } });
    await c.store({ name: 'pong', nodes: n('Q'), triggers: { pipelines: ['ping'] } });
    await c.wait(await c.execStored('ping'));
    await until(async () => (await c.list({ pipelineName: 'pong' })).length === 1, 10_000, 'pong');
    await new Promise((r) => setTimeout(r, 1500));
    expect((await c.list({ pipelineName: 'ping' })).length).toBe(1);
    expect((await c.list({ pipelineName: 'pong' })).length).toBe(1);
    // Storing it again without the trigger disarms the cron.
    await c.store({ name: 'ticking', nodes: n('T') });
    await new Promise((r) => setTimeout(r, 300));
    const count = (await c.list({ pipelineName: 'ticking' })).length;
    await new Promise((r) => setTimeout(r, 2500));
    expect((await c.list({ pipelineName: 'ticking' })).length).toBe(count);
  });
});
