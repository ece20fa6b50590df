/**
 * The schedule store port: workflows, their instances and executions,
 * backfills and concurrency resources. Async, like the state store, so a
 * networked database can implement it.
 *
 * Contract (what the scheduler relies on; `contracts/schedule-store.contract.ts`
 * checks it against every adapter):
 * - **Immediate writes** (putWorkflow, deleteWorkflow, putBackfill,
 *   putResource, deleteResource, trigger) are committed when they resolve.
 * - **Write-behind writes** (updateWorkflow, updateInstance, putExecution)
 *   may resolve BEFORE they are committed: the SQLite adapter queues them and
 *   commits everything queued in one event-loop turn in one transaction, in
 *   call order. The scheduler changes hundreds of instances a second and
 *   does not wait on each. What it relies on instead:
 *   - every read of this store (get/list) and every immediate write first
 *     applies the queued writes, so the process always reads its own writes,
 *     and the write-behind writes are never reordered after a later write;
 *   - close() commits what is queued;
 *   - a killed process may lose the writes of its last turn only. An instance
 *     then shows its previous committed state, which the scheduler's restart
 *     recovery resumes from like any interrupted one (an execution that was
 *     in flight is queued again, a running pipeline job is reattached); the
 *     trigger that created the instance is never lost: trigger() is immediate.
 * - **trigger() is atomic and idempotent per (workflow, parameter)**: the
 *   instance's creation and the trigger's cursor (the workflow's next natural
 *   slot, or the backfill's next index) commit together or not at all. It
 *   resolves 'created' when it made the instance; 'active' when one was
 *   already there and not final (left unchanged); 'final' when one was
 *   there and final and `replaceFinal` was false (left unchanged). With
 *   `replaceFinal` a final instance is replaced. The cursor moves in every
 *   case, so retrying a trigger, or dying around it, triggers a slot once.
 * - Lists are ordered: workflows and resources by id, instances by workflow
 *   then slot, executions by start (unstarted last) then try, backfills by
 *   creation then id.
 * - close() releases the store; no call may follow it.
 */
import type { InstanceState } from '../domain/schedule.js';
import type { TriggerType } from '../domain/workflow.js';

export interface WorkflowRecord {
  id: string;
  /** The document as applied (JSON form). */
  document: Record<string, unknown>;
  enabled: boolean;
  /** The next slot natural triggering fires. */
  nextSlot: Date;
  created: Date;
  modified: Date;
}

/** One instance per (workflow, parameter): the idempotency key of every trigger. */
export interface InstanceRecord {
  workflowId: string;
  parameter: string;
  /** The slot the parameter stands for. */
  slot: Date;
  state: InstanceState;
  triggerId: string;
  triggerType: TriggerType;
  /** Environment given by the trigger (ad-hoc or backfill). */
  triggerEnv: Record<string, string>;
  tries: number;
  consecutiveFailures: number;
  cost: number;
  lastExitCode: number | null;
  message: string;
  executionId: string;
  /** A queued instance does not start before this. */
  nextAttempt: Date;
  /** When the instance entered its state (state timeouts count from here). */
  stateSince: Date;
  created: Date;
  updated: Date;
}

export interface ExecutionRecord {
  executionId: string;
  workflowId: string;
  parameter: string;
  try: number;
  triggerId: string;
  started: Date | undefined;
  ended: Date | undefined;
  exitCode: number | null;
  error: string;
  /** A log file path, or "job:<id>". */
  log: string;
}

export interface BackfillRecord {
  id: string;
  workflowId: string;
  start: Date;
  end: Date;
  concurrency: number;
  reverse: boolean;
  description: string;
  halted: boolean;
  allTriggered: boolean;
  /** Index of the next slot to trigger, in trigger order. */
  nextIndex: number;
  env: Record<string, string>;
  created: Date;
}

export interface ResourceRecord {
  id: string;
  concurrency: number;
}

export interface InstanceFilter {
  workflowId?: string;
  states?: InstanceState[];
  triggerId?: string;
  /** Only instances not in a final state. */
  active?: boolean;
  limit?: number;
}

/** What {@link ScheduleStore.trigger} did. */
export type TriggerResult = 'created' | 'active' | 'final';

/** See the contract in this module's header. */
export interface ScheduleStore {
  putWorkflow(w: WorkflowRecord): Promise<void>;
  getWorkflow(id: string): Promise<WorkflowRecord | undefined>;
  listWorkflows(): Promise<WorkflowRecord[]>;
  deleteWorkflow(id: string): Promise<boolean>;
  updateWorkflow(id: string, patch: Partial<Pick<WorkflowRecord, 'enabled' | 'nextSlot'>>): Promise<void>;

  /**
   * Creates the instance (workflow, parameter), atomically with moving the
   * trigger's cursor: the workflow's next natural slot, or a backfill's next
   * index. An instance that is still active is left alone ('active'); a final
   * one is replaced only when `replaceFinal` ('final' otherwise). The cursor
   * moves in every case, so a slot is triggered once however often this is
   * retried or the process dies around it.
   */
  trigger(
    inst: InstanceRecord,
    opts: {
      replaceFinal: boolean;
      nextSlot?: Date;
      backfill?: { id: string; nextIndex: number; allTriggered: boolean };
    },
  ): Promise<TriggerResult>;
  updateInstance(
    workflowId: string,
    parameter: string,
    patch: Partial<Omit<InstanceRecord, 'workflowId' | 'parameter' | 'created'>>,
  ): Promise<void>;
  getInstance(workflowId: string, parameter: string): Promise<InstanceRecord | undefined>;
  listInstances(filter: InstanceFilter): Promise<InstanceRecord[]>;

  putExecution(e: ExecutionRecord): Promise<void>;
  listExecutions(workflowId: string, parameter: string): Promise<ExecutionRecord[]>;

  putBackfill(b: BackfillRecord): Promise<void>;
  getBackfill(id: string): Promise<BackfillRecord | undefined>;
  listBackfills(): Promise<BackfillRecord[]>;

  putResource(r: ResourceRecord): Promise<void>;
  getResource(id: string): Promise<ResourceRecord | undefined>;
  listResources(): Promise<ResourceRecord[]>;
  deleteResource(id: string): Promise<boolean>;

  close(): Promise<void>;
}
