/**
 * The scheduler: Styx's workflows, instances, retries, resources and
 * backfills on weft's dispatch core. Natural triggers come from one timer on
 * a heap of due times (idle cost is one pending timeout, however many
 * workflows); each instance runs as a unit of work through the same
 * dispatcher as pipeline tasks, or as a pipeline job.
 *
 * Every decision goes through one serial queue, so the in-memory view and
 * the store never see interleaved updates. Each trigger moves its cursor
 * (the workflow's next slot, a backfill's next index) in the same store
 * transaction that creates the instance: a slot is triggered exactly once,
 * whatever dies when.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { WeftError, Status, decode, encode, failedPrecondition, invalid, notFound, type Logger } from '@weft/common';
import type { Payload, TaskFailure } from '@weft/proto';
import {
  DEFAULT_RETRY_CONFIG,
  backfillSlots,
  isTerminal,
  nextRetry,
  spreadOffsetMs,
  transition,
  type InstanceEvent,
  type InstanceState,
  type RetryConfig,
} from '../domain/schedule.js';
import {
  parseWorkflow,
  retryAllowed,
  substituteParameter,
  type TriggerType,
  type WorkflowSpec,
} from '../domain/workflow.js';
import type { Dispatcher, Outcome, WorkUnit } from '../dispatch/dispatcher.js';
import type { AlgorithmDef } from '../ports/executor.js';
import { PriorityQueue, type Queued } from '../dispatch/queue.js';
import type {
  BackfillRecord,
  ExecutionRecord,
  InstanceFilter,
  InstanceRecord,
  ResourceRecord,
  ScheduleStore,
  WorkflowRecord,
} from '../ports/schedule-store.js';
import type { JobEngine } from './jobs.js';

/** The built-in algorithm that runs a workflow's `command`. */
export const COMMAND_ALGORITHM = 'weft-command';
/** The resource that, when it exists, every instance also needs. */
export const GLOBAL_RESOURCE = 'global';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Per-state timeouts (Styx's standalone defaults: queued and prepare fall under `default`). */
export const DEFAULT_STATE_TIMEOUTS: Readonly<Partial<Record<InstanceState, number>> & { default: number }> = {
  submitted: 10 * MINUTE,
  running: 24 * HOUR,
  terminated: 30 * MINUTE,
  failed: 30 * MINUTE,
  default: 48 * HOUR,
};

export interface SchedulerConfig {
  retry: Partial<RetryConfig>;
  stateTimeoutsMs: Partial<Record<InstanceState, number>> & { default: number };
  /** Cap on a workflow's running_timeout (Styx's max-running-timeout). */
  maxRunningTimeoutMs: number;
  /** Where command executions write their output. */
  logDir: string;
}

export const DEFAULT_SCHEDULER_CONFIG: Omit<SchedulerConfig, 'logDir'> = {
  retry: {},
  stateTimeoutsMs: { ...DEFAULT_STATE_TIMEOUTS },
  maxRunningTimeoutMs: 7 * 24 * HOUR,
};

interface Wf {
  rec: WorkflowRecord;
  spec: WorkflowSpec;
  /** This workflow's fixed start jitter. */
  spread: number;
  /** Bumped on every change, so stale heap entries are skipped. */
  gen: number;
}

/** What runs an instance's current execution. */
interface Running {
  executionId: string;
  /** What the execution runs, as the workflow said when it started (a re-apply may change it meanwhile). */
  runnable?: WorkflowSpec['runnable'];
  /** The pipeline job, for pipeline workflows. */
  jobId?: string;
  resources: string[];
  exec: ExecutionRecord;
}

interface Active {
  rec: InstanceRecord;
  run?: Running;
  timer?: NodeJS.Timeout;
  /** The pump queued an operation on it that has not run yet: do not queue another. */
  pending?: boolean;
}

/** A workflow's next due time in the natural-trigger queue. */
interface HeapEntry extends Queued {
  at: number;
  id: string;
  gen: number;
}

/**
 * A docker_image workflow as the executor sees it: an algorithm with an image
 * and no code, so the executor's admits() decides whether it can run here.
 */
function imageOnly(image: string): AlgorithmDef {
  return {
    name: 'docker_image',
    env: 'nodejs',
    codePath: '',
    codeStage: '',
    entryPoint: '',
    image,
    cpu: 0,
    memBytes: 0,
    gpu: 0,
    minHotWorkers: 0,
    maxWorkers: 0,
    env_vars: {},
  };
}

const key = (workflowId: string, parameter: string): string => `${workflowId}\u0000${parameter}`;
const HOLDING: ReadonlySet<InstanceState> = new Set(['prepare', 'submitting', 'submitted', 'running']);

/** A workflow as the API shows it. */
export interface WorkflowView {
  rec: WorkflowRecord;
  spec: WorkflowSpec;
  nextDue: Date;
  nextParameter: string;
  activeInstances: number;
}

/** A backfill with its progress. */
export interface BackfillView {
  rec: BackfillRecord;
  slots: number;
  triggered: number;
  active: number;
  done: number;
  errored: number;
  slotStates?: { parameter: string; state: InstanceState | undefined; tries: number }[];
}

export class Scheduler {
  private readonly wfs = new Map<string, Wf>();
  /** Earliest due first: the queue serves the highest priority, so an entry's priority is minus its due time. */
  private readonly heap = new PriorityQueue<HeapEntry>();
  private heapSeq = 0;
  private heapTimer: NodeJS.Timeout | undefined;
  private heapTimerAt = Infinity;
  private readonly active = new Map<string, Active>();
  private readonly resources = new Map<string, ResourceRecord>();
  private readonly backfills = new Map<string, { rec: BackfillRecord; slots: Date[] }>();
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  private started = false;
  private readonly retry: RetryConfig;

  constructor(
    private readonly deps: {
      store: ScheduleStore;
      dispatcher: Dispatcher;
      engine: JobEngine;
      /** Whether an algorithm is registered. */
      hasAlgorithm: (name: string) => boolean;
      config: SchedulerConfig;
      log: Logger;
      now?: () => number;
    },
  ) {
    this.retry = { ...DEFAULT_RETRY_CONFIG, ...deps.config.retry };
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  /** Runs fn after every earlier operation: the scheduler's one lock. */
  private serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  // -------------------------------------------------------------------------
  // Start and stop

  /**
   * Loads state after a (re)start: workflows, resources, active instances and
   * backfills. Missed natural slots are triggered per each workflow's
   * catch_up policy; executions cut off by the restart run again.
   */
  start(): Promise<{ workflows: number; instances: number; caughtUp: number }> {
    // A second start would load every instance twice and arm its timers twice.
    if (this.started) return Promise.reject(new Error('Scheduler.start() called twice'));
    if (this.closed) return Promise.reject(new Error('Scheduler.start() after close()'));
    this.started = true;
    return this.serial(async () => {
      const { store, log } = this.deps;
      for (const r of await store.listResources()) this.resources.set(r.id, r);
      for (const rec of await store.listWorkflows()) {
        try {
          const spec = parseWorkflow(rec.document);
          this.wfs.set(rec.id, { rec, spec, spread: spreadOffsetMs(rec.id, spec.spreadMs), gen: 0 });
        } catch (err) {
          log.error('stored workflow no longer valid; not scheduled', { workflow: rec.id, err });
        }
      }
      const instances = await store.listInstances({ active: true });
      for (const rec of instances) {
        const a: Active = { rec };
        this.active.set(key(rec.workflowId, rec.parameter), a);
      }
      for (const b of await store.listBackfills()) {
        if (b.halted || b.allTriggered) continue;
        const wf = this.wfs.get(b.workflowId);
        if (!wf) continue;
        this.backfills.set(b.id, { rec: b, slots: backfillSlots(wf.spec.schedule, b.start, b.end, b) });
      }
      // Executions that were in flight when the process died.
      for (const a of this.active.values()) await this.recoverInstance(a);
      let caughtUp = 0;
      for (const wf of this.wfs.values()) {
        if (wf.rec.enabled) caughtUp += await this.catchUp(wf);
      }
      for (const wf of this.wfs.values()) this.schedule(wf);
      this.pump();
      await this.pumpBackfills();
      log.info('scheduler started', { workflows: this.wfs.size, instances: instances.length, caughtUp });
      return { workflows: this.wfs.size, instances: instances.length, caughtUp };
    });
  }

  /** Stops timers; running executions are left to the dispatcher's shutdown. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.heapTimer) clearTimeout(this.heapTimer);
    for (const a of this.active.values()) if (a.timer) clearTimeout(a.timer);
    await this.chain;
  }

  private async recoverInstance(a: Active): Promise<void> {
    const r = a.rec;
    if (r.state === 'queued') {
      this.armTimers(a);
      return;
    }
    if (r.state === 'terminated' || r.state === 'failed') {
      await this.decide(a, r.lastExitCode, r.message);
      return;
    }
    // prepare .. running: the worker went down with the control plane. A
    // pipeline job survives (the job engine resumed it); reattach to it.
    const execs = await this.deps.store.listExecutions(r.workflowId, r.parameter);
    const exec = execs.find((e) => e.executionId === r.executionId);
    const jobId = exec?.log.startsWith('job:') ? exec.log.slice(4) : undefined;
    if (exec && jobId && r.state === 'running') {
      const wf = this.wfs.get(r.workflowId);
      a.run = { executionId: r.executionId, jobId, resources: wf ? this.resourcesOf(wf) : [], exec };
      this.armTimers(a);
      this.awaitJob(a, a.run);
      return;
    }
    if (exec) {
      exec.ended = new Date(this.now());
      exec.error = 'interrupted: the control plane restarted';
      await this.deps.store.putExecution(exec);
    }
    // Not the workflow's fault: run again at once, at no retry cost.
    await this.setState(a, 'queued', {
      message: 'execution interrupted by a control-plane restart; running it again',
      nextAttempt: new Date(this.now()),
      executionId: '',
    });
    this.armTimers(a);
  }

  // -------------------------------------------------------------------------
  // Natural triggers

  /** Triggers the slots missed while the control plane was down, per catch_up. */
  private async catchUp(wf: Wf): Promise<number> {
    const now = this.now();
    const s = wf.spec.schedule;
    let next = wf.rec.nextSlot;
    if (this.dueOf(wf, next) > now) return 0;
    const missed: Date[] = [];
    while (this.dueOf(wf, next) <= now && missed.length < 100_000) {
      missed.push(next);
      next = s.nextSlot(next);
    }
    const pick = wf.spec.catchUp === 'all' ? missed : wf.spec.catchUp === 'latest' ? missed.slice(-1) : ([] as Date[]);
    let n = 0;
    if (pick.length === 0) {
      wf.rec.nextSlot = next;
      await this.deps.store.updateWorkflow(wf.rec.id, { nextSlot: next });
    }
    for (const slot of pick) {
      // The cursor jumps past skipped slots with the first triggered one.
      const after = slot === pick[pick.length - 1] ? next : s.nextSlot(slot);
      if (await this.triggerNatural(wf, slot, after)) n++;
    }
    if (missed.length > 0) {
      this.deps.log.info('caught up missed slots', {
        workflow: wf.rec.id,
        missed: missed.length,
        triggered: n,
        policy: wf.spec.catchUp,
      });
    }
    return n;
  }

  private dueOf(wf: Wf, slot: Date): number {
    return wf.spec.schedule.dueAt(slot).getTime() + wf.spread;
  }

  /** Puts a workflow's next due time on the heap (when enabled). */
  private schedule(wf: Wf): void {
    wf.gen++;
    if (!wf.rec.enabled || this.closed) return;
    const at = this.dueOf(wf, wf.rec.nextSlot);
    this.heap.push({ at, priority: -at, seq: this.heapSeq++, id: wf.rec.id, gen: wf.gen });
    this.armHeap();
  }

  private armHeap(): void {
    const top = this.heap.peek();
    if (!top || this.closed) return;
    if (top.at >= this.heapTimerAt && this.heapTimer) return;
    if (this.heapTimer) clearTimeout(this.heapTimer);
    this.heapTimerAt = top.at;
    // setTimeout takes at most 2^31-1 ms; far timers just re-arm on firing.
    const delay = Math.min(Math.max(0, top.at - this.now()), 2 ** 31 - 1);
    this.heapTimer = setTimeout(() => {
      this.heapTimer = undefined;
      this.heapTimerAt = Infinity;
      void this.serial(() => this.fireDue()).catch((err: unknown) =>
        this.deps.log.error('natural trigger failed', { err }),
      );
    }, delay);
  }

  private async fireDue(): Promise<void> {
    const now = this.now();
    for (let top = this.heap.peek(); top && top.at <= now; top = this.heap.peek()) {
      this.heap.pop();
      const wf = this.wfs.get(top.id);
      if (!wf || wf.gen !== top.gen || !wf.rec.enabled) continue;
      const slot = wf.rec.nextSlot;
      await this.triggerNatural(wf, slot, wf.spec.schedule.nextSlot(slot));
      this.schedule(wf);
    }
    this.pump();
    this.armHeap();
  }

  private async triggerNatural(wf: Wf, slot: Date, nextSlot: Date): Promise<boolean> {
    wf.rec.nextSlot = nextSlot;
    const inst = this.newInstance(wf, slot, 'natural-trigger', 'natural', {});
    const res = await this.deps.store.trigger(inst, { replaceFinal: false, nextSlot });
    if (res !== 'created') return false;
    this.addActive(inst);
    return true;
  }

  private newInstance(
    wf: Wf,
    slot: Date,
    triggerId: string,
    triggerType: TriggerType,
    env: Record<string, string>,
  ): InstanceRecord {
    const now = new Date(this.now());
    return {
      workflowId: wf.rec.id,
      parameter: wf.spec.schedule.parameter(slot),
      slot,
      state: transition('new', { type: 'triggered' }),
      triggerId,
      triggerType,
      triggerEnv: env,
      tries: 0,
      consecutiveFailures: 0,
      cost: 0,
      lastExitCode: null,
      message: '',
      executionId: '',
      nextAttempt: now,
      stateSince: now,
      created: now,
      updated: now,
    };
  }

  private addActive(rec: InstanceRecord): Active {
    const a: Active = { rec };
    this.active.set(key(rec.workflowId, rec.parameter), a);
    this.armTimers(a);
    return a;
  }

  // -------------------------------------------------------------------------
  // Instance lifecycle

  private resourcesOf(wf: Wf): string[] {
    const ids = [...wf.spec.resources];
    if (this.resources.has(GLOBAL_RESOURCE) && !ids.includes(GLOBAL_RESOURCE)) ids.push(GLOBAL_RESOURCE);
    return ids;
  }

  private usage(): Map<string, number> {
    const used = new Map<string, number>();
    if (this.resources.size === 0) return used;
    for (const a of this.active.values()) {
      if (!a.run || !HOLDING.has(a.rec.state)) continue;
      for (const r of a.run.resources) used.set(r, (used.get(r) ?? 0) + 1);
    }
    return used;
  }

  private pumpScheduled = false;

  /**
   * Starts every queued instance that is due and fits its resources, oldest
   * first. Calls within one turn (a thousand triggers of the same second)
   * coalesce into one pass.
   */
  private pump(): void {
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pumpNow();
    });
  }

  private pumpNow(): void {
    if (this.closed) return;
    const now = this.now();
    const ready = [...this.active.values()]
      .filter((a) => a.rec.state === 'queued' && a.rec.nextAttempt.getTime() <= now)
      .sort(
        (x, y) =>
          x.rec.nextAttempt.getTime() - y.rec.nextAttempt.getTime() ||
          x.rec.created.getTime() - y.rec.created.getTime(),
      );
    if (ready.length === 0) return;
    const used = this.usage();
    const later = (a: Active, op: () => Promise<void>): void => {
      a.pending = true;
      void this.serial(() => {
        a.pending = false;
        return op();
      });
    };
    for (const a of ready) {
      if (a.pending) continue;
      const wf = this.wfs.get(a.rec.workflowId);
      if (!wf) {
        later(a, () => this.halt(a, 'its workflow was deleted'));
        continue;
      }
      const needs = this.resourcesOf(wf);
      const unknown = needs.find((r) => !this.resources.has(r));
      if (unknown) {
        later(a, () => this.runError(a, `unknown resource "${unknown}"`));
        continue;
      }
      const full = needs.filter((r) => (used.get(r) ?? 0) >= this.resources.get(r)!.concurrency);
      if (full.length > 0) {
        const message = `resource limit reached: ${full.join(', ')}`;
        if (a.rec.message !== message) {
          a.rec.state = transition(a.rec.state, { type: 'info', message });
          void this.serial(() => this.patch(a, { message }));
        }
        continue;
      }
      for (const r of needs) used.set(r, (used.get(r) ?? 0) + 1);
      // Claimed now, so the next instance in this loop sees the count.
      const executionId = `weft-run-${randomUUID()}`;
      a.run = {
        executionId,
        resources: needs,
        exec: {
          executionId,
          workflowId: a.rec.workflowId,
          parameter: a.rec.parameter,
          try: a.rec.tries + 1,
          triggerId: a.rec.triggerId,
          started: undefined,
          ended: undefined,
          exitCode: null,
          error: '',
          log: '',
        },
      };
      a.rec.state = transition(a.rec.state, { type: 'dequeued' });
      void this.serial(() => this.launch(a, wf)).catch((err: unknown) =>
        this.deps.log.error('launch failed', { err, workflow: a.rec.workflowId, parameter: a.rec.parameter }),
      );
    }
  }

  private env(wf: Wf, a: Active, executionId: string, tries: number): Record<string, string> {
    const r = a.rec;
    const values: Record<string, string> = {
      WORKFLOW_ID: r.workflowId,
      PARAMETER: r.parameter,
      TRIGGER_ID: r.triggerId,
      TRIGGER_TYPE: r.triggerType,
      EXECUTION_ID: executionId,
      EXECUTION_TRIES: String(tries),
    };
    const out: Record<string, string> = { ...wf.spec.env, ...r.triggerEnv };
    for (const [k, v] of Object.entries(values)) {
      out[`WEFT_${k}`] = v;
      out[`STYX_${k}`] = v;
    }
    // The rest of what Styx gives its containers.
    out['STYX_COMPONENT_ID'] = 'weft';
    out['STYX_COMMIT_SHA'] = wf.spec.commitSha ?? '';
    out['STYX_DOCKER_IMAGE'] = wf.spec.dockerImage ?? '';
    out['STYX_DOCKER_ARGS'] = substituteParameter([...wf.spec.dockerArgs], r.parameter).join(' ');
    out['STYX_LOGGING'] = 'structured';
    return out;
  }

  /** prepare → submitting → submitted: builds the execution and hands it to the dispatcher or the job engine. */
  private async launch(a: Active, wf: Wf): Promise<void> {
    const run = a.run;
    if (!run || a.rec.state !== 'prepare') return;
    const spec = wf.spec;
    const r = a.rec;
    if (spec.runnable === 'image') {
      // The executor says why it cannot run an image; the scheduler has no image launch path yet either.
      const refused =
        this.deps.dispatcher.admits(imageOnly(spec.dockerImage ?? '')) ?? 'cannot run yet: no image launch path';
      await this.halt(
        a,
        `docker_image ${spec.dockerImage ?? ''} ${refused}; give the workflow a command, algorithm or pipeline instead`,
      );
      return;
    }
    if (spec.algorithm && !this.deps.hasAlgorithm(spec.algorithm.name)) {
      await this.halt(a, `algorithm "${spec.algorithm.name}" is not registered`);
      return;
    }
    const tries = r.tries + 1;
    run.runnable = spec.runnable;
    const env = this.env(wf, a, run.executionId, tries);
    const logPath = join(this.deps.config.logDir, r.workflowId, r.parameter, `${run.executionId}.log`);
    run.exec.log = logPath;
    r.state = transition(r.state, { type: 'submit' });
    if (spec.runnable === 'pipeline') {
      let jobId: string;
      try {
        jobId = await this.deps.engine.execStored(
          spec.pipeline!.name,
          substituteParameter({ ...spec.pipeline!.flowInput }, r.parameter),
          { tags: [`workflow:${r.workflowId}`], env },
        );
      } catch (err) {
        await this.runError(a, `cannot start pipeline "${spec.pipeline!.name}": ${(err as Error).message}`);
        return;
      }
      run.jobId = jobId;
      run.exec.log = `job:${jobId}`;
      run.exec.started = new Date(this.now());
      r.state = transition(r.state, { type: 'submitted' });
      r.state = transition(r.state, { type: 'started' });
      await this.persistRun(a, tries);
      this.awaitJob(a, run);
      return;
    }
    const unit: WorkUnit = {
      taskId: run.executionId,
      jobId: run.executionId,
      algorithmName: spec.runnable === 'command' ? COMMAND_ALGORITHM : spec.algorithm!.name,
      nodeName: r.workflowId,
      pipelineName: `workflow:${r.workflowId}`,
      batchIndex: -1,
      input:
        spec.runnable === 'command'
          ? encode([{ argv: substituteParameter([...spec.command!], r.parameter), logPath }])
          : encode(substituteParameter([...spec.algorithm!.input], r.parameter)),
      inputKeys: [],
      outputKey: `executions/${run.executionId}`,
      savePaths: [],
      priority: 3,
      kind: 'schedule',
      // Retries are the scheduler's (Styx's rules), never the dispatcher's.
      retry: { policy: 'Never', limit: 0 },
      env,
    };
    if (spec.runnable === 'algorithm') run.exec.log = `job:${run.executionId}`;
    r.state = transition(r.state, { type: 'submitted' });
    await this.persistRun(a, tries);
    this.deps.dispatcher.submit(unit, {
      onStarted: () => {
        void this.serial(async () => {
          if (a.run !== run || a.rec.state !== 'submitted') return;
          run.exec.started = new Date(this.now());
          await this.setState(a, transition(a.rec.state, { type: 'started' }), {});
          await this.deps.store.putExecution(run.exec);
        });
      },
      onDone: (outcome) => {
        void this.serial(() => this.finished(a, run, outcome)).catch((err: unknown) =>
          this.deps.log.error('recording an execution failed', { err, execution: run.executionId }),
        );
      },
    });
  }

  private async persistRun(a: Active, tries: number): Promise<void> {
    const run = a.run!;
    await this.deps.store.putExecution(run.exec);
    await this.setState(a, a.rec.state, { tries, executionId: run.executionId, message: '' });
  }

  private awaitJob(a: Active, run: Running): void {
    void this.deps.engine.waitForEnd(run.jobId!).then(({ state, error }) =>
      this.serial(async () => {
        if (a.run !== run) return;
        if (state === 'completed') return this.ended(a, run, 0, '');
        if (state === 'stopped') return this.ended(a, run, null, `job ${run.jobId} was stopped`);
        const codes = await this.deps.engine.failureExitCodes(run.jobId!);
        // Permanent failure anywhere outranks missing dependencies.
        const code = codes.includes(50) ? 50 : codes.includes(20) ? 20 : 1;
        return this.ended(a, run, code, error);
      }),
    );
  }

  private async finished(a: Active, run: Running, outcome: Outcome): Promise<void> {
    if (a.run !== run) return; // halted or timed out meanwhile: that execution no longer counts
    if (outcome.status === 'succeeded') {
      if (run.runnable === 'command') {
        const res = decodePayload(outcome.result) as {
          exitCode: number | null;
          signal: string | null;
          started: number;
        };
        if (res.started) run.exec.started = new Date(res.started);
        const why = res.exitCode === null ? `killed by ${res.signal ?? 'a signal'}` : '';
        return this.ended(a, run, res.exitCode, why);
      }
      return this.ended(a, run, 0, '');
    }
    if (outcome.status === 'stopped') return this.ended(a, run, null, 'execution stopped');
    const f: TaskFailure = outcome.failure;
    const text = `${f.type}: ${f.message}`;
    if (f.exitCode !== undefined) return this.ended(a, run, f.exitCode, text);
    return this.runError(a, text);
  }

  /** The execution ended with an exit code (null: none, e.g. killed): terminate, then decide. */
  private async ended(a: Active, run: Running, exitCode: number | null, error: string): Promise<void> {
    run.exec.ended = new Date(this.now());
    run.exec.exitCode = exitCode;
    run.exec.error = error;
    run.exec.started ??= run.exec.ended;
    await this.deps.store.putExecution(run.exec);
    a.run = undefined;
    if (exitCode === null) {
      await this.runError(a, error || 'the execution ended without an exit code');
      return;
    }
    if (a.rec.state === 'submitted') a.rec.state = transition(a.rec.state, { type: 'started' });
    a.rec.state = transition(a.rec.state, { type: 'terminated', exitCode });
    a.rec.lastExitCode = exitCode;
    await this.decide(a, exitCode, error);
  }

  private async runError(a: Active, message: string): Promise<void> {
    if (a.run) {
      const run = a.run;
      a.run = undefined;
      if (!run.exec.ended) {
        run.exec.ended = new Date(this.now());
        run.exec.error = message;
        await this.deps.store.putExecution(run.exec);
      }
    }
    if (isTerminal(a.rec.state)) return;
    a.rec.state = a.rec.state === 'failed' ? 'failed' : transition(a.rec.state, { type: 'runError', message });
    a.rec.lastExitCode = null;
    await this.decide(a, null, message);
  }

  /** Styx's TerminationHandler: done, retry later, or stop (→ error). */
  private async decide(a: Active, exitCode: number | null, why: string): Promise<void> {
    const r = a.rec;
    const wf = this.wfs.get(r.workflowId);
    if (exitCode === 0) {
      if (r.state === 'failed') r.state = 'terminated';
      await this.setState(a, transition(r.state, { type: 'success' }), { lastExitCode: 0, message: '' });
      return this.finishedInstance(a);
    }
    const d = nextRetry(
      { exitCode, tries: r.tries, consecutiveFailures: r.consecutiveFailures, cost: r.cost },
      this.retry,
    );
    const what = exitCode === null ? why : `exit code ${exitCode}${why ? ` (${why})` : ''}`;
    if (d.action === 'retry') {
      const allowed =
        !wf ||
        retryAllowed(wf.spec, {
          exitCode,
          tries: r.tries,
          consecutiveFailures: d.consecutiveFailures,
          triggerType: r.triggerType,
        });
      if (allowed) {
        await this.setState(a, transition(r.state, { type: 'retryAfter', delayMs: d.delayMs }), {
          cost: d.cost,
          consecutiveFailures: d.consecutiveFailures,
          lastExitCode: exitCode,
          nextAttempt: new Date(this.now() + d.delayMs),
          message: `${what}; retry ${r.tries + 1} in ${Math.round(d.delayMs / 1000)} s`,
        });
        this.armTimers(a);
        return;
      }
      await this.setState(a, transition(r.state, { type: 'stop' }), {
        lastExitCode: exitCode,
        message: `${what}; retry_condition "${wf.spec.retryCondition ?? ''}" is false: not retried`,
      });
      return this.finishedInstance(a);
    }
    await this.setState(a, transition(r.state, { type: 'stop' }), {
      lastExitCode: exitCode,
      message: d.action === 'fail' ? `${what}: ${d.reason}` : what,
    });
    return this.finishedInstance(a);
  }

  private async halt(a: Active, message: string): Promise<void> {
    if (isTerminal(a.rec.state)) return;
    const run = a.run;
    a.run = undefined;
    if (run) {
      if (run.jobId) {
        await this.deps.engine.stop(run.jobId, `instance halted: ${message}`).catch(() => undefined);
      } else {
        this.deps.dispatcher.stopJob(run.executionId, `instance halted: ${message}`);
      }
      if (!run.exec.ended) {
        run.exec.ended = new Date(this.now());
        run.exec.error = `halted: ${message}`;
        await this.deps.store.putExecution(run.exec);
      }
    }
    await this.setState(a, transition(a.rec.state, { type: 'halt' }), { message: `halted: ${message}` });
    await this.finishedInstance(a);
  }

  private async timeout(a: Active, state: InstanceState, ms: number): Promise<void> {
    if (a.rec.state !== state || isTerminal(state)) return;
    const message = `timed out after ${Math.round(ms / 1000)} s in state ${state}`;
    const run = a.run;
    if (run) {
      a.run = undefined;
      if (run.jobId) await this.deps.engine.stop(run.jobId, message).catch(() => undefined);
      else this.deps.dispatcher.stopJob(run.executionId, message);
      run.exec.ended = new Date(this.now());
      run.exec.error = message;
      await this.deps.store.putExecution(run.exec);
    }
    a.rec.state = transition(a.rec.state, { type: 'timeout' });
    await this.decide(a, null, message);
  }

  private async finishedInstance(a: Active): Promise<void> {
    if (a.timer) clearTimeout(a.timer);
    this.active.delete(key(a.rec.workflowId, a.rec.parameter));
    this.pump();
    if (a.rec.triggerType === 'backfill') await this.pumpBackfills();
  }

  private async setState(
    a: Active,
    state: InstanceState,
    patch: Partial<Omit<InstanceRecord, 'workflowId' | 'parameter' | 'created' | 'state'>>,
  ): Promise<void> {
    const changed = state !== a.rec.state || patch.nextAttempt !== undefined;
    const now = new Date(this.now());
    Object.assign(a.rec, patch, { state, updated: now });
    if (changed) a.rec.stateSince = now;
    await this.deps.store.updateInstance(a.rec.workflowId, a.rec.parameter, {
      ...patch,
      state,
      updated: now,
      stateSince: a.rec.stateSince,
    });
    if (changed && !isTerminal(state)) this.armTimers(a);
  }

  private async patch(a: Active, patch: Partial<InstanceRecord>): Promise<void> {
    Object.assign(a.rec, patch);
    await this.deps.store.updateInstance(a.rec.workflowId, a.rec.parameter, patch);
  }

  /** One timer per instance: its retry delay when queued, else its state's timeout. */
  private armTimers(a: Active): void {
    if (a.timer) clearTimeout(a.timer);
    a.timer = undefined;
    if (this.closed || isTerminal(a.rec.state)) return;
    const now = this.now();
    const state = a.rec.state;
    const ttl = this.ttlOf(a);
    const timeoutAt = a.rec.stateSince.getTime() + ttl;
    const retryAt = state === 'queued' ? a.rec.nextAttempt.getTime() : Infinity;
    if (retryAt <= now) this.pump();
    const at = Math.min(timeoutAt, retryAt > now ? retryAt : Infinity);
    const since = a.rec.stateSince.getTime();
    a.timer = setTimeout(
      () => {
        a.timer = undefined;
        if (this.now() >= since + ttl && a.rec.state === state && a.rec.stateSince.getTime() === since) {
          void this.serial(() => this.timeout(a, state, ttl));
        } else {
          this.pump();
          this.armTimers(a);
        }
      },
      Math.min(Math.max(0, at - now), 2 ** 31 - 1),
    );
    a.timer.unref();
  }

  private ttlOf(a: Active): number {
    const c = this.deps.config;
    if (a.rec.state === 'running') {
      const spec = this.wfs.get(a.rec.workflowId)?.spec;
      if (spec?.runningTimeoutMs !== undefined) return Math.min(spec.runningTimeoutMs, c.maxRunningTimeoutMs);
    }
    return c.stateTimeoutsMs[a.rec.state] ?? c.stateTimeoutsMs.default;
  }

  // -------------------------------------------------------------------------
  // Backfills

  private async pumpBackfills(): Promise<void> {
    if (this.closed) return;
    for (const [id, b] of this.backfills) {
      const rec = b.rec;
      const wf = this.wfs.get(rec.workflowId);
      if (rec.halted || rec.allTriggered || !wf) {
        this.backfills.delete(id);
        continue;
      }
      let running = 0;
      for (const a of this.active.values()) if (a.rec.triggerId === id) running++;
      while (running < rec.concurrency && rec.nextIndex < b.slots.length) {
        const slot = b.slots[rec.nextIndex]!;
        rec.nextIndex++;
        rec.allTriggered = rec.nextIndex >= b.slots.length;
        const inst = this.newInstance(wf, slot, id, 'backfill', rec.env);
        const res = await this.deps.store.trigger(inst, {
          replaceFinal: true,
          backfill: { id, nextIndex: rec.nextIndex, allTriggered: rec.allTriggered },
        });
        // A slot made active since the backfill was created is skipped, as Styx does.
        if (res === 'created') {
          this.addActive(inst);
          running++;
        }
      }
      if (rec.allTriggered) this.backfills.delete(id);
    }
    this.pump();
  }

  // -------------------------------------------------------------------------
  // API: workflows

  /** Creates or replaces a workflow from its document. */
  apply(document: Record<string, unknown>): Promise<WorkflowView> {
    return this.serial(async () => {
      const spec = parseWorkflow(document, { knownResource: (r) => this.resources.has(r) });
      const now = new Date(this.now());
      const old = this.wfs.get(spec.id);
      const explicit = typeof document['enabled'] === 'boolean';
      const enabled = explicit || !old ? spec.enabled : old.rec.enabled;
      const sameTimes =
        old &&
        old.spec.schedule.cron === spec.schedule.cron &&
        old.spec.schedule.offset === spec.schedule.offset &&
        old.spec.schedule.timezone === spec.schedule.timezone;
      const nextSlot =
        old && sameTimes && (old.rec.enabled || !enabled) ? old.rec.nextSlot : spec.schedule.firstDueAfter(now);
      const rec: WorkflowRecord = {
        id: spec.id,
        document,
        enabled,
        nextSlot,
        created: old?.rec.created ?? now,
        modified: now,
      };
      await this.deps.store.putWorkflow(rec);
      const wf: Wf = { rec, spec, spread: spreadOffsetMs(spec.id, spec.spreadMs), gen: old?.gen ?? 0 };
      this.wfs.set(spec.id, wf);
      this.schedule(wf);
      this.deps.log.info(old ? 'workflow updated' : 'workflow created', { workflow: spec.id, enabled });
      return this.view(wf);
    });
  }

  private wf(id: string): Wf {
    const wf = this.wfs.get(id);
    if (!wf) throw notFound(`workflow "${id}" not found`);
    return wf;
  }

  private view(wf: Wf): WorkflowView {
    let activeInstances = 0;
    for (const a of this.active.values()) if (a.rec.workflowId === wf.rec.id) activeInstances++;
    return {
      rec: wf.rec,
      spec: wf.spec,
      nextDue: new Date(this.dueOf(wf, wf.rec.nextSlot)),
      nextParameter: wf.spec.schedule.parameter(wf.rec.nextSlot),
      activeInstances,
    };
  }

  getWorkflow(id: string): Promise<WorkflowView> {
    return this.serial(() => this.view(this.wf(id)));
  }

  listWorkflows(): Promise<WorkflowView[]> {
    return this.serial(() =>
      [...this.wfs.values()].sort((a, b) => (a.rec.id < b.rec.id ? -1 : 1)).map((w) => this.view(w)),
    );
  }

  deleteWorkflow(id: string): Promise<WorkflowView> {
    return this.serial(async () => {
      const wf = this.wf(id);
      const view = this.view(wf);
      this.wfs.delete(id);
      wf.gen++;
      for (const a of [...this.active.values()]) {
        if (a.rec.workflowId === id) await this.halt(a, 'its workflow was deleted');
      }
      await this.deps.store.deleteWorkflow(id);
      this.deps.log.info('workflow deleted', { workflow: id });
      return view;
    });
  }

  /** Enabling skips the slots passed while disabled: triggering resumes from now. */
  setEnabled(id: string, enabled: boolean): Promise<WorkflowView> {
    return this.serial(async () => {
      const wf = this.wf(id);
      if (wf.rec.enabled !== enabled) {
        wf.rec.enabled = enabled;
        if (enabled) wf.rec.nextSlot = wf.spec.schedule.firstDueAfter(new Date(this.now()));
        await this.deps.store.updateWorkflow(id, { enabled, nextSlot: wf.rec.nextSlot });
        this.schedule(wf);
        this.deps.log.info(enabled ? 'workflow enabled' : 'workflow disabled', { workflow: id });
      }
      return this.view(wf);
    });
  }

  /** An ad-hoc run of one parameter (a finished instance runs again). */
  trigger(
    id: string,
    parameter: string,
    opts: { env?: Record<string, string>; allowFuture?: boolean } = {},
  ): Promise<InstanceRecord> {
    return this.serial(async () => {
      const wf = this.wf(id);
      if (!parameter) throw invalid('parameter', 'is required');
      const slot = wf.spec.schedule.slotOfParameter(parameter);
      if (!opts.allowFuture && slot.getTime() > this.now()) {
        throw invalid('parameter', `'${parameter}' is in the future (allow it with allow_future / --allow-future)`);
      }
      const triggerId = `adhoc-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
      const inst = this.newInstance(wf, slot, triggerId, 'adhoc', opts.env ?? {});
      const res = await this.deps.store.trigger(inst, { replaceFinal: true });
      if (res === 'active') {
        throw failedPrecondition(`instance ${id} ${parameter} is already active; halt it first or wait`);
      }
      this.addActive(inst);
      // As triggered: the pump below may move it on at once.
      const snapshot = { ...inst };
      this.pump();
      return snapshot;
    });
  }

  // -------------------------------------------------------------------------
  // API: instances

  listInstances(filter: InstanceFilter): Promise<InstanceRecord[]> {
    return this.deps.store.listInstances({ ...filter, limit: filter.limit || 1000 });
  }

  async getInstance(
    workflowId: string,
    parameter: string,
  ): Promise<{ rec: InstanceRecord; executions: ExecutionRecord[] }> {
    const rec = await this.deps.store.getInstance(workflowId, parameter);
    if (!rec) throw notFound(`instance ${workflowId} ${parameter} not found`);
    return { rec, executions: await this.deps.store.listExecutions(workflowId, parameter) };
  }

  private activeOf(workflowId: string, parameter: string): Active | undefined {
    return this.active.get(key(workflowId, parameter));
  }

  haltInstance(workflowId: string, parameter: string): Promise<InstanceRecord> {
    return this.serial(async () => {
      const a = this.activeOf(workflowId, parameter);
      if (!a) {
        const rec = await this.deps.store.getInstance(workflowId, parameter);
        if (!rec) throw notFound(`instance ${workflowId} ${parameter} not found`);
        throw failedPrecondition(`instance ${workflowId} ${parameter} is ${rec.state}, not active`);
      }
      await this.halt(a, 'by request');
      return a.rec;
    });
  }

  /** Styx's retry: valid for queued, terminated and failed instances. */
  retryInstance(workflowId: string, parameter: string, delayMs = 0): Promise<InstanceRecord> {
    return this.serial(async () => {
      const a = this.activeOf(workflowId, parameter);
      const state = a?.rec.state ?? (await this.deps.store.getInstance(workflowId, parameter))?.state;
      if (!state) throw notFound(`instance ${workflowId} ${parameter} not found`);
      if (!a || !['queued', 'terminated', 'failed'].includes(state)) {
        const hint = isTerminal(state) ? `; run it again with: weft workflow trigger ${workflowId} ${parameter}` : '';
        throw failedPrecondition(
          `instance ${workflowId} ${parameter} is ${state}; only queued, terminated or failed instances can be retried${hint}`,
        );
      }
      await this.setState(a, transition(a.rec.state, { type: 'retryAfter', delayMs }), {
        nextAttempt: new Date(this.now() + delayMs),
        message: delayMs > 0 ? `retry requested in ${Math.round(delayMs / 1000)} s` : 'retry requested',
      });
      this.armTimers(a);
      this.pump();
      return a.rec;
    });
  }

  // -------------------------------------------------------------------------
  // API: backfills

  createBackfill(req: {
    workflowId: string;
    start: Date;
    end: Date;
    concurrency: number;
    reverse: boolean;
    description: string;
    allowFuture: boolean;
    env: Record<string, string>;
  }): Promise<BackfillView> {
    return this.serial(async () => {
      if (!req.workflowId) throw invalid('workflow_id', 'is required');
      const wf = this.wf(req.workflowId);
      if (!Number.isInteger(req.concurrency) || req.concurrency < 1) {
        throw invalid('concurrency', `must be a positive integer, got ${req.concurrency}`);
      }
      const slots = backfillSlots(wf.spec.schedule, req.start, req.end, { reverse: req.reverse });
      if (!req.allowFuture && req.end.getTime() > this.now()) {
        throw invalid('end', `${req.end.toISOString()} is in the future (allow it with allow_future / --allow-future)`);
      }
      const busy = slots.map((s) => wf.spec.schedule.parameter(s)).filter((p) => this.active.has(key(wf.rec.id, p)));
      if (busy.length > 0) {
        throw new WeftError(
          Status.FAILED_PRECONDITION,
          `${busy.length} of the backfill's slots already have active instances: ${busy.slice(0, 5).join(', ')}${busy.length > 5 ? ', …' : ''}`,
        );
      }
      const rec: BackfillRecord = {
        id: `backfill-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`,
        workflowId: wf.rec.id,
        start: req.start,
        end: req.end,
        concurrency: req.concurrency,
        reverse: req.reverse,
        description: req.description,
        halted: false,
        allTriggered: false,
        nextIndex: 0,
        env: req.env,
        created: new Date(this.now()),
      };
      await this.deps.store.putBackfill(rec);
      this.backfills.set(rec.id, { rec, slots });
      this.deps.log.info('backfill created', { backfill: rec.id, workflow: rec.workflowId, slots: slots.length });
      await this.pumpBackfills();
      return this.backfillView(rec, false);
    });
  }

  private async backfillView(rec: BackfillRecord, withSlots: boolean): Promise<BackfillView> {
    const wf = this.wfs.get(rec.workflowId);
    const mine = await this.deps.store.listInstances({ workflowId: rec.workflowId, triggerId: rec.id });
    const byParam = new Map(mine.map((i) => [i.parameter, i]));
    const view: BackfillView = {
      rec,
      slots: 0,
      triggered: rec.nextIndex,
      active: mine.filter((i) => !isTerminal(i.state)).length,
      done: mine.filter((i) => i.state === 'done').length,
      errored: mine.filter((i) => i.state === 'error').length,
    };
    if (wf) {
      const slots = backfillSlots(wf.spec.schedule, rec.start, rec.end, rec);
      view.slots = slots.length;
      if (withSlots) {
        view.slotStates = slots.map((s) => {
          const p = wf.spec.schedule.parameter(s);
          const i = byParam.get(p);
          return { parameter: p, state: i?.state, tries: i?.tries ?? 0 };
        });
      }
    }
    return view;
  }

  private async backfill(id: string): Promise<BackfillRecord> {
    const live = this.backfills.get(id)?.rec;
    if (live) return live;
    const rec = await this.deps.store.getBackfill(id);
    if (!rec) throw notFound(`backfill "${id}" not found`);
    return rec;
  }

  listBackfills(filter: { workflowId?: string; showAll?: boolean }): Promise<BackfillView[]> {
    return this.serial(async () => {
      const out: BackfillView[] = [];
      for (const stored of await this.deps.store.listBackfills()) {
        const rec = this.backfills.get(stored.id)?.rec ?? stored;
        if (filter.workflowId && rec.workflowId !== filter.workflowId) continue;
        const view = await this.backfillView(rec, false);
        const finished = rec.halted || (rec.allTriggered && view.active === 0);
        if (finished && !filter.showAll) continue;
        out.push(view);
      }
      return out;
    });
  }

  getBackfill(id: string): Promise<BackfillView> {
    return this.serial(async () => this.backfillView(await this.backfill(id), true));
  }

  editBackfill(id: string, patch: { concurrency?: number; description?: string }): Promise<BackfillView> {
    return this.serial(async () => {
      const rec = await this.backfill(id);
      if (patch.concurrency !== undefined) {
        if (!Number.isInteger(patch.concurrency) || patch.concurrency < 1) {
          throw invalid('concurrency', `must be a positive integer, got ${patch.concurrency}`);
        }
        rec.concurrency = patch.concurrency;
      }
      if (patch.description !== undefined) rec.description = patch.description;
      await this.deps.store.putBackfill(rec);
      await this.pumpBackfills();
      return this.backfillView(rec, false);
    });
  }

  /** Stops triggering; unless graceful, halts the backfill's active instances too. */
  haltBackfill(id: string, graceful: boolean): Promise<BackfillView> {
    return this.serial(async () => {
      const rec = await this.backfill(id);
      rec.halted = true;
      await this.deps.store.putBackfill(rec);
      this.backfills.delete(id);
      if (!graceful) {
        for (const a of [...this.active.values()]) {
          if (a.rec.triggerId === id) await this.halt(a, `backfill ${id} halted`);
        }
      }
      this.deps.log.info('backfill halted', { backfill: id, graceful });
      return this.backfillView(rec, false);
    });
  }

  // -------------------------------------------------------------------------
  // API: resources

  private usedOf(id: string): number {
    return this.usage().get(id) ?? 0;
  }

  putResource(r: ResourceRecord, mode: 'create' | 'edit'): Promise<ResourceRecord & { used: number }> {
    return this.serial(async () => {
      if (!r.id) throw invalid('id', 'is required');
      if (!/^[A-Za-z0-9][-_.A-Za-z0-9]*$/.test(r.id) || r.id.length > 256) {
        throw invalid('id', `"${r.id}" must be letters, digits, '-', '_' or '.'`);
      }
      if (!Number.isInteger(r.concurrency) || r.concurrency < 1) {
        throw invalid('concurrency', `must be a positive integer, got ${r.concurrency}`);
      }
      const exists = this.resources.has(r.id);
      if (mode === 'create' && exists) throw new WeftError(Status.ALREADY_EXISTS, `resource "${r.id}" already exists`);
      if (mode === 'edit' && !exists) throw notFound(`resource "${r.id}" not found`);
      await this.deps.store.putResource(r);
      this.resources.set(r.id, { ...r });
      this.pump();
      return { ...r, used: this.usedOf(r.id) };
    });
  }

  listResources(): Promise<(ResourceRecord & { used: number })[]> {
    return this.serial(() =>
      [...this.resources.values()]
        .sort((a, b) => (a.id < b.id ? -1 : 1))
        .map((r) => ({ ...r, used: this.usedOf(r.id) })),
    );
  }

  getResource(id: string): Promise<ResourceRecord & { used: number }> {
    return this.serial(() => {
      const r = this.resources.get(id);
      if (!r) throw notFound(`resource "${id}" not found`);
      return { ...r, used: this.usedOf(id) };
    });
  }

  deleteResource(id: string): Promise<ResourceRecord & { used: number }> {
    return this.serial(async () => {
      const r = this.resources.get(id);
      if (!r) throw notFound(`resource "${id}" not found`);
      const users = [...this.wfs.values()].filter((w) => w.spec.resources.includes(id)).map((w) => w.rec.id);
      if (users.length > 0) {
        throw failedPrecondition(`resource "${id}" is used by workflows: ${users.slice(0, 5).join(', ')}`);
      }
      await this.deps.store.deleteResource(id);
      this.resources.delete(id);
      this.pump();
      return { ...r, used: 0 };
    });
  }
}

function decodePayload(p: Payload): unknown {
  if (p.kind?.$case === 'inline') return decode(p.kind.value);
  // Command results are a few dozen bytes; they never leave the stream.
  throw new Error('unexpected stored result for a command execution');
}

/** Instance events, re-exported for handlers that show the state machine. */
export type { InstanceEvent };
