import { BlobRef, decode } from '@weft/common';
import type { JobStatus, TaskError } from '@weft/proto';
import { JobState as PbJobState, NodeState as PbNodeState, type NodeStatus } from '@weft/proto';
import type { OutputItem, ParsedNode, ParsedPipeline } from '../domain/pipeline.js';
import { FINAL_JOB_STATES, type JobRecord, type JobState, type TaskRecord } from '../ports/state-store.js';

/** Watchers get node counts at most this often; state changes go out at once. */
const NODE_EVENT_INTERVAL_MS = 100;

export type NodeState = 'pending' | 'active' | 'succeeded' | 'failed' | 'skipped' | 'stopped';

/** Per batch item: where it stands. */
export const enum Item {
  Pending = 0,
  Succeeded = 1,
  Failed = 2,
  Skipped = 3,
  Submitted = 4,
}

/** A node's progress within one job. */
export interface NodeRun {
  parsed: ParsedNode;
  state: NodeState;
  batch: boolean;
  /** Outputs by batch index, once the node's inputs are known. Failed and skipped items hold null. */
  items: (OutputItem | undefined)[] | undefined;
  /** Per batch item, an {@link Item}. */
  done: Uint8Array | undefined;
  total: number;
  queued: number;
  active: number;
  succeeded: number;
  failed: number;
  skipped: number;
  errors: TaskError[];
}

/** What a watcher receives. */
export type JobUpdate =
  | { type: 'status'; status: JobStatus }
  | { type: 'node'; node: NodeStatus }
  | { type: 'progress'; nodeName: string; taskId: string; batchIndex: number; percent: number; message: string };

export type Watcher = (u: JobUpdate) => void;

export const STATE_TO_PB: Record<JobState, PbJobState> = {
  pending: PbJobState.JOB_STATE_PENDING,
  active: PbJobState.JOB_STATE_ACTIVE,
  paused: PbJobState.JOB_STATE_PAUSED,
  completed: PbJobState.JOB_STATE_COMPLETED,
  failed: PbJobState.JOB_STATE_FAILED,
  stopped: PbJobState.JOB_STATE_STOPPED,
};

export const NODE_TO_PB: Record<NodeState, PbNodeState> = {
  pending: PbNodeState.NODE_STATE_PENDING,
  active: PbNodeState.NODE_STATE_ACTIVE,
  succeeded: PbNodeState.NODE_STATE_SUCCEEDED,
  failed: PbNodeState.NODE_STATE_FAILED,
  skipped: PbNodeState.NODE_STATE_SKIPPED,
  stopped: PbNodeState.NODE_STATE_STOPPED,
};

/** Collects the storage keys of every BlobRef inside a task input. */
export function blobKeys(value: unknown, out: Set<string>): void {
  if (value instanceof BlobRef) out.add(value.key);
  else if (Array.isArray(value)) for (const v of value) blobKeys(v, out);
  else if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    for (const v of Object.values(value)) blobKeys(v, out);
  }
}

export function itemFromRecord(t: TaskRecord): OutputItem {
  if (t.state !== 'succeeded') return { kind: 'inline', value: null };
  if (t.resultKey) return { kind: 'blob', key: t.resultKey, meta: t.meta };
  return { kind: 'inline', value: t.resultInline ? decode(t.resultInline) : null };
}

/** One job being run: its graph state in memory, its progress in the store. */
export class JobRun {
  readonly nodes = new Map<string, NodeRun>();
  readonly watchers = new Set<Watcher>();
  readonly timers: NodeJS.Timeout[] = [];
  childJobIds: string[] = [];
  /** Environment given to every task of the job (a scheduled workflow's WEFT_* values); not persisted. */
  env: Record<string, string> | undefined;
  /** The latest api.progress report, for the progress webhook. */
  algorithmProgress: { nodeName: string; batchIndex: number; percent: number; message: string } | undefined;
  private dirtyNodes = new Set<string>();
  private flushTimer: NodeJS.Timeout | undefined;
  /** Called (throttled by the caller) whenever something watchers see changed. */
  onChange: (() => void) | undefined;

  constructor(
    readonly record: JobRecord,
    readonly parsed: ParsedPipeline,
    readonly flowInput: Record<string, unknown>,
    /** Outcomes already in the store (after a restart, or copied for a run from a node), by "node#index". */
    readonly recorded: Map<string, TaskRecord>,
  ) {
    for (const name of parsed.order) {
      const p = parsed.byName.get(name)!;
      this.nodes.set(name, {
        parsed: p,
        state: 'pending',
        batch: false,
        items: undefined,
        done: undefined,
        total: 0,
        queued: 0,
        active: 0,
        succeeded: 0,
        failed: 0,
        skipped: 0,
        errors: [],
      });
    }
  }

  get final(): boolean {
    return FINAL_JOB_STATES.has(this.record.state);
  }

  get paused(): boolean {
    return this.record.state === 'paused';
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
      skipped: n.skipped,
      parents: n.parsed.parents,
    };
  }

  /** HKube's progress: (succeeded + failed + skipped tasks) / known tasks; a node not expanded counts as one. */
  progress(): number {
    if (this.record.state === 'completed') return 100;
    let known = 0;
    let finished = 0;
    for (const n of this.nodes.values()) {
      const total = n.items ? Math.max(n.total, 1) : 1;
      known += total;
      finished += n.state === 'skipped' ? total : n.succeeded + n.failed + n.skipped;
    }
    return known === 0 ? 0 : Math.round((finished / known) * 10000) / 100;
  }

  status(): JobStatus {
    const r = this.record;
    return {
      jobId: r.jobId,
      pipelineName: r.pipelineName,
      state: STATE_TO_PB[r.state],
      progress: this.progress(),
      nodes: [...this.nodes.values()].map((n) => this.nodeStatus(n)),
      error: r.error,
      priority: r.priority,
      created: r.created,
      started: r.started,
      ended: r.ended,
      tags: r.tags,
      childJobIds: this.childJobIds,
      parentJobId: r.parentJobId,
    };
  }

  emit(u: JobUpdate): void {
    for (const w of this.watchers) w(u);
  }

  /** Node counts are coalesced: a 10,000-item batch must not mean 10,000 events per watcher. */
  nodeChanged(name: string): void {
    if (this.watchers.size === 0 && !this.onChange) return;
    this.dirtyNodes.add(name);
    this.flushTimer ??= setTimeout(() => this.flushNodes(), NODE_EVENT_INTERVAL_MS);
  }

  flushNodes(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.dirtyNodes.size === 0) return;
    for (const name of this.dirtyNodes) {
      const n = this.nodes.get(name);
      if (n) this.emit({ type: 'node', node: this.nodeStatus(n) });
    }
    this.dirtyNodes.clear();
    this.onChange?.();
  }

  statusChanged(): void {
    this.flushNodes();
    this.emit({ type: 'status', status: this.status() });
    this.onChange?.();
  }

  clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
  }
}
