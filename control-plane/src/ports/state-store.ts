/**
 * The state store port. Everything a running job needs to survive a restart
 * lives behind this interface. The methods are async so a networked backend
 * (PostgreSQL) can implement it; the SQLite adapter answers synchronously.
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

export interface StateStore {
  putAlgorithm(name: string, spec: Record<string, unknown>): Promise<AlgorithmRecord>;
  getAlgorithm(name: string): Promise<AlgorithmRecord | undefined>;
  listAlgorithms(): Promise<AlgorithmRecord[]>;
  deleteAlgorithm(name: string): Promise<boolean>;

  putPipeline(name: string, descriptor: Record<string, unknown>): Promise<PipelineRecord>;
  getPipeline(name: string): Promise<PipelineRecord | undefined>;
  listPipelines(): Promise<PipelineRecord[]>;
  deletePipeline(name: string): Promise<boolean>;

  createJob(job: JobRecord): Promise<void>;
  updateJob(
    jobId: string,
    patch: Partial<Pick<JobRecord, 'state' | 'error' | 'started' | 'ended' | 'nodes'>>,
  ): Promise<void>;
  getJob(jobId: string): Promise<JobRecord | undefined>;
  listJobs(filter: JobFilter): Promise<JobRecord[]>;

  /** Records a task outcome. Returns false when that task was already recorded (the first record wins). */
  recordTask(task: TaskRecord): Promise<boolean>;
  listTasks(jobId: string): Promise<TaskRecord[]>;
  /** Forgets a job and its task records (retention). */
  deleteJob(jobId: string): Promise<void>;
  /** Marks a task's stored result as deleted (retention of intermediate results). */
  dropTaskResult(jobId: string, nodeName: string): Promise<void>;

  close(): Promise<void>;
}
