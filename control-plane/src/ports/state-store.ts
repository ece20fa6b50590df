/**
 * The state store port: everything a running job needs to survive a restart
 * (algorithms, pipelines, jobs and their task outcomes). Async so a networked
 * backend (PostgreSQL) can implement it; the SQLite adapter answers
 * synchronously.
 *
 * Contract (what the job engine relies on; `contracts/state-store.contract.ts`
 * checks it against every adapter):
 * - **A resolved write is committed.** When a write's promise resolves, the
 *   change survives a killed control plane and a reopen of the store. (An
 *   adapter may trade the last commits for speed on power loss, as SQLite's
 *   synchronous=NORMAL does: task records are then simply missing and the
 *   tasks run again, which "at-least-once execution" tolerates.)
 * - **Reads see every resolved write** of this store (read-your-writes in the
 *   process); list order is stated per method.
 * - **recordTask: the first record wins.** One outcome per (job, node, batch
 *   index). The first call inserts and resolves true; any later call for the
 *   same key changes nothing and resolves false, whatever it carries. This is
 *   what makes recording exactly-once over at-least-once execution: a task
 *   that ran twice (a lost worker, a restart) is recorded once.
 * - recordTask may batch: the SQLite adapter commits all records of one
 *   event-loop turn in one transaction and resolves each call only after that
 *   commit, so awaiting recordTask still means "committed". A bad row fails
 *   only its own call.
 * - deleteJob, dropTaskResult and close apply every recordTask called before
 *   them first (no record is lost or resurrected around retention).
 * - putAlgorithm/putPipeline are upserts: `created` is kept, `modified` moves.
 * - close() releases the store; no call may follow it.
 */

/** Job states, as stored. */
export type JobState = 'pending' | 'active' | 'paused' | 'completed' | 'failed' | 'stopped';

export const FINAL_JOB_STATES: ReadonlySet<JobState> = new Set(['completed', 'failed', 'stopped']);

export interface AlgorithmRecord {
  name: string;
  /** The spec as the AlgorithmSpec message's JSON form. */
  spec: Record<string, unknown>;
  created: Date;
  modified: Date;
}

export interface PipelineRecord {
  name: string;
  /** The descriptor as the PipelineDescriptor message's JSON form. */
  descriptor: Record<string, unknown>;
  created: Date;
  modified: Date;
}

export interface JobRecord {
  jobId: string;
  pipelineName: string;
  /** The descriptor the job runs (flowInput excluded: see flowInput). */
  descriptor: Record<string, unknown>;
  /** msgpack of the flowInput object. */
  flowInput: Buffer;
  state: JobState;
  priority: number;
  tags: string[];
  error: string;
  created: Date;
  started: Date | undefined;
  ended: Date | undefined;
  /**
   * Each node's final state and counts (the NodeStatus JSON form), written
   * when the job ends: task rows alone cannot tell a batch's size or a node
   * that never ran.
   */
  nodes: Record<string, unknown>[] | undefined;
  /** The job this one came from: the algorithm that started it, or the job it reruns. */
  parentJobId: string;
}

/** A stored task outcome; one per (job, node, batch index), written once. */
export interface TaskRecord {
  jobId: string;
  nodeName: string;
  /** -1 for a node that is not a batch. */
  batchIndex: number;
  taskId: string;
  state: 'succeeded' | 'failed';
  attempts: number;
  /** msgpack result when it travelled inline. */
  resultInline: Buffer | undefined;
  /** Blob key when the result is in blob storage. */
  resultKey: string | undefined;
  resultSize: number;
  /** Shape metadata of the result, by save path. */
  meta: Record<string, { type: string; size: number }>;
  /** TaskFailure as JSON when state is failed. */
  error: { type: string; message: string; stack: string; crash: boolean; exitCode?: number } | undefined;
  started: Date | undefined;
  ended: Date;
}

export interface JobFilter {
  pipelineName?: string;
  states?: JobState[];
  limit?: number;
  tag?: string;
  /** Created at or after. */
  from?: Date;
  /** Created before. */
  to?: Date;
  parentJobId?: string;
  /** Ended before this (for retention). */
  endedBefore?: Date;
}

/** See the contract in this module's header. */
export interface StateStore {
  putAlgorithm(name: string, spec: Record<string, unknown>): Promise<AlgorithmRecord>;
  getAlgorithm(name: string): Promise<AlgorithmRecord | undefined>;
  /** By name. */
  listAlgorithms(): Promise<AlgorithmRecord[]>;
  deleteAlgorithm(name: string): Promise<boolean>;

  putPipeline(name: string, descriptor: Record<string, unknown>): Promise<PipelineRecord>;
  getPipeline(name: string): Promise<PipelineRecord | undefined>;
  /** By name. */
  listPipelines(): Promise<PipelineRecord[]>;
  deletePipeline(name: string): Promise<boolean>;

  createJob(job: JobRecord): Promise<void>;
  updateJob(
    jobId: string,
    patch: Partial<Pick<JobRecord, 'state' | 'error' | 'started' | 'ended' | 'nodes'>>,
  ): Promise<void>;
  getJob(jobId: string): Promise<JobRecord | undefined>;
  /** Newest first (by created); every filter field narrows the result. */
  listJobs(filter: JobFilter): Promise<JobRecord[]>;

  /** Records a task outcome. Returns false when that task was already recorded (the first record wins). */
  recordTask(task: TaskRecord): Promise<boolean>;
  /** By node name, then batch index. */
  listTasks(jobId: string): Promise<TaskRecord[]>;
  /** Forgets a job and its task records (retention). */
  deleteJob(jobId: string): Promise<void>;
  /** Marks a task's stored result as deleted (retention of intermediate results). */
  dropTaskResult(jobId: string, nodeName: string): Promise<void>;

  close(): Promise<void>;
}
