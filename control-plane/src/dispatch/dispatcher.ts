import { randomBytes } from 'node:crypto';
import type { Logger } from '@weft/common';
import type { JobDone, Payload, PathMeta, SubmitJob, TaskFailure, WorkerCommand, WorkerEvent } from '@weft/proto';
import type { Clock, Timer } from '../ports/clock.js';
import type { AlgorithmDef, Executor, WorkerHandle } from '../ports/executor.js';
import type { WorkerLink } from '../ports/worker-link.js';
import type { Metrics } from '../server/metrics.js';
import { PriorityQueue } from './queue.js';

/** HKube's retry policies: which failures run a task again. */
export type RetryPolicy = 'Never' | 'Always' | 'OnError' | 'OnCrash';

/**
 * One unit of work. A pipeline node's batch item becomes one today; a
 * scheduled workflow's execution and a submitted closure become the same
 * thing, so all three share the queues, the warm workers and the stream.
 */
export interface WorkUnit {
  taskId: string;
  jobId: string;
  algorithmName: string;
  nodeName: string;
  pipelineName: string;
  /** -1 when not a batch item. */
  batchIndex: number;
  /** msgpack array of inputs; may hold BlobRef extension values. */
  input: Buffer;
  inputKeys: string[];
  outputKey: string;
  savePaths: string[];
  /** 1-5, 5 first. */
  priority: number;
  kind: 'pipeline' | 'schedule' | 'closure';
  retry: { policy: RetryPolicy; limit: number };
  /** Environment the algorithm sees for this unit only (e.g. WEFT_EXECUTION_ID). */
  env?: Record<string, string>;
  /** Forward what the task writes to stdout/stderr to the listener's onLog. */
  streamLogs?: boolean;
  /** A run longer than this is stopped and fails as "ttl expired"; 0 = no limit. */
  ttlMs?: number;
}

export type Outcome =
  | {
      status: 'succeeded';
      result: Payload;
      meta: Record<string, PathMeta>;
      attempts: number;
      started: Date | undefined;
    }
  | { status: 'failed'; failure: TaskFailure; attempts: number; started: Date | undefined }
  | { status: 'stopped'; attempts: number };

/** Callbacks about one submitted unit. onDone is called exactly once. */
export interface UnitListener {
  onStarted?(): void;
  onProgress?(percent: number, message: string): void;
  onRetry?(failure: TaskFailure, nextAttempt: number): void;
  /** Output of the running task, when the unit asked for streamLogs. */
  onLog?(stream: string, data: Buffer): void;
  onDone(outcome: Outcome): void;
}

export interface DispatcherConfig {
  /** Results larger than this (msgpack bytes) go to blob storage. */
  inlineThreshold: number;
  heartbeatIntervalMs: number;
  /** A worker silent for this long is dead. */
  heartbeatTimeoutMs: number;
  /** An idle worker above minHotWorkers exits after this long. */
  idleTimeoutMs: number;
  /** After stop, a task that has not stopped within this is killed. */
  stopGraceMs: number;
  /** A started worker that has not said ready within this is killed. */
  startTimeoutMs: number;
}

export const DEFAULT_DISPATCHER_CONFIG: DispatcherConfig = {
  inlineThreshold: 64 * 1024,
  heartbeatIntervalMs: 1000,
  heartbeatTimeoutMs: 5000,
  idleTimeoutMs: 60_000,
  stopGraceMs: 5000,
  startTimeoutMs: 60_000,
};

interface Pending {
  unit: WorkUnit;
  listener: UnitListener;
  /** 1 for the first run. */
  attempt: number;
  priority: number;
  seq: number;
  enqueuedAt: number;
  dispatchedAt: number;
  started: Date | undefined;
  stopping: boolean;
  /** Its ttl expired: whatever the worker reports next, the run failed. */
  timedOut: boolean;
}

type WorkerState = 'starting' | 'ready' | 'busy' | 'exiting' | 'dead';

interface Worker {
  id: string;
  alg: string;
  state: WorkerState;
  link: WorkerLink | undefined;
  handle: WorkerHandle | undefined;
  external: boolean;
  /** Exit after the current task: the algorithm changed under it. */
  retire: boolean;
  current: Pending | undefined;
  lastSeen: number;
  createdAt: number;
  idleTimer: Timer | undefined;
  stopTimer: Timer | undefined;
  exitTimer: Timer | undefined;
  ttlTimer: Timer | undefined;
}

interface Pool {
  queue: PriorityQueue<Pending>;
  workers: Set<Worker>;
  /** Workers that died before taking any task, in a row: a broken algorithm. */
  failedStarts: number;
  lastStartError: string;
}

const MAX_FAILED_STARTS = 3;

/** Version of the Workers stream protocol (Hello.protocol_version). */
export const WORKER_PROTOCOL_VERSION = 1;

/**
 * Routes units of work to warm workers. Owns the per-algorithm queues, the
 * worker pools and every worker's stream; knows nothing about pipelines.
 */
export class Dispatcher {
  private readonly pools = new Map<string, Pool>();
  private readonly workers = new Map<string, Worker>();
  private seq = 0;
  /** Units of paused jobs, in the order they would run. */
  private readonly held = new Map<string, Pending[]>();
  /**
   * Handles a job started from a running task's code (the code API); reply
   * sends the answer back to that task's worker, if it is still there.
   */
  onSubmitJob: ((req: SubmitJob, jobId: string, reply: (done: JobDone) => void) => void) | undefined;
  private monitor: Timer | undefined;
  private closing = false;

  constructor(
    private readonly deps: {
      executor: Executor;
      /** The algorithm's current definition, or undefined when it is not registered. */
      algorithm: (name: string) => AlgorithmDef | undefined;
      storageUrl: string;
      /** host:port that spawned sidecars dial. */
      serverAddress: () => string;
      config: DispatcherConfig;
      /** Heartbeat, start, idle, grace and ttl timing. */
      clock: Clock;
      metrics: Metrics;
      log: Logger;
    },
  ) {}

  /**
   * Starts watching workers' liveness (heartbeat and start timeouts). Units
   * may be submitted before; workers are watched only after. Throws when
   * called twice or after shutdown.
   */
  start(): void {
    if (this.closing) throw new Error('Dispatcher.start() after shutdown()');
    if (this.monitor) throw new Error('Dispatcher.start() called twice');
    this.monitor = this.deps.clock.interval(Math.min(1000, this.deps.config.heartbeatTimeoutMs / 2), () =>
      this.checkLiveness(),
    );
  }

  /** Queues a unit; its listener hears how it goes. */
  submit(unit: WorkUnit, listener: UnitListener): void {
    const p: Pending = {
      unit,
      listener,
      attempt: 1,
      priority: unit.priority,
      seq: this.seq++,
      enqueuedAt: performance.now(),
      dispatchedAt: 0,
      started: undefined,
      stopping: false,
      timedOut: false,
    };
    this.enqueue(p);
  }

  /**
   * Stops a job's work: queued units end as stopped at once; running ones get
   * stop and are killed if they have not stopped within the grace period.
   */
  stopJob(jobId: string, reason: string): void {
    for (const p of this.held.get(jobId) ?? []) p.listener.onDone({ status: 'stopped', attempts: p.attempt - 1 });
    this.held.delete(jobId);
    for (const [, pool] of this.pools) {
      for (const p of pool.queue.removeWhere((q) => q.unit.jobId === jobId)) {
        p.listener.onDone({ status: 'stopped', attempts: p.attempt - 1 });
      }
    }
    for (const w of this.workers.values()) {
      const p = w.current;
      if (!p || p.unit.jobId !== jobId || p.stopping) continue;
      p.stopping = true;
      this.send(w, { command: { $case: 'stop', value: { taskId: p.unit.taskId, forceStop: false, reason } } });
      w.stopTimer = this.deps.clock.timer(this.deps.config.stopGraceMs, () =>
        this.workerGone(w, 'did not stop within the grace period'),
      );
    }
  }

  /**
   * Holds a job's work back (pause): its queued units leave the queues, and
   * any unit it submits or retries meanwhile waits too. Running ones go on.
   */
  pauseJob(jobId: string): void {
    const held = this.held.get(jobId) ?? [];
    for (const [alg, pool] of this.pools) {
      held.push(...pool.queue.removeWhere((q) => q.unit.jobId === jobId));
      this.deps.metrics.tasksQueued.set({ algorithm: alg }, pool.queue.size);
    }
    this.held.set(jobId, held);
  }

  /** Puts a paused job's units back where they were in line. */
  resumeJob(jobId: string): void {
    const held = this.held.get(jobId);
    this.held.delete(jobId);
    if (!held) return;
    const algs = new Set<string>();
    for (const p of held) {
      this.pool(p.unit.algorithmName).queue.push(p);
      algs.add(p.unit.algorithmName);
    }
    for (const alg of algs) this.pump(alg);
  }

  /** Queues a unit, unless its job is paused: then it waits with the job. */
  private enqueue(p: Pending): void {
    const held = this.held.get(p.unit.jobId);
    if (held) {
      held.push(p);
      return;
    }
    this.pool(p.unit.algorithmName).queue.push(p);
    this.pump(p.unit.algorithmName);
  }

  /** Starts workers until the algorithm has its minHotWorkers. */
  ensureHot(algorithmName: string): void {
    this.scale(algorithmName);
  }

  /**
   * The algorithm was applied again or deleted: its workers run the old code
   * and the old settings, so idle ones exit now and busy ones after their
   * task; replacements start on demand (or at once, for minHotWorkers).
   */
  algorithmChanged(algorithmName: string): void {
    for (const w of this.pool(algorithmName).workers) {
      if (w.external) continue;
      w.retire = true;
      if (w.state === 'ready') this.exitWorker(w, 'its algorithm changed');
    }
  }

  /** Serves one sidecar's link (the Workers.Connect RPC through the gRPC adapter). */
  attach(link: WorkerLink): void {
    let worker: Worker | undefined;
    link.onEvent((ev: WorkerEvent) => {
      try {
        if (!worker) {
          try {
            worker = this.greet(link, ev);
          } catch (err) {
            // Refuse the stream with a status the sidecar can show, rather than leave it dangling.
            const details = err instanceof Error ? err.message : String(err);
            this.deps.log.warn('worker refused', { reason: details });
            link.refuse(details);
          }
          return;
        }
        this.onEvent(worker, ev);
      } catch (err) {
        this.deps.log.error('bad worker event', { err, worker: worker?.id });
      }
    });
    link.onClose((why) => {
      if (worker) this.workerGone(worker, why);
    });
  }

  /** undefined when the executor can run the algorithm; otherwise why not (for the engines' checks). */
  admits(def: AlgorithmDef): string | undefined {
    return this.deps.executor.admits(def);
  }

  /** Worker counts by algorithm and state, for status and metrics. */
  stats(): Map<string, Record<WorkerState | 'queued', number>> {
    const out = new Map<string, Record<WorkerState | 'queued', number>>();
    for (const [alg, pool] of this.pools) {
      const c = { starting: 0, ready: 0, busy: 0, exiting: 0, dead: 0, queued: pool.queue.size };
      for (const w of pool.workers) c[w.state]++;
      out.set(alg, c);
    }
    return out;
  }

  /** Asks every worker to exit, then kills what is left. */
  async shutdown(graceMs = 3000): Promise<void> {
    this.closing = true;
    this.monitor?.cancel();
    for (const w of this.workers.values()) this.exitWorker(w, 'control plane shutting down');
    const deadline = Date.now() + graceMs;
    while ([...this.workers.values()].some((w) => w.state !== 'dead') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
    }
    for (const w of this.workers.values()) this.workerGone(w, 'control plane shut down');
  }

  private pool(alg: string): Pool {
    let p = this.pools.get(alg);
    if (!p) {
      p = { queue: new PriorityQueue(), workers: new Set(), failedStarts: 0, lastStartError: '' };
      this.pools.set(alg, p);
    }
    return p;
  }

  /** Gives queued work to idle workers, then adjusts the pool size. */
  private pump(alg: string): void {
    if (this.closing) return;
    const pool = this.pool(alg);
    for (const w of pool.workers) {
      if (pool.queue.size === 0) break;
      if (w.state === 'ready') this.assign(w, pool.queue.pop()!);
    }
    this.scale(alg);
    this.deps.metrics.tasksQueued.set({ algorithm: alg }, pool.queue.size);
  }

  private scale(alg: string): void {
    if (this.closing) return;
    const pool = this.pool(alg);
    const def = this.deps.algorithm(alg);
    if (!def) {
      this.failQueued(pool, { type: 'AlgorithmNotFound', message: `algorithm "${alg}" is not registered` });
      return;
    }
    const refused = this.deps.executor.admits(def);
    if (refused) {
      this.failQueued(pool, { type: 'Unschedulable', message: `algorithm "${alg}" ${refused}` });
      return;
    }
    if (!this.deps.executor.fits(def)) {
      const cap = this.deps.executor.capacity();
      this.failQueued(pool, {
        type: 'Unschedulable',
        message: `algorithm "${alg}" requests cpu ${def.cpu} and memory ${def.memBytes} bytes; the machine has cpu ${cap.cpu} and memory ${cap.memBytes} bytes`,
      });
      return;
    }
    if (pool.failedStarts >= MAX_FAILED_STARTS) {
      this.failQueued(pool, {
        type: 'WorkerStartFailed',
        message: `algorithm "${alg}": ${pool.failedStarts} workers in a row died before taking a task; last: ${pool.lastStartError}`,
      });
      pool.failedStarts = 0;
      return;
    }
    const max = def.maxWorkers > 0 ? def.maxWorkers : this.deps.executor.defaultMaxWorkers;
    let live = 0;
    let starting = 0;
    let busy = 0;
    for (const w of pool.workers) {
      if (w.state === 'starting') starting++;
      if (w.state === 'busy') busy++;
      if (w.state !== 'dead' && w.state !== 'exiting' && !w.retire) live++;
    }
    // Starting workers will each take one queued unit when they are ready.
    const wanted = Math.max(
      def.minHotWorkers,
      busy + pool.queue.size,
      live - starting + Math.min(starting, pool.queue.size),
    );
    let toStart = Math.min(max, wanted) - live;
    while (toStart > 0) {
      if (!this.deps.executor.canStart(def)) {
        if (live === 0) this.evictIdleElsewhere(alg);
        break;
      }
      this.startWorker(def);
      toStart--;
      live++;
    }
  }

  private failQueued(pool: Pool, failure: Omit<TaskFailure, 'stack' | 'crash'>): void {
    for (let p = pool.queue.pop(); p; p = pool.queue.pop()) {
      p.listener.onDone({
        status: 'failed',
        failure: { ...failure, stack: '', crash: false },
        attempts: p.attempt - 1,
        started: undefined,
      });
    }
  }

  /** Frees resources held by idle workers of other algorithms so this one can start. */
  private evictIdleElsewhere(alg: string): void {
    for (const w of this.workers.values()) {
      if (w.alg !== alg && w.state === 'ready' && !w.external) {
        this.exitWorker(w, `making room for algorithm "${alg}"`);
        return;
      }
    }
  }

  private startWorker(def: AlgorithmDef): void {
    const id = `${def.name}-${randomBytes(4).toString('hex')}`;
    const now = this.deps.clock.now();
    const w: Worker = {
      id,
      alg: def.name,
      state: 'starting',
      link: undefined,
      handle: undefined,
      external: false,
      retire: false,
      current: undefined,
      lastSeen: now,
      createdAt: now,
      idleTimer: undefined,
      stopTimer: undefined,
      exitTimer: undefined,
      ttlTimer: undefined,
    };
    this.workers.set(id, w);
    this.pool(def.name).workers.add(w);
    this.deps.metrics.workerStarts.inc({ algorithm: def.name });
    this.publishWorkers(def.name);
    const started = (handle: WorkerHandle): void => {
      w.handle = handle;
      handle.onExit((reason) => {
        this.workerGone(w, reason);
        // Only now are its cpu and memory free again: work of any algorithm that
        // was waiting for room (a replacement, or the one it was evicted for) can start.
        if (!this.closing) for (const alg of this.pools.keys()) this.pump(alg);
      });
      // Given up on while the executor was still starting it (shutdown, start timeout).
      if (w.state === 'dead') handle.stop({ force: true });
      else this.deps.log.info('worker starting', { worker: id, algorithm: def.name, log: handle.logLocation });
    };
    let launch;
    try {
      launch = this.deps.executor.start({ workerId: id, algorithm: def, serverAddress: this.deps.serverAddress() });
    } catch (err) {
      // An adapter that throws instead of rejecting: the same failed start.
      launch = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    launch.then(started, (err: unknown) => {
      // A failed start holds no resources (the port's contract). It counts
      // towards the pool's failed starts, whose limit fails the queued units
      // with this reason; an empty pool does not try again at once, so a
      // broken executor is not retried in a tight loop for minHotWorkers.
      const pool = this.pool(def.name);
      this.workerGone(w, `executor could not start it: ${err instanceof Error ? err.message : String(err)}`, {
        pump: pool.queue.size > 0,
      });
    });
  }

  private greet(link: WorkerLink, ev: WorkerEvent): Worker {
    if (ev.event?.$case !== 'hello') throw new Error('the first event on a worker stream must be hello');
    const hello = ev.event.value;
    // 0 means the field was left out; anything else must be a version this control plane speaks.
    if (hello.protocolVersion !== 0 && hello.protocolVersion !== WORKER_PROTOCOL_VERSION) {
      throw new Error(
        `worker speaks protocol ${hello.protocolVersion}; this control plane speaks ${WORKER_PROTOCOL_VERSION}`,
      );
    }
    let w = hello.workerId ? this.workers.get(hello.workerId) : undefined;
    if (!w) {
      // A sidecar nobody started: e.g. one algorithm debugged from an IDE. It
      // joins its algorithm's pool like any other worker.
      const id = hello.workerId || `${hello.algorithmName}-ext-${randomBytes(4).toString('hex')}`;
      w = {
        id,
        alg: hello.algorithmName,
        state: 'starting',
        link: undefined,
        handle: undefined,
        external: true,
        retire: false,
        current: undefined,
        lastSeen: this.deps.clock.now(),
        createdAt: this.deps.clock.now(),
        idleTimer: undefined,
        stopTimer: undefined,
        exitTimer: undefined,
        ttlTimer: undefined,
      };
      this.workers.set(id, w);
      this.pool(w.alg).workers.add(w);
      this.deps.log.info('external worker connected', { worker: id, algorithm: w.alg, host: hello.hostname });
    }
    w.link = link;
    w.lastSeen = this.deps.clock.now();
    this.send(w, {
      command: {
        $case: 'welcome',
        value: {
          workerId: w.id,
          storage: this.deps.storageUrl,
          inlineThreshold: this.deps.config.inlineThreshold,
          heartbeatIntervalMs: this.deps.config.heartbeatIntervalMs,
        },
      },
    });
    return w;
  }

  private onEvent(w: Worker, ev: WorkerEvent): void {
    w.lastSeen = this.deps.clock.now();
    const e = ev.event;
    if (!e || w.state === 'dead') return;
    const p = w.current;
    if (p?.timedOut && (e.$case === 'done' || e.$case === 'stopped' || e.$case === 'error')) {
      // After a ttl expiry the run failed, however the worker ended it.
      if (e.value.taskId !== p.unit.taskId) return;
      this.finish(w, p);
      this.retryOrFail(p, this.timeoutFailure(p));
      if (e.$case === 'error' && e.value.failure?.crash)
        this.workerGone(w, 'algorithm process crashed after its ttl expired');
      else this.becameIdle(w);
      return;
    }
    switch (e.$case) {
      case 'ready':
        if (w.state === 'starting') {
          w.state = 'ready';
          this.publishWorkers(w.alg);
          this.becameIdle(w);
        }
        return;
      case 'heartbeat':
      case 'initialized':
        return;
      case 'started':
        if (p && p.unit.taskId === e.value.taskId) {
          p.started = new Date();
          this.deps.metrics.dispatchLatency.observe({ algorithm: w.alg }, (performance.now() - p.enqueuedAt) / 1000);
          p.listener.onStarted?.();
        }
        return;
      case 'progress':
        if (p && p.unit.taskId === e.value.taskId) p.listener.onProgress?.(e.value.percent, e.value.message);
        return;
      case 'log':
        if (p && p.unit.taskId === e.value.taskId) p.listener.onLog?.(e.value.stream, Buffer.from(e.value.data));
        return;
      case 'done':
        if (p && p.unit.taskId === e.value.taskId) {
          const ref = e.value.result?.kind?.$case === 'ref' ? e.value.result.kind.value : undefined;
          if (ref && ref.key !== p.unit.outputKey) {
            this.finish(w, p);
            this.retryOrFail(p, {
              type: 'ProtocolError',
              message: `worker ${w.id} reported a stored result at "${ref.key}", not at the task's output key "${p.unit.outputKey}"`,
              stack: '',
              crash: false,
            });
            this.becameIdle(w);
            return;
          }
          this.finish(w, p);
          const result = e.value.result ?? { kind: { $case: 'inline', value: Buffer.from([0xc0]) } };
          this.deps.metrics.tasksTotal.inc({ algorithm: w.alg, outcome: p.stopping ? 'stopped' : 'succeeded' });
          p.listener.onDone(
            p.stopping
              ? { status: 'stopped', attempts: p.attempt }
              : { status: 'succeeded', result, meta: e.value.metadata, attempts: p.attempt, started: p.started },
          );
          this.becameIdle(w);
        }
        return;
      case 'stopped':
        if (p && p.unit.taskId === e.value.taskId) {
          this.finish(w, p);
          this.deps.metrics.tasksTotal.inc({ algorithm: w.alg, outcome: 'stopped' });
          p.listener.onDone({ status: 'stopped', attempts: p.attempt });
          this.becameIdle(w);
        }
        return;
      case 'error': {
        const failure = e.value.failure ?? { type: 'Error', message: 'unknown error', stack: '', crash: false };
        if (!e.value.taskId || !p || p.unit.taskId !== e.value.taskId) {
          // Not about a task: the algorithm could not load or its process died
          // while idle. The worker is unusable.
          this.deps.log.warn('worker failed', { worker: w.id, algorithm: w.alg, error: failure.message });
          this.workerGone(w, `${failure.type}: ${failure.message}`);
          return;
        }
        this.finish(w, p);
        if (failure.crash) {
          // The sidecar exits after reporting a crash; the worker is gone.
          this.workerGone(w, `algorithm process crashed: ${failure.message}`);
          this.retryOrFail(p, failure);
          return;
        }
        this.retryOrFail(p, failure);
        this.becameIdle(w);
        return;
      }
      case 'hello':
        return;
      case 'submitJob': {
        const req = e.value;
        if (!p || p.unit.taskId !== req.taskId || !this.onSubmitJob) {
          this.send(w, {
            command: {
              $case: 'jobDone',
              value: {
                requestId: req.requestId,
                jobId: '',
                state: 0,
                results: [],
                error: `task ${req.taskId} is not running on this worker`,
              },
            },
          });
          return;
        }
        this.onSubmitJob(req, p.unit.jobId, (done) => this.send(w, { command: { $case: 'jobDone', value: done } }));
        return;
      }
    }
  }

  /** Detaches the finished unit from its worker. */
  private finish(w: Worker, p: Pending): void {
    w.current = undefined;
    w.stopTimer?.cancel();
    w.ttlTimer?.cancel();
    w.stopTimer = undefined;
    w.ttlTimer = undefined;
    this.deps.metrics.taskDuration.observe({ algorithm: w.alg }, (performance.now() - p.dispatchedAt) / 1000);
    if (w.state === 'busy') w.state = 'ready';
    this.pool(w.alg).failedStarts = 0;
  }

  private retryOrFail(p: Pending, failure: TaskFailure): void {
    // Work lost to our own shutdown is not the task's failure: it stays
    // unrecorded and runs again when the control plane resumes the job.
    if (this.closing) return;
    const { policy, limit } = p.unit.retry;
    // A sidecar that could not move the task's payloads (StorageError) failed
    // as infrastructure, not as the algorithm: it is retried like a crash,
    // though the worker itself stays.
    const infrastructure = failure.crash || failure.type === 'StorageError';
    const retryable = infrastructure
      ? policy === 'OnCrash' || policy === 'Always'
      : policy === 'OnError' || policy === 'Always';
    this.deps.metrics.tasksTotal.inc({
      algorithm: p.unit.algorithmName,
      outcome: failure.crash ? 'crashed' : 'failed',
    });
    if (p.stopping) {
      p.listener.onDone({ status: 'stopped', attempts: p.attempt });
    } else if (retryable && p.attempt <= limit) {
      p.attempt++;
      p.started = undefined;
      p.timedOut = false;
      p.enqueuedAt = performance.now();
      p.listener.onRetry?.(failure, p.attempt);
      this.enqueue(p);
    } else {
      p.listener.onDone({ status: 'failed', failure, attempts: p.attempt, started: p.started });
    }
  }

  private assign(w: Worker, p: Pending): void {
    w.idleTimer?.cancel();
    w.idleTimer = undefined;
    w.state = 'busy';
    w.current = p;
    p.dispatchedAt = performance.now();
    const u = p.unit;
    // initialize and start go out together: the sidecar runs start only after
    // the algorithm's init succeeded, so no round trip is spent waiting here.
    this.send(w, {
      command: {
        $case: 'initialize',
        value: {
          task: {
            taskId: u.taskId,
            jobId: u.jobId,
            nodeName: u.nodeName,
            algorithmName: u.algorithmName,
            pipelineName: u.pipelineName,
            batchIndex: u.batchIndex,
            input: u.input,
            inputKeys: u.inputKeys,
            outputKey: u.outputKey,
            savePaths: u.savePaths,
            attempt: p.attempt,
            priority: u.priority,
            kind: u.kind,
            env: u.env ?? {},
            streamLogs: u.streamLogs ?? false,
          },
        },
      },
    });
    this.send(w, { command: { $case: 'start', value: { taskId: u.taskId } } });
    if (u.ttlMs && u.ttlMs > 0) {
      w.ttlTimer = this.deps.clock.timer(u.ttlMs, () => {
        if (w.current !== p) return;
        p.timedOut = true;
        this.send(w, {
          command: { $case: 'stop', value: { taskId: u.taskId, forceStop: true, reason: 'algorithm ttl expired' } },
        });
        w.stopTimer = this.deps.clock.timer(this.deps.config.stopGraceMs, () =>
          this.workerGone(w, 'did not stop when its ttl expired'),
        );
      });
    }
  }

  /** The failure a timed-out run ends with, whatever the worker reported. */
  private timeoutFailure(p: Pending): TaskFailure {
    return {
      type: 'Timeout',
      message: `algorithm ttl expired: ${p.unit.nodeName}${p.unit.batchIndex >= 0 ? `#${p.unit.batchIndex}` : ''} ran longer than ${(p.unit.ttlMs ?? 0) / 1000} s`,
      stack: '',
      crash: false,
    };
  }

  private becameIdle(w: Worker): void {
    if (w.state !== 'ready') return;
    if (this.closing || w.retire) {
      this.exitWorker(w, this.closing ? 'control plane shutting down' : 'its algorithm changed');
      return;
    }
    const pool = this.pool(w.alg);
    const next = pool.queue.pop();
    if (next) {
      this.assign(w, next);
      this.deps.metrics.tasksQueued.set({ algorithm: w.alg }, pool.queue.size);
      return;
    }
    if (w.external || w.idleTimer) return;
    w.idleTimer = this.deps.clock.timer(this.deps.config.idleTimeoutMs, () => {
      w.idleTimer = undefined;
      if (w.state !== 'ready') return;
      const def = this.deps.algorithm(w.alg);
      let live = 0;
      for (const o of pool.workers) if (o.state !== 'dead' && o.state !== 'exiting') live++;
      if (def && live <= def.minHotWorkers) return;
      this.exitWorker(w, 'idle');
    });
  }

  private exitWorker(w: Worker, reason: string): void {
    if (w.state === 'dead' || w.state === 'exiting') return;
    if (w.current) return;
    w.state = 'exiting';
    w.idleTimer?.cancel();
    this.send(w, { command: { $case: 'exit', value: { exitCode: 0, reason } } });
    w.exitTimer = this.deps.clock.timer(5000, () => this.workerGone(w, 'did not exit in time'));
    this.publishWorkers(w.alg);
  }

  private checkLiveness(): void {
    const now = this.deps.clock.now();
    for (const w of this.workers.values()) {
      if (w.state === 'dead') continue;
      if (w.state === 'starting' && now - w.createdAt > this.deps.config.startTimeoutMs) {
        this.workerGone(w, w.link ? 'its algorithm never connected' : 'never connected');
      } else if (w.link && now - w.lastSeen > this.deps.config.heartbeatTimeoutMs) {
        this.workerGone(w, `no heartbeat for ${now - w.lastSeen} ms`);
      }
    }
  }

  /** Ends a worker for good, whatever the cause; its unit (if any) crashed. */
  private workerGone(w: Worker, reason: string, opts: { pump: boolean } = { pump: true }): void {
    if (w.state === 'dead') return;
    const wasStarting = w.state === 'starting';
    w.state = 'dead';
    for (const t of [w.idleTimer, w.stopTimer, w.exitTimer, w.ttlTimer]) t?.cancel();
    this.workers.delete(w.id);
    const pool = this.pool(w.alg);
    pool.workers.delete(w);
    w.link?.close();
    // Its resources are free only when the handle's onExit fires.
    w.handle?.stop({ force: true });
    this.deps.log.info('worker gone', { worker: w.id, algorithm: w.alg, reason });
    if (wasStarting && !this.closing) {
      pool.failedStarts++;
      pool.lastStartError = reason;
    }
    const p = w.current;
    w.current = undefined;
    if (p?.timedOut) {
      this.retryOrFail(p, this.timeoutFailure(p));
    } else if (p) {
      this.retryOrFail(p, {
        type: 'Crash',
        message: `worker ${w.id} running ${p.unit.nodeName}${p.unit.batchIndex >= 0 ? `#${p.unit.batchIndex}` : ''} (task ${p.unit.taskId}) was lost: ${reason}`,
        stack: '',
        crash: true,
      });
    }
    this.publishWorkers(w.alg);
    if (!this.closing && opts.pump) this.pump(w.alg);
  }

  private send(w: Worker, cmd: WorkerCommand): void {
    if (!w.link || w.state === 'dead') return;
    if (!w.link.send(cmd)) this.deps.log.warn('write to worker failed: its link is gone', { worker: w.id });
  }

  private publishWorkers(alg: string): void {
    const c = { starting: 0, ready: 0, busy: 0, exiting: 0 };
    for (const w of this.pool(alg).workers) if (w.state !== 'dead') c[w.state]++;
    for (const [state, n] of Object.entries(c)) this.deps.metrics.workers.set({ algorithm: alg, state }, n);
  }
}
