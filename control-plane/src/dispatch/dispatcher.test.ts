import { createLogger } from '@weft/common';
import type { WorkerEvent } from '@weft/proto';
import { describe, expect, it } from 'vitest';
import type { AlgorithmDef } from '../ports/executor.js';
import { Metrics } from '../server/metrics.js';
import { FakeExecutor } from '../testing/fake-executor.js';
import { FakeWorkerLink } from '../testing/fake-worker-link.js';
import { ManualClock } from '../testing/manual-clock.js';
import { DEFAULT_DISPATCHER_CONFIG, Dispatcher, type Outcome, type WorkUnit } from './dispatcher.js';

const log = createLogger({ component: 'dispatcher-test' }, 'error');

const ALG: AlgorithmDef = {
  name: 'alg',
  env: 'nodejs',
  codePath: '/code',
  codeStage: '',
  entryPoint: 'index.js',
  image: '',
  cpu: 0.5,
  memBytes: 1024,
  gpu: 0,
  minHotWorkers: 0,
  maxWorkers: 1,
  env_vars: {},
};

const unit = (over: Partial<WorkUnit> = {}): WorkUnit => ({
  taskId: 't1',
  jobId: 'j1',
  algorithmName: 'alg',
  nodeName: 'node',
  pipelineName: 'p',
  batchIndex: -1,
  input: Buffer.from([0x90]),
  inputKeys: [],
  outputKey: 'jobs/j1/0/-1',
  savePaths: [],
  priority: 3,
  kind: 'pipeline',
  retry: { policy: 'Never', limit: 0 },
  ...over,
});

/** Lets promise callbacks (the executor's start) run. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

function setup(): { d: Dispatcher; ex: FakeExecutor; clock: ManualClock } {
  const ex = new FakeExecutor();
  const clock = new ManualClock(1_000_000);
  const d = new Dispatcher({
    executor: ex,
    algorithm: (name) => (name === 'alg' ? ALG : undefined),
    storageUrl: 'fs:/blobs',
    serverAddress: () => '127.0.0.1:1',
    config: { ...DEFAULT_DISPATCHER_CONFIG, heartbeatTimeoutMs: 5000 },
    clock,
    metrics: new Metrics(),
    log,
  });
  d.start();
  return { d, ex, clock };
}

function submit(d: Dispatcher, u: WorkUnit): Promise<Outcome> {
  return new Promise((resolve) => d.submit(u, { onDone: resolve }));
}

const ev = (e: WorkerEvent['event']): WorkerEvent => ({ event: e });

/** Connects a worker the executor started, as its sidecar would, and says ready. */
function connect(d: Dispatcher, workerId: string): FakeWorkerLink {
  const link = new FakeWorkerLink();
  d.attach(link);
  link.emit(
    ev({ $case: 'hello', value: { workerId, algorithmName: 'alg', protocolVersion: 1, pid: 0, hostname: 'h' } }),
  );
  link.emit(ev({ $case: 'ready', value: {} }));
  return link;
}

describe('Dispatcher with a fake executor, link and clock', () => {
  it('starts once: a second start, or a start after shutdown, is refused', async () => {
    const { d } = setup();
    expect(() => d.start()).toThrow('called twice');
    await d.shutdown(0);
    const again = setup().d;
    await again.shutdown(0);
    expect(() => again.start()).toThrow('after shutdown');
  });

  it('fails the queued units with the reason when the executor rejects every start, holding nothing', async () => {
    const { d, ex } = setup();
    ex.failWith = 'no room on the moon';
    const outcome = submit(d, unit());
    const o = await outcome;
    expect(o.status).toBe('failed');
    if (o.status !== 'failed') return;
    expect(o.failure.type).toBe('WorkerStartFailed');
    expect(o.failure.message).toContain('executor could not start it: no room on the moon');
    expect(ex.launches).toHaveLength(3);
    await settle();
    // Nothing queued any more: no further start is tried, and nothing is accounted.
    expect(ex.launches).toHaveLength(3);
    expect(ex.used).toBe(0);
    expect(d.stats().get('alg')).toMatchObject({ starting: 0, ready: 0, busy: 0, queued: 0 });
    await d.shutdown(0);
  });

  it('refuses work the executor does not admit, with its reason, without starting anything', async () => {
    const { d, ex } = setup();
    ex.refuse = 'needs a GPU island';
    const o = await submit(d, unit());
    expect(o).toMatchObject({
      status: 'failed',
      failure: { type: 'Unschedulable', message: 'algorithm "alg" needs a GPU island' },
    });
    expect(d.admits(ALG)).toBe('needs a GPU island');
    expect(ex.launches).toHaveLength(0);
    await d.shutdown(0);
  });

  it('dispatches to a connected worker and declares it dead after the heartbeat timeout, on the clock', async () => {
    const { d, ex, clock } = setup();
    const outcome = submit(d, unit({ retry: { policy: 'Never', limit: 0 } }));
    await settle();
    expect(ex.launches).toHaveLength(1);
    const link = connect(d, ex.launches[0]!.workerId);
    expect(link.commands()).toEqual(['welcome', 'initialize', 'start']);
    clock.advance(4000);
    link.emit(ev({ $case: 'heartbeat', value: {} }));
    clock.advance(4000);
    // 4 s since the last heartbeat: still alive.
    expect(ex.handles[0]!.stops).toEqual([]);
    clock.advance(2000);
    const o = await outcome;
    expect(o).toMatchObject({ status: 'failed', failure: { type: 'Crash', crash: true } });
    if (o.status === 'failed') expect(o.failure.message).toMatch(/no heartbeat for \d+ ms/);
    expect(ex.handles[0]!.stops).toEqual([true]);
    expect(link.closedWith).toBeDefined();
    expect(ex.used).toBe(0);
    await d.shutdown(0);
  });

  it('retries a crashed unit under OnCrash on a new worker once the old one has exited', async () => {
    const { d, ex, clock } = setup();
    const outcome = submit(d, unit({ retry: { policy: 'OnCrash', limit: 1 } }));
    await settle();
    connect(d, ex.launches[0]!.workerId);
    clock.advance(6000);
    await settle();
    expect(ex.launches).toHaveLength(2);
    const second = connect(d, ex.launches[1]!.workerId);
    expect(second.commands()).toEqual(['welcome', 'initialize', 'start']);
    const init = second.sent[1]!.command;
    expect(init?.$case === 'initialize' && init.value.task?.attempt).toBe(2);
    second.emit(
      ev({
        $case: 'done',
        value: { taskId: 't1', result: { kind: { $case: 'inline', value: Buffer.from([1]) } }, metadata: {} },
      }),
    );
    expect(await outcome).toMatchObject({ status: 'succeeded', attempts: 2 });
    await d.shutdown(0);
  });

  it('ends a worker that never connects after the start timeout, on the clock', async () => {
    const { d, ex, clock } = setup();
    void submit(d, unit());
    await settle();
    clock.advance(DEFAULT_DISPATCHER_CONFIG.startTimeoutMs - 1000);
    expect(ex.handles[0]!.stops).toEqual([]);
    clock.advance(2000);
    expect(ex.handles[0]!.stops).toEqual([true]);
    await settle();
    // Its replacement is on its way for the unit, which has not run yet.
    expect(ex.launches).toHaveLength(2);
    expect(d.stats().get('alg')).toMatchObject({ starting: 1, queued: 1 });
    await d.shutdown(0);
  });

  it('stops a worker whose start resolves after the dispatcher gave up on it, and frees its resources', async () => {
    const { d, ex } = setup();
    ex.hold = true;
    void submit(d, unit());
    await settle();
    expect(ex.launches).toHaveLength(1);
    await d.shutdown(0);
    ex.release();
    await settle();
    expect(ex.handles[0]!.stops).toEqual([true]);
    expect(ex.used).toBe(0);
  });

  it('refuses a stream whose first event is not hello, with a reason', async () => {
    const { d } = setup();
    const link = new FakeWorkerLink();
    d.attach(link);
    link.emit(ev({ $case: 'ready', value: {} }));
    expect(link.refusedWith).toBe('the first event on a worker stream must be hello');
    await d.shutdown(0);
  });
});
