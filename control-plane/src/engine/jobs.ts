import { randomBytes } from 'node:crypto';
import {
  BlobRef,
  WeftError,
  Status,
  decode,
  encode,
  failedPrecondition,
  notFound,
  type BlobStore,
  type Logger,
} from '@weft/common';
import type { JobStatus, LeafResult, Payload, TaskError, TaskFailure } from '@weft/proto';
import { JobState as PbJobState, NodeState as PbNodeState, NodeStatus } from '@weft/proto';
import type { Dispatcher, Outcome } from '../dispatch/dispatcher.js';
import {
  buildTaskInputs,
  parsePipeline,
  type Descriptor,
  type NodeOutput,
  type OutputItem,
  type ParsedNode,
  type ParsedPipeline,
} from '../domain/pipeline.js';
import type { Metrics } from '../server/metrics.js';
import { FINAL_JOB_STATES, type JobRecord, type JobState, type StateStore, type TaskRecord } from '../store/port.js';
import type { AlgorithmRegistry } from './algorithms.js';

/** HKube's defaults: retry on crash, three times. */
const DEFAULT_RETRY = { policy: 'OnCrash', limit: 3 } as const;
const DEFAULT_PRIORITY = 3;
/** Watchers get node counts at most this often; state changes go out at once. */
const NODE_EVENT_INTERVAL_MS = 100;

type NodeState = 'pending' | 'active' | 'succeeded' | 'failed' | 'skipped' | 'stopped';

interface NodeRun {
  parsed: ParsedNode;
  state: NodeState;
  batch: boolean;
  /** Set once the node's inputs are known. */
  items: (OutputItem | undefined)[] | undefined;
  total: number;
  queued: number;
  active: number;
  succeeded: number;
  failed: number;
  errors: TaskError[];
}

/** What a watcher receives. */
export type JobUpdate =
  | { type: 'status'; status: JobStatus }
  | { type: 'node'; node: NodeStatus }
  | { type: 'progress'; nodeName: string; taskId: string; batchIndex: number; percent: number; message: string };

type Watcher = (u: JobUpdate) => void;

const STATE_TO_PB: Record<JobState, PbJobState> = {
  pending: PbJobState.JOB_STATE_PENDING,
  active: PbJobState.JOB_STATE_ACTIVE,
  completed: PbJobState.JOB_STATE_COMPLETED,
  failed: PbJobState.JOB_STATE_FAILED,
  stopped: PbJobState.JOB_STATE_STOPPED,
};

const NODE_TO_PB: Record<NodeState, PbNodeState> = {
  pending: PbNodeState.NODE_STATE_PENDING,
  active: PbNodeState.NODE_STATE_ACTIVE,
  succeeded: PbNodeState.NODE_STATE_SUCCEEDED,
  failed: PbNodeState.NODE_STATE_FAILED,
  skipped: PbNodeState.NODE_STATE_SKIPPED,
  stopped: PbNodeState.NODE_STATE_STOPPED,
};

function slug(name: string): string {
  return (
    name
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 40) || 'job'
  );
}

/** Collects the storage keys of every BlobRef inside a task input. */
function blobKeys(value: unknown, out: Set<string>): void {
  if (value instanceof BlobRef) out.add(value.key);
  else if (Array.isArray(value)) for (const v of value) blobKeys(v, out);
  else if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    for (const v of Object.values(value)) blobKeys(v, out);
  }
}

function itemFromRecord(t: TaskRecord): OutputItem {
  if (t.resultKey) return { kind: 'blob', key: t.resultKey, meta: t.meta };
  return { kind: 'inline', value: t.resultInline ? decode(t.resultInline) : null };
}

function describeFailure(node: string, batchIndex: number, taskId: string, f: TaskFailure, attempts: number): string {
  const where = batchIndex >= 0 ? `node "${node}" batch item ${batchIndex}` : `node "${node}"`;
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  return `${where} (task ${taskId}) failed${tries}: ${f.type}: ${f.message}`;
}

/** One job being run: its graph state in memory, its progress in the store. */
class JobRun {
  readonly nodes = new Map<string, NodeRun>();
  readonly watchers = new Set<Watcher>();
  private dirtyNodes = new Set<string>();
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly record: JobRecord,
    readonly parsed: ParsedPipeline,
    readonly flowInput: Record<string, unknown>,
    /** Outcomes already in the store (after a restart), by "node#index". */
    readonly recorded: Map<string, TaskRecord>,
  ) {
    for (const name of parsed.order) {
      const p = parsed.byName.get(name)!;
      this.nodes.set(name, {
        parsed: p,
        state: 'pending',
        batch: false,
        items: undefined,
        total: 0,
        queued: 0,
        active: 0,
        succeeded: 0,
        failed: 0,
        errors: [],
      });
    }
  }

  get final(): boolean {
    return FINAL_JOB_STATES.has(this.record.state);
  }

  nodeStatus(n: NodeRun): NodeStatus {
    return {
      nodeName: n.parsed.nodeName,
      algorithmName: n.parsed.algorithmName,
      state: NODE_TO_PB[n.state],
      total: n.total,
      pending: n.queued,
      active: n.active,
      succeeded: n.succeeded,
      failed: n.failed,
      batch: n.batch,
      errors: n.errors,
    };
  }

  status(): JobStatus {
    let known = 0;
    let finished = 0;
    for (const n of this.nodes.values()) {
      // A node whose inputs are not known yet counts as one task to come.
      const total = n.items ? n.total : 1;
      known += total;
      finished += n.state === 'skipped' ? total : n.succeeded + n.failed;
    }
    const r = this.record;
    return {
      jobId: r.jobId,
      pipelineName: r.pipelineName,
      state: STATE_TO_PB[r.state],
      progress: r.state === 'completed' ? 100 : known === 0 ? 0 : Math.round((finished / known) * 10000) / 100,
      nodes: [...this.nodes.values()].map((n) => this.nodeStatus(n)),
      error: r.error,
      priority: r.priority,
      created: r.created,
      started: r.started,
      ended: r.ended,
      tags: r.tags,
    };
  }

  emit(u: JobUpdate): void {
    for (const w of this.watchers) w(u);
  }

  /** Node counts are coalesced: a 10,000-item batch must not mean 10,000 events per watcher. */
  nodeChanged(name: string): void {
    if (this.watchers.size === 0) return;
    this.dirtyNodes.add(name);
    this.flushTimer ??= setTimeout(() => this.flushNodes(), NODE_EVENT_INTERVAL_MS);
  }

  flushNodes(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    for (const name of this.dirtyNodes) {
      const n = this.nodes.get(name);
      if (n) this.emit({ type: 'node', node: this.nodeStatus(n) });
    }
    this.dirtyNodes.clear();
  }

  statusChanged(): void {
    this.flushNodes();
    this.emit({ type: 'status', status: this.status() });
  }
}

export interface EngineConfig {
  /** Stored results up to this size are inlined into GetResult answers. */
  resultInlineLimit: number;
}

/**
 * The pipeline engine: turns descriptors into jobs, jobs into units of work
 * for the dispatcher, and outcomes into progress, results and final states.
 */
export class JobEngine {
  private readonly runs = new Map<string, JobRun>();

  constructor(
    private readonly deps: {
      store: StateStore;
      dispatcher: Dispatcher;
      blobs: BlobStore;
      algorithms: AlgorithmRegistry;
      metrics: Metrics;
      log: Logger;
      config: EngineConfig;
    },
  ) {}

  /** Validates a descriptor without running it (INVALID_ARGUMENT naming node and input path). */
  validate(d: Descriptor): ParsedPipeline {
    return parsePipeline(d, (name) => this.deps.algorithms.has(name));
  }

  /** Starts a job; returns its id once it is recorded. */
  async exec(d: Descriptor, opts: { priority: number; tags: string[] }): Promise<string> {
    const parsed = this.validate(d);
    for (const name of parsed.order) {
      const alg = this.deps.algorithms.get(parsed.byName.get(name)!.algorithmName)!;
      if (!alg.codePath) {
        throw failedPrecondition(
          `node "${name}": algorithm "${alg.name}" has no code.path; the embedded default runs local code`,
        );
      }
    }
    if (opts.priority !== 0 && (opts.priority < 1 || opts.priority > 5 || !Number.isInteger(opts.priority))) {
      throw new WeftError(Status.INVALID_ARGUMENT, `priority: ${opts.priority} is not an integer from 1 to 5`, {
        field: 'priority',
      });
    }
    const jobId = `${slug(d.name)}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const flowInput = d.flowInput ?? {};
    const { flowInput: _omit, ...rest } = d;
    const record: JobRecord = {
      jobId,
      pipelineName: d.name,
      descriptor: rest,
      flowInput: encode(flowInput),
      state: 'pending',
      priority: opts.priority || DEFAULT_PRIORITY,
      tags: opts.tags,
      error: '',
      created: new Date(),
      started: undefined,
      ended: undefined,
      nodes: undefined,
    };
    await this.deps.store.createJob(record);
    this.deps.metrics.jobsActive.inc();
    const run = new JobRun(record, parsed, flowInput, new Map());
    this.runs.set(jobId, run);
    this.deps.log.info('job created', { jobId, pipeline: d.name });
    await this.activate(run);
    return jobId;
  }

  /** Resumes every job that was pending or active when the control plane stopped. */
  async recover(): Promise<number> {
    const jobs = await this.deps.store.listJobs({ states: ['pending', 'active'] });
    for (const record of jobs) {
      // One job that cannot be resumed must not keep the others (or the server) from starting.
      try {
        await this.resume(record);
      } catch (err) {
        const error = `cannot resume after restart: ${err instanceof Error ? err.message : String(err)}`;
        this.deps.log.error('job not resumed', { jobId: record.jobId, error });
        const run = this.runs.get(record.jobId);
        if (run) await this.failJob(run, error);
        else await this.deps.store.updateJob(record.jobId, { state: 'failed', error, ended: new Date() });
      }
    }
    return jobs.length;
  }

  private async resume(record: JobRecord): Promise<void> {
    const flowInput = decode(record.flowInput) as Record<string, unknown>;
    const parsed = this.validate({ ...record.descriptor, flowInput } as unknown as Descriptor);
    const recorded = new Map<string, TaskRecord>();
    for (const t of await this.deps.store.listTasks(record.jobId)) recorded.set(`${t.nodeName}#${t.batchIndex}`, t);
    const run = new JobRun(record, parsed, flowInput, recorded);
    this.runs.set(record.jobId, run);
    this.deps.metrics.jobsActive.inc();
    this.deps.log.info('job resumed', { jobId: record.jobId, recordedTasks: recorded.size });
    await this.activate(run);
  }

  private async activate(run: JobRun): Promise<void> {
    if (run.record.state === 'pending') {
      run.record.state = 'active';
      run.record.started = new Date();
      await this.deps.store.updateJob(run.record.jobId, { state: 'active', started: run.record.started });
      run.statusChanged();
    }
    for (const name of run.parsed.order) {
      if (run.final) return;
      await this.tryExpand(run, run.nodes.get(name)!);
    }
    await this.checkDone(run);
  }

  /** Starts a node once all its parents are done. */
  private async tryExpand(run: JobRun, node: NodeRun): Promise<void> {
    if (node.items || run.final) return;
    for (const p of node.parsed.parents) {
      const s = run.nodes.get(p)!.state;
      if (s !== 'succeeded' && s !== 'skipped') return;
    }
    let batch: boolean;
    let inputs: unknown[][];
    try {
      ({ batch, inputs } = buildTaskInputs(node.parsed, run.flowInput, (name) => this.outputOf(run, name)));
    } catch (err) {
      await this.failJob(run, err instanceof Error ? err.message : String(err));
      return;
    }
    node.batch = batch;
    node.items = new Array<OutputItem | undefined>(inputs.length);
    node.total = inputs.length;
    if (inputs.length === 0) {
      // HKube: an empty batch skips the node; its children see an empty array.
      node.state = 'skipped';
      run.nodeChanged(node.parsed.nodeName);
      await this.nodeFinished(run, node);
      return;
    }
    node.state = 'active';
    const alg = this.deps.algorithms.get(node.parsed.algorithmName);
    for (let i = 0; i < inputs.length; i++) {
      const batchIndex = batch ? i : -1;
      const prior = run.recorded.get(`${node.parsed.nodeName}#${batchIndex}`);
      if (prior?.state === 'succeeded') {
        node.items[i] = itemFromRecord(prior);
        node.succeeded++;
        continue;
      }
      if (prior?.state === 'failed' && prior.error) {
        await this.failJob(
          run,
          describeFailure(node.parsed.nodeName, batchIndex, prior.taskId, { ...prior.error }, prior.attempts),
        );
        return;
      }
      const keys = new Set<string>();
      blobKeys(inputs[i], keys);
      const taskId = `${run.record.jobId}:${node.parsed.index}:${batch ? i : 0}`;
      node.queued++;
      this.deps.dispatcher.submit(
        {
          taskId,
          jobId: run.record.jobId,
          algorithmName: node.parsed.algorithmName,
          nodeName: node.parsed.nodeName,
          pipelineName: run.record.pipelineName,
          batchIndex,
          input: encode(inputs[i]),
          inputKeys: [...keys],
          outputKey: `jobs/${run.record.jobId}/${node.parsed.index}/${batch ? i : 0}`,
          savePaths: node.parsed.savePaths,
          priority: run.record.priority,
          kind: 'pipeline',
          retry: { ...DEFAULT_RETRY },
        },
        this.listener(run, node, i, batchIndex, taskId, alg?.name ?? node.parsed.algorithmName),
      );
    }
    run.nodeChanged(node.parsed.nodeName);
    if (node.succeeded === node.total) await this.nodeFinished(run, node);
  }

  private listener(run: JobRun, node: NodeRun, i: number, batchIndex: number, taskId: string, algorithm: string) {
    let started: Date | undefined;
    return {
      onStarted: (): void => {
        if (run.final) return;
        started = new Date();
        node.queued--;
        node.active++;
        run.nodeChanged(node.parsed.nodeName);
      },
      onProgress: (percent: number, message: string): void => {
        if (!run.final)
          run.emit({ type: 'progress', nodeName: node.parsed.nodeName, taskId, batchIndex, percent, message });
      },
      onRetry: (failure: TaskFailure, attempt: number): void => {
        this.deps.log.warn('task retried', {
          jobId: run.record.jobId,
          node: node.parsed.nodeName,
          batchIndex,
          attempt,
          error: failure.message,
        });
        if (started) {
          started = undefined;
          node.active--;
          node.queued++;
          run.nodeChanged(node.parsed.nodeName);
        }
      },
      onDone: (outcome: Outcome): void => {
        if (started) node.active--;
        else node.queued--;
        void this.taskDone(run, node, i, batchIndex, taskId, algorithm, outcome).catch((err: unknown) => {
          // The outcome is not durable, so the job cannot go on as if it were.
          const message = err instanceof Error ? err.message : String(err);
          this.deps.log.error('recording a task outcome failed', { jobId: run.record.jobId, taskId, err: message });
          this.failJob(run, `recording the outcome of task ${taskId} failed: ${message}`).catch(() => undefined);
        });
      },
    };
  }

  private async taskDone(
    run: JobRun,
    node: NodeRun,
    i: number,
    batchIndex: number,
    taskId: string,
    _algorithm: string,
    outcome: Outcome,
  ): Promise<void> {
    if (run.final || outcome.status === 'stopped') {
      run.nodeChanged(node.parsed.nodeName);
      return;
    }
    const base = {
      jobId: run.record.jobId,
      nodeName: node.parsed.nodeName,
      batchIndex,
      taskId,
      attempts: outcome.attempts,
      ended: new Date(),
    };
    // Decoded before it is recorded: a result nobody can read must fail its
    // task, not stall the job (or, recorded, stop every later restart).
    let value: unknown = null;
    if (outcome.status === 'succeeded') {
      const payload = outcome.result;
      const inline = payload.kind?.$case === 'inline' ? payload.kind.value : undefined;
      try {
        if (inline) value = decode(inline);
      } catch (err) {
        outcome = {
          status: 'failed',
          failure: {
            type: 'ResultDecodeError',
            message: `the result is not msgpack weft can read: ${err instanceof Error ? err.message : String(err)}`,
            stack: '',
            crash: false,
          },
          attempts: outcome.attempts,
          started: outcome.started,
        };
      }
    }
    if (outcome.status === 'succeeded') {
      const payload = outcome.result;
      const inline = payload.kind?.$case === 'inline' ? payload.kind.value : undefined;
      const ref = payload.kind?.$case === 'ref' ? payload.kind.value : undefined;
      const meta: TaskRecord['meta'] = {};
      for (const [k, v] of Object.entries(outcome.meta)) meta[k] = { type: v.type, size: v.size };
      await this.deps.store.recordTask({
        ...base,
        state: 'succeeded',
        resultInline: inline ? Buffer.from(inline) : undefined,
        resultKey: ref?.key,
        resultSize: ref ? ref.size : (inline?.byteLength ?? 0),
        meta,
        error: undefined,
        started: outcome.started,
      });
      if (run.final) return;
      node.items![i] = ref ? { kind: 'blob', key: ref.key, meta } : { kind: 'inline', value };
      node.succeeded++;
      run.nodeChanged(node.parsed.nodeName);
      if (node.succeeded === node.total) await this.nodeFinished(run, node);
      return;
    }
    const f = outcome.failure;
    await this.deps.store.recordTask({
      ...base,
      state: 'failed',
      resultInline: undefined,
      resultKey: undefined,
      resultSize: 0,
      meta: {},
      error: { type: f.type, message: f.message, stack: f.stack, crash: f.crash },
      started: outcome.started,
    });
    node.failed++;
    node.errors.push({ taskId, nodeName: node.parsed.nodeName, batchIndex, failure: f, attempts: outcome.attempts });
    node.state = 'failed';
    run.nodeChanged(node.parsed.nodeName);
    await this.failJob(run, describeFailure(node.parsed.nodeName, batchIndex, taskId, f, outcome.attempts));
  }

  private async nodeFinished(run: JobRun, node: NodeRun): Promise<void> {
    if (node.state !== 'skipped') node.state = 'succeeded';
    run.nodeChanged(node.parsed.nodeName);
    for (const c of node.parsed.children) await this.tryExpand(run, run.nodes.get(c)!);
    await this.checkDone(run);
  }

  private async checkDone(run: JobRun): Promise<void> {
    if (run.final) return;
    for (const n of run.nodes.values()) if (n.state !== 'succeeded' && n.state !== 'skipped') return;
    await this.finishJob(run, 'completed', '');
  }

  private outputOf(run: JobRun, name: string): NodeOutput {
    const n = run.nodes.get(name)!;
    const items = (n.items ?? []).map((it) => it ?? { kind: 'inline' as const, value: null });
    return { batch: n.batch, items };
  }

  private async failJob(run: JobRun, error: string): Promise<void> {
    if (run.final) return;
    this.deps.dispatcher.stopJob(run.record.jobId, 'job failed');
    await this.finishJob(run, 'failed', error);
  }

  private async finishJob(run: JobRun, state: 'completed' | 'failed' | 'stopped', error: string): Promise<void> {
    if (run.final) return;
    run.record.state = state;
    run.record.error = error;
    run.record.ended = new Date();
    for (const n of run.nodes.values()) {
      if (n.state === 'active' || n.state === 'pending') n.state = state === 'completed' ? n.state : 'stopped';
      if (state !== 'completed') {
        n.queued = 0;
        n.active = 0;
      }
    }
    const nodes = [...run.nodes.values()].map((n) => NodeStatus.toJSON(run.nodeStatus(n)) as Record<string, unknown>);
    run.record.nodes = nodes;
    await this.deps.store.updateJob(run.record.jobId, { state, error, ended: run.record.ended, nodes });
    this.deps.metrics.jobsActive.dec();
    this.deps.metrics.jobsTotal.inc({ state });
    this.deps.log.info('job ended', { jobId: run.record.jobId, state, error: error || undefined });
    run.statusChanged();
    run.watchers.clear();
    this.runs.delete(run.record.jobId);
  }

  /** Stops a job: queued work is dropped, running algorithms get stop, then a kill after the grace period. */
  async stop(jobId: string, reason: string): Promise<JobStatus> {
    const run = this.runs.get(jobId);
    if (!run) {
      const status = await this.status(jobId);
      if (status.state === PbJobState.JOB_STATE_PENDING || status.state === PbJobState.JOB_STATE_ACTIVE) {
        throw new WeftError(Status.UNAVAILABLE, `job ${jobId} is being resumed; try again`);
      }
      throw failedPrecondition(
        `job ${jobId} already ended (${PbJobState[status.state].replace('JOB_STATE_', '').toLowerCase()})`,
      );
    }
    this.deps.dispatcher.stopJob(jobId, reason || 'stopped by user');
    await this.finishJob(run, 'stopped', reason || 'stopped by user');
    return run.status();
  }

  async status(jobId: string): Promise<JobStatus> {
    const run = this.runs.get(jobId);
    if (run) return run.status();
    const record = await this.deps.store.getJob(jobId);
    if (!record) throw notFound(`job ${jobId} not found`);
    return this.statusFromStore(record);
  }

  /** Rebuilds the status of a job that is not in memory (it ended) from the store. */
  private async statusFromStore(record: JobRecord): Promise<JobStatus> {
    const base = {
      jobId: record.jobId,
      pipelineName: record.pipelineName,
      state: STATE_TO_PB[record.state],
      error: record.error,
      priority: record.priority,
      created: record.created,
      started: record.started,
      ended: record.ended,
      tags: record.tags,
    };
    if (record.nodes) {
      // The summary written when the job ended: the same figures its watchers saw last.
      const nodes = record.nodes.map((n) => NodeStatus.fromJSON(n));
      let known = 0;
      let finished = 0;
      for (const n of nodes) {
        known += Math.max(n.total, 1);
        finished += n.state === PbNodeState.NODE_STATE_SKIPPED ? Math.max(n.total, 1) : n.succeeded + n.failed;
      }
      const progress = record.state === 'completed' ? 100 : Math.round((finished / Math.max(known, 1)) * 10000) / 100;
      return { ...base, progress, nodes };
    }
    // No summary (the job ended while it could not be resumed): what the task rows tell.
    const tasks = await this.deps.store.listTasks(record.jobId);
    const descriptorNodes =
      (record.descriptor['nodes'] as { nodeName: string; algorithmName: string }[] | undefined) ?? [];
    const byNode = new Map<string, TaskRecord[]>();
    for (const t of tasks) (byNode.get(t.nodeName) ?? byNode.set(t.nodeName, []).get(t.nodeName)!).push(t);
    const completed = record.state === 'completed';
    return {
      ...base,
      progress: completed ? 100 : 0,
      nodes: descriptorNodes.map((n): NodeStatus => {
        const ts = byNode.get(n.nodeName) ?? [];
        const failed = ts.filter((t) => t.state === 'failed');
        const state: NodeState =
          failed.length > 0 ? 'failed' : ts.length > 0 ? 'succeeded' : completed ? 'skipped' : 'stopped';
        return {
          nodeName: n.nodeName,
          algorithmName: n.algorithmName,
          state: NODE_TO_PB[state],
          total: ts.length,
          pending: 0,
          active: 0,
          succeeded: ts.length - failed.length,
          failed: failed.length,
          batch: ts.some((t) => t.batchIndex >= 0),
          errors: failed.map((t) => ({
            taskId: t.taskId,
            nodeName: t.nodeName,
            batchIndex: t.batchIndex,
            failure: t.error ?? { type: 'Error', message: '', stack: '', crash: false },
            attempts: t.attempts,
          })),
        };
      }),
    };
  }

  /** The job's leaf outputs (HKube's result shape). Small stored results are inlined. */
  async result(jobId: string): Promise<{ state: JobState; error: string; results: LeafResult[] }> {
    const record = await this.deps.store.getJob(jobId);
    if (!record) throw notFound(`job ${jobId} not found`);
    const results: LeafResult[] = [];
    if (record.state === 'completed') {
      const nodes = (record.descriptor['nodes'] as { nodeName: string; algorithmName: string }[]) ?? [];
      const children = new Set<string>();
      const flow = decode(record.flowInput) as Record<string, unknown>;
      const parsed = parsePipeline({ ...(record.descriptor as unknown as Descriptor), flowInput: flow }, () => true);
      for (const n of parsed.nodes) for (const p of n.parents) children.add(p);
      const leaves = new Set(nodes.filter((n) => !children.has(n.nodeName)).map((n) => n.nodeName));
      const tasks = (await this.deps.store.listTasks(jobId)).filter((t) => leaves.has(t.nodeName));
      tasks.sort(
        (a, b) =>
          parsed.byName.get(a.nodeName)!.index - parsed.byName.get(b.nodeName)!.index || a.batchIndex - b.batchIndex,
      );
      for (const t of tasks) {
        let result: Payload;
        if (t.resultKey && t.resultSize <= this.deps.config.resultInlineLimit) {
          result = { kind: { $case: 'inline', value: await this.deps.blobs.get(t.resultKey) } };
        } else if (t.resultKey) {
          result = { kind: { $case: 'ref', value: { key: t.resultKey, size: t.resultSize } } };
        } else {
          result = { kind: { $case: 'inline', value: t.resultInline ?? encode(null) } };
        }
        results.push({
          nodeName: t.nodeName,
          algorithmName: parsed.byName.get(t.nodeName)!.algorithmName,
          batchIndex: t.batchIndex,
          result,
        });
      }
    }
    return { state: record.state, error: record.error, results };
  }

  async list(filter: { pipelineName?: string; states?: JobState[]; limit?: number }): Promise<JobStatus[]> {
    const records = await this.deps.store.listJobs({ limit: 100, ...filter });
    const out: JobStatus[] = [];
    for (const r of records) {
      const run = this.runs.get(r.jobId);
      out.push(run ? run.status() : await this.statusFromStore(r));
    }
    return out;
  }

  /**
   * Subscribes to a job's updates: the current status first, then changes.
   * Returns an unsubscribe function, or undefined when the job already ended
   * (the caller sends the final status and closes).
   */
  watch(jobId: string, w: Watcher): (() => void) | undefined {
    const run = this.runs.get(jobId);
    if (!run) return undefined;
    run.watchers.add(w);
    w({ type: 'status', status: run.status() });
    return () => run.watchers.delete(w);
  }

  /** Jobs currently held in memory (pending or active). */
  get activeCount(): number {
    return this.runs.size;
  }
}
