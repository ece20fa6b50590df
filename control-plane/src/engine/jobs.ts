import { randomBytes } from 'node:crypto';
import {
  BlobRef,
  Status,
  WeftError,
  decode,
  encode,
  failedPrecondition,
  getPath,
  invalid,
  notFound,
  type BlobStore,
  type Logger,
} from '@weft/common';
import { NodeState as PbNodeState, NodeStatus, PipelineDescriptor } from '@weft/proto';
import type { JobDone, SubmitJob } from '@weft/proto';
import type { JobStatus, LeafResult, Payload, TaskFailure } from '@weft/proto';
import type { Dispatcher, Outcome, UnitListener, WorkUnit } from '../dispatch/dispatcher.js';
import {
  buildTaskInputs,
  buildWaitAnyInput,
  parsePipeline,
  toFlatDescriptor,
  waitAnyCount,
  type Descriptor,
  type NodeOutput,
  type OutputItem,
  type ParsedPipeline,
} from '../domain/pipeline.js';
import type { Metrics } from '../server/metrics.js';
import type { JobFilter, JobRecord, JobState, StateStore, TaskRecord } from '../store/port.js';
import type { AlgorithmRegistry } from './algorithms.js';
import { Item, JobRun, NODE_TO_PB, STATE_TO_PB, blobKeys, itemFromRecord, type NodeRun, type Watcher } from './run.js';
import type { Webhooks, ResultEntry } from './webhooks.js';

export type { JobUpdate } from './run.js';

function slug(name: string): string {
  return (
    name
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 40) || 'job'
  );
}

function describeFailure(node: string, batchIndex: number, taskId: string, f: TaskFailure, attempts: number): string {
  const where = batchIndex >= 0 ? `node "${node}" batch item ${batchIndex}` : `node "${node}"`;
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  return `${where} (task ${taskId}) failed${tries}: ${f.type}: ${f.message}`;
}

export interface EngineConfig {
  /** Stored results up to this size are inlined into GetResult answers. */
  resultInlineLimit: number;
  /** Intermediate (non-result) outputs of ended jobs are deleted after this long. */
  retainIntermediateMs: number;
  /** Ended jobs, with their results, are deleted after this long. */
  retainJobsMs: number;
}

export interface ExecOptions {
  tags?: string[];
  parentJobId?: string;
  /** Outcomes to take as already done (a run from a node): copied into the new job. */
  prefilled?: TaskRecord[];
  /** Environment every task of the job sees (kept in memory only: a resumed job runs without it). */
  env?: Record<string, string>;
}

/**
 * The pipeline engine: turns descriptors into jobs, jobs into units of work
 * for the dispatcher, and outcomes into progress, results and final states.
 */
export class JobEngine {
  private readonly runs = new Map<string, JobRun>();
  /** Stored pipelines, for sub-pipeline nodes and pipeline triggers. */
  private readonly pipelines = new Map<string, Descriptor>();
  /** Jobs held pending by concurrentPipelines, by pipeline name, oldest first. */
  private readonly waiting = new Map<string, string[]>();
  /** Callers waiting for a job to end (the code API), by job id. */
  private readonly endWaiters = new Map<string, ((state: JobState, error: string) => void)[]>();
  /** Called after a job of a stored pipeline completes: pipeline triggers. */
  onCompleted: ((pipelineName: string, jobId: string) => void) | undefined;

  constructor(
    private readonly deps: {
      store: StateStore;
      dispatcher: Dispatcher;
      blobs: BlobStore;
      algorithms: AlgorithmRegistry;
      webhooks: Webhooks;
      metrics: Metrics;
      log: Logger;
      config: EngineConfig;
    },
  ) {}

  /**
   * A job started from a running task's code (HKube's code API): the job is
   * the task's job's child, and reply gets its outcome once it has ended.
   */
  async submitFromTask(req: SubmitJob, parentJobId: string, reply: (done: JobDone) => void): Promise<void> {
    let jobId = '';
    try {
      const parent = this.runs.get(parentJobId);
      const opts: ExecOptions = { parentJobId, tags: ['code-api'] };
      const what = req.what;
      if (!what) throw invalid('what', 'say what to start: an algorithm, a stored pipeline or a raw pipeline');
      if (what.$case === 'algorithm') {
        const { name } = what.value;
        const input = what.value.input.byteLength > 0 ? decode(what.value.input) : [];
        if (!Array.isArray(input)) throw invalid('algorithm.input', 'must be an array (the algorithm’s input)');
        // The input travels in the flowInput and is referenced item by item, so
        // strings that look like references ("@x") stay plain values.
        jobId = await this.exec(
          {
            name,
            nodes: [{ nodeName: name, algorithmName: name, input: input.map((_, i) => `@flowInput.input.${i}`) }],
            flowInput: { input },
            // The child serves its parent: it queues at the parent's priority.
            priority: parent?.record.priority ?? 3,
          },
          opts,
        );
      } else if (what.$case === 'stored') {
        const flow =
          what.value.flowInput.byteLength > 0 ? (decode(what.value.flowInput) as Record<string, unknown>) : undefined;
        jobId = await this.execStored(what.value.name, flow, opts);
      } else {
        const d = PipelineDescriptor.toJSON(what.value.pipeline ?? PipelineDescriptor.fromPartial({})) as Descriptor;
        d.nodes = (d.nodes ?? []).map((n) => ({ ...n, input: n.input ?? [] }));
        if (what.value.flowInput.byteLength > 0) d.flowInput = decode(what.value.flowInput) as Record<string, unknown>;
        jobId = await this.exec(d, opts);
      }
      if (parent) {
        parent.childJobIds.push(jobId);
        parent.statusChanged();
      }
      const { state, error } = await this.whenEnded(jobId);
      const results = req.includeResult && state === 'completed' ? (await this.result(jobId)).results : [];
      reply({ requestId: req.requestId, jobId, state: STATE_TO_PB[state], results, error });
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      reply({ requestId: req.requestId, jobId, state: STATE_TO_PB.failed, results: [], error });
    }
  }

  /** Jobs a job's algorithms started (not its reruns or the jobs it triggered, which also name it as parent). */
  private async codeApiChildren(jobId: string): Promise<JobRecord[]> {
    return (await this.deps.store.listJobs({ parentJobId: jobId })).filter((j) => j.tags.includes('code-api'));
  }

  /** The pipeline names of a job and the jobs it came from (parent, grandparent, ...), nearest first. */
  async lineage(jobId: string, max = 100): Promise<string[]> {
    const names: string[] = [];
    let id = jobId;
    for (let i = 0; id && i < max; i++) {
      const r = this.runs.get(id)?.record ?? (await this.deps.store.getJob(id));
      if (!r) break;
      names.push(r.pipelineName);
      id = r.parentJobId;
    }
    return names;
  }

  /**
   * Exit codes that the job's failed tasks gave (MissingDependencies = 20,
   * PermanentFailure = 50, or any code an algorithm attached to its error).
   */
  async failureExitCodes(jobId: string): Promise<number[]> {
    const codes: number[] = [];
    for (const t of await this.deps.store.listTasks(jobId)) {
      const code = t.error?.exitCode;
      if (t.state === 'failed' && typeof code === 'number') codes.push(code);
    }
    return codes;
  }

  /** Resolves when the job has ended, with how it ended. */
  waitForEnd(jobId: string): Promise<{ state: JobState; error: string }> {
    return this.whenEnded(jobId);
  }

  /** Resolves when the job has ended, with how it ended. */
  private whenEnded(jobId: string): Promise<{ state: JobState; error: string }> {
    if (!this.runs.has(jobId)) {
      return this.deps.store
        .getJob(jobId)
        .then((r) => ({ state: r?.state ?? 'failed', error: r?.error ?? 'job not found' }));
    }
    return new Promise((resolve) => {
      const list = this.endWaiters.get(jobId) ?? [];
      list.push((state, error) => resolve({ state, error }));
      this.endWaiters.set(jobId, list);
    });
  }

  /** Keeps the engine's view of stored pipelines current (sub-pipelines, triggers). */
  pipelineStored(name: string, descriptor: Descriptor | undefined): void {
    if (descriptor) this.pipelines.set(name, descriptor);
    else this.pipelines.delete(name);
  }

  storedPipelines(): ReadonlyMap<string, Descriptor> {
    return this.pipelines;
  }

  /** Validates a descriptor without running it (INVALID_ARGUMENT naming node and input path). */
  validate(d: Descriptor, opts: { flowInputLater?: boolean } = {}): ParsedPipeline {
    return parsePipeline(
      d,
      (name) => this.deps.algorithms.has(name),
      (name) => this.pipelines.get(name),
      opts,
    );
  }

  /** Runs a stored pipeline, its flowInput replaced when one is given. */
  async execStored(name: string, flowInput?: Record<string, unknown>, opts: ExecOptions = {}): Promise<string> {
    const d = this.pipelines.get(name);
    if (!d) throw notFound(`pipeline "${name}" not found`);
    return this.exec(flowInput ? { ...d, flowInput } : d, opts);
  }

  /** Starts a job (or queues it, under concurrentPipelines); returns its id once it is recorded. */
  async exec(d: Descriptor, opts: ExecOptions = {}): Promise<string> {
    const parsed = this.validate(d);
    for (const name of parsed.order) {
      const node = parsed.byName.get(name)!;
      if (node.kind !== 'algorithm') continue;
      const alg = this.deps.algorithms.get(node.algorithmName)!;
      if (!alg.codePath && !alg.codeStage) {
        throw failedPrecondition(
          `node "${name}": algorithm "${alg.name}" has no code.path; the embedded default runs local code`,
        );
      }
    }
    let queued = false;
    const limit = parsed.options.concurrentPipelines;
    if (limit) {
      const running = [...this.runs.values()].filter((r) => r.record.pipelineName === parsed.name).length;
      if (running >= limit.amount) {
        if (limit.rejectOnFailure) {
          throw new WeftError(
            Status.RESOURCE_EXHAUSTED,
            `pipeline "${parsed.name}" already has ${running} jobs pending or active (options.concurrentPipelines.amount is ${limit.amount})`,
          );
        }
        queued = true;
      }
    }
    const jobId = `${slug(parsed.name)}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    // The flattened descriptor (sub-pipelines inlined, defaults filled in):
    // resuming the job later must not depend on stored pipelines that may have changed.
    const { flowInput: _omit, ...rest } = toFlatDescriptor(parsed);
    const record: JobRecord = {
      jobId,
      pipelineName: parsed.name,
      descriptor: rest,
      flowInput: encode(parsed.flowInput),
      state: 'pending',
      priority: parsed.priority,
      tags: opts.tags ?? parsed.tags,
      error: '',
      created: new Date(),
      started: undefined,
      ended: undefined,
      nodes: undefined,
      parentJobId: opts.parentJobId ?? '',
    };
    await this.deps.store.createJob(record);
    const recorded = new Map<string, TaskRecord>();
    for (const t of opts.prefilled ?? []) {
      const copy = { ...t, jobId, taskId: t.taskId.replace(/^[^:]+/, jobId) };
      await this.deps.store.recordTask(copy);
      recorded.set(`${copy.nodeName}#${copy.batchIndex}`, copy);
    }
    this.deps.metrics.jobsActive.inc();
    const run = this.track(record, parsed, parsed.flowInput, recorded);
    run.env = opts.env;
    this.deps.log.info('job created', { jobId, pipeline: parsed.name, queued });
    if (queued) this.enqueueWaiting(run);
    else await this.activate(run);
    return jobId;
  }

  private track(
    record: JobRecord,
    parsed: ParsedPipeline,
    flowInput: Record<string, unknown>,
    recorded: Map<string, TaskRecord>,
  ): JobRun {
    const run = new JobRun(record, parsed, flowInput, recorded);
    this.runs.set(record.jobId, run);
    const url = parsed.webhooks.progress;
    if (url) {
      run.onChange = () =>
        this.deps.webhooks.progress(url, run.status(), {
          level: run.record.state === 'failed' ? 'error' : 'info',
          minLevel: parsed.options.progressVerbosityLevel,
          ...(run.algorithmProgress ? { algorithmProgress: run.algorithmProgress } : {}),
        });
    }
    // The job's ttl counts from its creation, pending time included.
    const ttl = parsed.options.ttl;
    if (ttl > 0) this.expireAfter(run, record.created.getTime() + ttl * 1000 - Date.now(), `ttl of ${ttl} s expired`);
    return run;
  }

  private expireAfter(run: JobRun, ms: number, why: string): void {
    const t = setTimeout(
      () => {
        this.deps.dispatcher.stopJob(run.record.jobId, why);
        this.failJob(run, why).catch((err: unknown) => this.deps.log.error('expiring a job failed', { err }));
      },
      Math.max(0, ms),
    );
    t.unref();
    run.timers.push(t);
  }

  private enqueueWaiting(run: JobRun): void {
    const list = this.waiting.get(run.record.pipelineName) ?? [];
    list.push(run.record.jobId);
    this.waiting.set(run.record.pipelineName, list);
    run.statusChanged();
  }

  /** A slot of concurrentPipelines freed: the oldest waiting job of that pipeline starts. */
  private async startWaiting(pipelineName: string): Promise<void> {
    const list = this.waiting.get(pipelineName);
    const next = list?.shift();
    if (!next) return;
    const run = this.runs.get(next);
    if (run && run.record.state === 'pending') await this.activate(run);
  }

  /** Resumes every job that was pending, active or paused when the control plane stopped. */
  async recover(): Promise<number> {
    const jobs = await this.deps.store.listJobs({ states: ['pending', 'active', 'paused'] });
    jobs.sort((a, b) => a.created.getTime() - b.created.getTime());
    for (const record of jobs) {
      // One job that cannot be resumed must not keep the others (or the server) from starting.
      try {
        await this.resumeRecord(record);
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

  private async resumeRecord(record: JobRecord): Promise<void> {
    const flowInput = decode(record.flowInput) as Record<string, unknown>;
    const parsed = this.validate({ ...record.descriptor, flowInput } as unknown as Descriptor);
    const recorded = new Map<string, TaskRecord>();
    for (const t of await this.deps.store.listTasks(record.jobId)) recorded.set(`${t.nodeName}#${t.batchIndex}`, t);
    this.deps.metrics.jobsActive.inc();
    const run = this.track(record, parsed, flowInput, recorded);
    this.deps.log.info('job resumed', { jobId: record.jobId, recordedTasks: recorded.size, state: record.state });
    for (const child of await this.codeApiChildren(record.jobId)) run.childJobIds.push(child.jobId);
    if (record.state === 'paused') this.deps.dispatcher.pauseJob(record.jobId);
    const limit = parsed.options.concurrentPipelines;
    if (record.state === 'pending' && limit) {
      const active = [...this.runs.values()].filter(
        (r) => r.record.pipelineName === parsed.name && r.record.state !== 'pending',
      ).length;
      if (active >= limit.amount) {
        this.enqueueWaiting(run);
        return;
      }
    }
    await this.activate(run);
  }

  private async activate(run: JobRun): Promise<void> {
    if (run.record.state === 'pending') {
      run.record.state = 'active';
      run.record.started = new Date();
      await this.deps.store.updateJob(run.record.jobId, { state: 'active', started: run.record.started });
      run.statusChanged();
    }
    const activeTtl = run.parsed.options.activeTtl;
    if (activeTtl > 0) {
      const since = run.record.started?.getTime() ?? Date.now();
      this.expireAfter(run, since + activeTtl * 1000 - Date.now(), `activeTtl of ${activeTtl} s expired`);
    }
    for (const name of run.parsed.order) {
      if (run.final) return;
      await this.tryExpand(run, run.nodes.get(name)!);
    }
    await this.checkDone(run);
  }

  private parentsReady(run: JobRun, node: NodeRun): boolean {
    for (const p of node.parsed.parents) {
      const parent = run.nodes.get(p)!;
      if (node.parsed.waitAnyParents.includes(p)) {
        // Wait-any: the parent's items need only be known; each item starts when its own is done.
        if (!parent.items) return false;
      } else if (parent.state !== 'succeeded' && parent.state !== 'skipped') {
        return false;
      }
    }
    return true;
  }

  /** Starts a node once its parents allow it. */
  private async tryExpand(run: JobRun, node: NodeRun): Promise<void> {
    if (node.items || run.final || !this.parentsReady(run, node)) return;
    const outputs = (name: string): NodeOutput => this.outputOf(run, name);
    try {
      if (node.parsed.waitAnyParents.length > 0) {
        const count = waitAnyCount(node.parsed, outputs);
        node.batch = true;
        node.total = count;
        node.items = new Array<OutputItem | undefined>(count);
        node.done = new Uint8Array(count);
      } else {
        const { batch, inputs } = buildTaskInputs(node.parsed, run.flowInput, outputs);
        node.batch = batch;
        node.total = inputs.length;
        node.items = new Array<OutputItem | undefined>(inputs.length);
        node.done = new Uint8Array(inputs.length);
        if (node.parsed.kind === 'output') {
          // An output node runs nothing: its input is the pipeline's result.
          const value = await this.materialize(inputs[0] ?? []);
          const bytes = encode(value);
          await this.deps.store.recordTask({
            jobId: run.record.jobId,
            nodeName: node.parsed.nodeName,
            batchIndex: -1,
            taskId: `${run.record.jobId}:${node.parsed.index}:0`,
            state: 'succeeded',
            attempts: 0,
            resultInline: bytes,
            resultKey: undefined,
            resultSize: bytes.byteLength,
            meta: {},
            error: undefined,
            started: undefined,
            ended: new Date(),
          });
          node.items[0] = { kind: 'inline', value };
          node.done[0] = Item.Succeeded;
          node.succeeded = 1;
        } else {
          for (let i = 0; i < inputs.length; i++) await this.submitItem(run, node, i, inputs[i]!);
        }
      }
    } catch (err) {
      await this.failJob(run, err instanceof Error ? err.message : String(err));
      return;
    }
    if (node.total === 0) {
      // HKube: an empty batch skips the node; its children see an empty array.
      node.state = 'skipped';
    } else if (node.state === 'pending') {
      node.state = 'active';
    }
    run.nodeChanged(node.parsed.nodeName);
    // Wait-any children can start as soon as this node's items are known.
    for (const c of node.parsed.children) {
      const child = run.nodes.get(c)!;
      if (child.parsed.waitAnyParents.includes(node.parsed.nodeName)) await this.tryExpand(run, child);
    }
    if (node.parsed.waitAnyParents.length > 0) await this.pumpWaitAny(run, node);
    await this.maybeNodeFinished(run, node);
  }

  /** Submits every wait-any item whose inputs are done (or skips it, when one of them failed). */
  private async pumpWaitAny(run: JobRun, node: NodeRun, only?: number): Promise<void> {
    if (!node.done || run.final) return;
    const from = only ?? 0;
    const to = only === undefined ? node.total : Math.min(only + 1, node.total);
    for (let i = from; i < to; i++) {
      if (node.done[i] !== Item.Pending) continue;
      let ready = true;
      let skip = false;
      for (const p of node.parsed.waitAnyParents) {
        const state = run.nodes.get(p)!.done?.[i];
        if (state === Item.Failed || state === Item.Skipped) skip = true;
        else if (state !== Item.Succeeded) ready = false;
      }
      if (skip) {
        node.done[i] = Item.Skipped;
        node.items![i] = { kind: 'inline', value: null };
        node.skipped++;
        await this.itemSettled(run, node, i);
      } else if (ready) {
        const input = buildWaitAnyInput(node.parsed, i, run.flowInput, (name) => this.outputOf(run, name));
        await this.submitItem(run, node, i, input);
      }
    }
  }

  /** Runs one task of a node, unless a stored outcome already says how it went. */
  private async submitItem(run: JobRun, node: NodeRun, i: number, input: unknown[]): Promise<void> {
    const batchIndex = node.batch ? i : -1;
    const prior = run.recorded.get(`${node.parsed.nodeName}#${batchIndex}`);
    if (prior) {
      node.items![i] = itemFromRecord(prior);
      if (prior.state === 'succeeded') {
        node.done![i] = Item.Succeeded;
        node.succeeded++;
      } else {
        node.done![i] = Item.Failed;
        node.failed++;
        node.errors.push({
          taskId: prior.taskId,
          nodeName: prior.nodeName,
          batchIndex,
          failure: prior.error ?? { type: 'Error', message: '', stack: '', crash: false },
          attempts: prior.attempts,
        });
        if (await this.overTolerance(run, node, prior.taskId, batchIndex, prior.error, prior.attempts)) return;
      }
      await this.itemSettled(run, node, i);
      return;
    }
    const keys = new Set<string>();
    blobKeys(input, keys);
    const taskId = `${run.record.jobId}:${node.parsed.index}:${node.batch ? i : 0}`;
    node.done![i] = Item.Submitted;
    node.queued++;
    const unit: WorkUnit = {
      taskId,
      jobId: run.record.jobId,
      algorithmName: node.parsed.algorithmName,
      nodeName: node.parsed.nodeName,
      pipelineName: run.record.pipelineName,
      batchIndex,
      input: encode(input),
      inputKeys: [...keys],
      outputKey: `jobs/${run.record.jobId}/${node.parsed.index}/${node.batch ? i : 0}`,
      savePaths: node.parsed.savePaths,
      priority: run.record.priority,
      kind: 'pipeline',
      retry: { ...node.parsed.retry },
      ttlMs: node.parsed.ttl * 1000,
      ...(run.env ? { env: run.env } : {}),
    };
    // A paused job's units wait in the dispatcher until it resumes.
    this.deps.dispatcher.submit(unit, this.listener(run, node, i, batchIndex, taskId));
  }

  private listener(run: JobRun, node: NodeRun, i: number, batchIndex: number, taskId: string): UnitListener {
    let started = false;
    return {
      onStarted: (): void => {
        if (run.final) return;
        started = true;
        node.queued--;
        node.active++;
        run.nodeChanged(node.parsed.nodeName);
      },
      onProgress: (percent: number, message: string): void => {
        if (run.final) return;
        run.emit({ type: 'progress', nodeName: node.parsed.nodeName, taskId, batchIndex, percent, message });
        run.algorithmProgress = { nodeName: node.parsed.nodeName, batchIndex, percent, message };
        run.onChange?.();
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
          started = false;
          node.active--;
          node.queued++;
          run.nodeChanged(node.parsed.nodeName);
        }
      },
      onDone: (outcome: Outcome): void => {
        if (started) node.active--;
        else node.queued--;
        this.taskDone(run, node, i, batchIndex, taskId, outcome).catch((err: unknown) => {
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
      const inline = outcome.result.kind?.$case === 'inline' ? outcome.result.kind.value : undefined;
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
      node.done![i] = Item.Succeeded;
      node.succeeded++;
      run.nodeChanged(node.parsed.nodeName);
      await this.itemSettled(run, node, i);
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
      error: {
        type: f.type,
        message: f.message,
        stack: f.stack,
        crash: f.crash,
        ...(f.exitCode !== undefined ? { exitCode: f.exitCode } : {}),
      },
      started: outcome.started,
    });
    if (run.final) return;
    node.items![i] = { kind: 'inline', value: null };
    node.done![i] = Item.Failed;
    node.failed++;
    node.errors.push({ taskId, nodeName: node.parsed.nodeName, batchIndex, failure: f, attempts: outcome.attempts });
    run.nodeChanged(node.parsed.nodeName);
    if (await this.overTolerance(run, node, taskId, batchIndex, f, outcome.attempts)) return;
    await this.itemSettled(run, node, i);
  }

  /**
   * HKube's batchTolerance: a batch node's failures are reported and the job
   * goes on until they reach that percentage of its items. Any failure of a
   * node that is not a batch fails the job. Returns true when the job failed.
   */
  private async overTolerance(
    run: JobRun,
    node: NodeRun,
    taskId: string,
    batchIndex: number,
    f: TaskFailure | undefined,
    attempts: number,
  ): Promise<boolean> {
    const failure = f ?? { type: 'Error', message: '', stack: '', crash: false };
    const tolerance = run.parsed.options.batchTolerance;
    const percent = (100 * node.failed) / Math.max(node.total, 1);
    if (node.batch && percent < tolerance) return false;
    node.state = 'failed';
    run.nodeChanged(node.parsed.nodeName);
    const first = describeFailure(node.parsed.nodeName, batchIndex, taskId, failure, attempts);
    await this.failJob(
      run,
      node.batch
        ? `node "${node.parsed.nodeName}": ${node.failed} of ${node.total} batch items failed (${Math.round(percent * 100) / 100}%), reaching batchTolerance ${tolerance}%; latest: ${first}`
        : first,
    );
    return true;
  }

  /** One item of a node reached its end: wake wait-any children, finish the node when it was the last. */
  private async itemSettled(run: JobRun, node: NodeRun, i: number): Promise<void> {
    for (const c of node.parsed.children) {
      const child = run.nodes.get(c)!;
      if (child.items && child.parsed.waitAnyParents.includes(node.parsed.nodeName))
        await this.pumpWaitAny(run, child, i);
    }
    await this.maybeNodeFinished(run, node);
  }

  private async maybeNodeFinished(run: JobRun, node: NodeRun): Promise<void> {
    if (run.final || !node.items || node.state === 'succeeded' || node.state === 'failed') return;
    if (node.succeeded + node.failed + node.skipped < node.total) return;
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

  /**
   * An output node's value, with references to stored results read in: the
   * job's result is a value, not a pointer into storage that retention may delete.
   */
  private async materialize(value: unknown): Promise<unknown> {
    if (value instanceof BlobRef) return getPath(decode(await this.deps.blobs.get(value.key)), value.path);
    if (Array.isArray(value)) return Promise.all(value.map((v) => this.materialize(v)));
    if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = await this.materialize(v);
      return out;
    }
    return value;
  }

  private async failJob(run: JobRun, error: string): Promise<void> {
    if (run.final) return;
    this.deps.dispatcher.stopJob(run.record.jobId, 'job failed');
    await this.finishJob(run, 'failed', error);
  }

  private async finishJob(run: JobRun, state: 'completed' | 'failed' | 'stopped', error: string): Promise<void> {
    if (run.final) return;
    const wasWaiting = run.record.state === 'pending';
    run.record.state = state;
    run.record.error = error;
    run.record.ended = new Date();
    run.clearTimers();
    for (const n of run.nodes.values()) {
      if (state !== 'completed' && (n.state === 'active' || n.state === 'pending')) n.state = 'stopped';
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
    if (wasWaiting) {
      const list = this.waiting.get(run.record.pipelineName);
      if (list)
        this.waiting.set(
          run.record.pipelineName,
          list.filter((id) => id !== run.record.jobId),
        );
    } else {
      await this.startWaiting(run.record.pipelineName);
    }
    const url = run.parsed.webhooks.result;
    if (url) {
      const status = run.status();
      this.resultEntries(run.record.jobId).then(
        (entries) => void this.deps.webhooks.result(url, status, entries),
        (err: unknown) => this.deps.log.warn('result webhook not sent', { jobId: run.record.jobId, err }),
      );
    }
    if (state === 'completed') this.onCompleted?.(run.record.pipelineName, run.record.jobId);
    for (const resolve of this.endWaiters.get(run.record.jobId) ?? []) resolve(state, error);
    this.endWaiters.delete(run.record.jobId);
    if (state !== 'completed') {
      // Jobs its algorithms started die with it (HKube stops sub-pipelines too).
      for (const child of run.childJobIds) {
        if (this.runs.has(child))
          await this.stop(child, `parent job ${run.record.jobId} ${state}`).catch(() => undefined);
      }
    }
  }

  /** Stops a job: queued work is dropped, running algorithms get stop, then a kill after the grace period. */
  async stop(jobId: string, reason: string): Promise<JobStatus> {
    const run = await this.live(jobId);
    this.deps.dispatcher.stopJob(jobId, reason || 'stopped by user');
    await this.finishJob(run, 'stopped', reason || 'stopped by user');
    return run.status();
  }

  /** Holds a job's queued tasks back; running ones finish and are recorded. */
  async pause(jobId: string): Promise<JobStatus> {
    const run = await this.live(jobId);
    if (run.record.state !== 'active') {
      throw failedPrecondition(`job ${jobId} is ${run.record.state}; only an active job can be paused`);
    }
    run.record.state = 'paused';
    this.deps.dispatcher.pauseJob(jobId);
    await this.deps.store.updateJob(jobId, { state: 'paused' });
    run.statusChanged();
    return run.status();
  }

  async resume(jobId: string): Promise<JobStatus> {
    const run = await this.live(jobId);
    if (run.record.state !== 'paused') throw failedPrecondition(`job ${jobId} is ${run.record.state}, not paused`);
    run.record.state = 'active';
    await this.deps.store.updateJob(jobId, { state: 'active' });
    this.deps.dispatcher.resumeJob(jobId);
    run.statusChanged();
    return run.status();
  }

  /** Runs an earlier job's descriptor and flowInput again. */
  async rerun(jobId: string): Promise<string> {
    const record = await this.deps.store.getJob(jobId);
    if (!record) throw notFound(`job ${jobId} not found`);
    const d = { ...record.descriptor, flowInput: decode(record.flowInput) } as unknown as Descriptor;
    return this.exec(d, { tags: record.tags, parentJobId: jobId });
  }

  /**
   * A new job that runs one node and everything after it; every other node's
   * outputs are taken from the earlier job's stored results (HKube's "caching").
   */
  async runFromNode(jobId: string, nodeName: string): Promise<string> {
    const record = await this.deps.store.getJob(jobId);
    if (!record) throw notFound(`job ${jobId} not found`);
    const d = { ...record.descriptor, flowInput: decode(record.flowInput) } as unknown as Descriptor;
    const parsed = this.validate(d);
    if (!parsed.byName.has(nodeName)) throw invalid('nodeName', `job ${jobId} has no node "${nodeName}"`);
    const rerun = new Set<string>([nodeName]);
    for (const name of parsed.order) {
      if (parsed.byName.get(name)!.parents.some((p) => rerun.has(p))) rerun.add(name);
    }
    const tasks = await this.deps.store.listTasks(jobId);
    const summary = new Map((record.nodes ?? []).map((n) => [String(n['nodeName']), NodeStatus.fromJSON(n)]));
    for (const name of parsed.order) {
      if (rerun.has(name)) continue;
      const s = summary.get(name);
      const done =
        s?.state === PbNodeState.NODE_STATE_SUCCEEDED ||
        s?.state === PbNodeState.NODE_STATE_SKIPPED ||
        (!s && tasks.some((t) => t.nodeName === name));
      if (!done) {
        throw failedPrecondition(
          `node "${name}" did not finish in job ${jobId}, so "${nodeName}" cannot start from its results`,
        );
      }
    }
    const prefilled = tasks.filter((t) => !rerun.has(t.nodeName) && (t.state === 'succeeded' || t.state === 'failed'));
    const expired = prefilled.find((t) => t.meta['expired']);
    if (expired) {
      throw failedPrecondition(
        `the results of node "${expired.nodeName}" in job ${jobId} were deleted by retention; rerun the whole job instead`,
      );
    }
    return this.exec(d, { tags: record.tags, parentJobId: jobId, prefilled });
  }

  private async live(jobId: string): Promise<JobRun> {
    const run = this.runs.get(jobId);
    if (run) return run;
    const record = await this.deps.store.getJob(jobId);
    if (!record) throw notFound(`job ${jobId} not found`);
    if (record.state === 'pending' || record.state === 'active' || record.state === 'paused') {
      // Not in memory yet: the control plane is still resuming jobs after a restart.
      throw new WeftError(Status.UNAVAILABLE, `job ${jobId} is being resumed after a restart; try again`);
    }
    throw failedPrecondition(`job ${jobId} already ended (${record.state})`);
  }

  async status(jobId: string): Promise<JobStatus> {
    const run = this.runs.get(jobId);
    if (run) return run.status();
    const record = await this.deps.store.getJob(jobId);
    if (!record) throw notFound(`job ${jobId} not found`);
    return this.statusFromStore(record);
  }

  private async statusFromStore(record: JobRecord): Promise<JobStatus> {
    const children = await this.codeApiChildren(record.jobId);
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
      childJobIds: children.map((c) => c.jobId),
      parentJobId: record.parentJobId,
    };
    if (record.nodes) {
      // The summary written when the job ended: the same figures its watchers saw last.
      const nodes = record.nodes.map((n) => NodeStatus.fromJSON(n));
      let known = 0;
      let finished = 0;
      for (const n of nodes) {
        known += Math.max(n.total, 1);
        finished +=
          n.state === PbNodeState.NODE_STATE_SKIPPED ? Math.max(n.total, 1) : n.succeeded + n.failed + n.skipped;
      }
      const progress = record.state === 'completed' ? 100 : Math.round((finished / Math.max(known, 1)) * 10000) / 100;
      return { ...base, progress, nodes };
    }
    // No summary (the job ended while it could not be resumed): what the task rows tell.
    const tasks = await this.deps.store.listTasks(record.jobId);
    const descriptorNodes =
      (record.descriptor['nodes'] as { nodeName: string; algorithmName: string }[] | undefined) ?? [];
    const completed = record.state === 'completed';
    return {
      ...base,
      progress: completed ? 100 : 0,
      nodes: descriptorNodes.map((n): NodeStatus => {
        const ts = tasks.filter((t) => t.nodeName === n.nodeName);
        const failed = ts.filter((t) => t.state === 'failed');
        const state = failed.length > 0 ? 'failed' : ts.length > 0 ? 'succeeded' : completed ? 'skipped' : 'stopped';
        return {
          nodeName: n.nodeName,
          algorithmName: n.algorithmName,
          state: NODE_TO_PB[state],
          total: ts.length,
          pending: 0,
          active: 0,
          succeeded: ts.length - failed.length,
          failed: failed.length,
          skipped: 0,
          parents: [],
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

  /** The nodes whose outputs are the job's result: its output node, else its leaves. */
  private resultNodes(record: JobRecord): { parsed: ParsedPipeline; names: Set<string> } {
    const flow = decode(record.flowInput) as Record<string, unknown>;
    const parsed = parsePipeline(
      { ...(record.descriptor as unknown as Descriptor), flowInput: flow },
      () => true,
      (name) => this.pipelines.get(name),
    );
    const outputs = parsed.nodes.filter((n) => n.kind === 'output').map((n) => n.nodeName);
    return { parsed, names: new Set(outputs.length > 0 ? outputs : parsed.leaves) };
  }

  /** The job's result: one entry per task of its output node or leaves (HKube's shape). Small stored results are inlined. */
  async result(jobId: string): Promise<{ state: JobState; error: string; results: LeafResult[] }> {
    const record = await this.deps.store.getJob(jobId);
    if (!record) throw notFound(`job ${jobId} not found`);
    const results: LeafResult[] = [];
    if (record.state === 'completed') {
      const { parsed, names } = this.resultNodes(record);
      const tasks = (await this.deps.store.listTasks(jobId)).filter(
        (t) => names.has(t.nodeName) && t.state === 'succeeded',
      );
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

  /** The result as webhook entries: values inline, large stored ones described (HKube's isBigData). */
  private async resultEntries(jobId: string): Promise<ResultEntry[]> {
    const { results } = await this.result(jobId);
    return results.map((r) => {
      const k = r.result?.kind;
      if (k?.$case === 'ref') {
        return {
          nodeName: r.nodeName,
          algorithmName: r.algorithmName,
          batchIndex: r.batchIndex,
          info: {
            path: k.value.key,
            size: k.value.size,
            isBigData: true as const,
            message: 'data too large for the webhook; fetch it with Jobs.DownloadResult',
          },
        };
      }
      return {
        nodeName: r.nodeName,
        algorithmName: r.algorithmName,
        batchIndex: r.batchIndex,
        result: k?.$case === 'inline' ? decode(k.value) : null,
      };
    });
  }

  /** Where one stored result of a job is, for streaming it out. */
  async resultLocation(
    jobId: string,
    nodeName: string,
    batchIndex: number,
  ): Promise<{ key: string; size: number } | { inline: Buffer }> {
    const record = await this.deps.store.getJob(jobId);
    if (!record) throw notFound(`job ${jobId} not found`);
    const tasks = (await this.deps.store.listTasks(jobId)).filter((t) => t.nodeName === nodeName);
    if (tasks.length === 0) throw notFound(`job ${jobId} has no result for node "${nodeName}"`);
    // An unset batch_index (0 on the wire) also names a non-batch node's only result.
    const t =
      tasks.find((x) => x.batchIndex === batchIndex) ??
      (tasks.length === 1 && tasks[0]!.batchIndex < 0 && batchIndex <= 0 ? tasks[0] : undefined);
    if (!t) throw notFound(`job ${jobId} has no result for node "${nodeName}" batch item ${batchIndex}`);
    if (t.state !== 'succeeded')
      throw failedPrecondition(`node "${nodeName}" item ${t.batchIndex} failed; it has no result`);
    if (t.meta['expired']) throw failedPrecondition(`the result of node "${nodeName}" was deleted by retention`);
    return t.resultKey ? { key: t.resultKey, size: t.resultSize } : { inline: t.resultInline ?? encode(null) };
  }

  async list(filter: JobFilter): Promise<JobStatus[]> {
    const records = await this.deps.store.listJobs({ limit: 100, ...filter });
    const out: JobStatus[] = [];
    for (const r of records) {
      const run = this.runs.get(r.jobId);
      out.push(run ? run.status() : await this.statusFromStore(r));
    }
    return out;
  }

  /**
   * Deletes what retention says is old: intermediate outputs of jobs that
   * ended more than retainIntermediate ago, whole jobs (with their results)
   * after retainJobs. HKube keeps results longer than intermediates too.
   */
  async collectGarbage(now = Date.now()): Promise<{ jobs: number; intermediates: number }> {
    let jobs = 0;
    let intermediates = 0;
    for (const r of await this.deps.store.listJobs({ endedBefore: new Date(now - this.deps.config.retainJobsMs) })) {
      await this.deps.blobs.deletePrefix(`jobs/${r.jobId}`);
      await this.deps.store.deleteJob(r.jobId);
      jobs++;
    }
    const old = await this.deps.store.listJobs({ endedBefore: new Date(now - this.deps.config.retainIntermediateMs) });
    for (const r of old) {
      let keep: Set<string>;
      try {
        keep = this.resultNodes(r).names;
      } catch {
        continue;
      }
      const tasks = await this.deps.store.listTasks(r.jobId);
      const nodes = new Set(tasks.filter((t) => !keep.has(t.nodeName) && !t.meta['expired']).map((t) => t.nodeName));
      for (const name of nodes) {
        for (const t of tasks) {
          if (t.nodeName === name && t.resultKey) await this.deps.blobs.deletePrefix(t.resultKey);
        }
        await this.deps.store.dropTaskResult(r.jobId, name);
        intermediates++;
      }
    }
    return { jobs, intermediates };
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

  /** Jobs currently held in memory (pending, active or paused). */
  get activeCount(): number {
    return this.runs.size;
  }
}
