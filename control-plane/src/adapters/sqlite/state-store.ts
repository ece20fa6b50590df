import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type {
  AlgorithmRecord,
  JobFilter,
  JobRecord,
  JobState,
  PipelineRecord,
  StateStore,
  TaskRecord,
} from '../../ports/state-store.js';

// Portable SQL on purpose (TEXT/INTEGER/BLOB, ON CONFLICT DO NOTHING, times as
// epoch milliseconds) so the PostgreSQL adapter can reuse the schema.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS algorithms (
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  created INTEGER NOT NULL,
  modified INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pipelines (
  name TEXT PRIMARY KEY,
  descriptor TEXT NOT NULL,
  created INTEGER NOT NULL,
  modified INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY,
  pipeline_name TEXT NOT NULL,
  descriptor TEXT NOT NULL,
  flow_input BLOB NOT NULL,
  state TEXT NOT NULL,
  priority INTEGER NOT NULL,
  tags TEXT NOT NULL,
  error TEXT NOT NULL,
  created INTEGER NOT NULL,
  started INTEGER,
  ended INTEGER,
  nodes TEXT,
  parent_job_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_pipeline ON jobs (pipeline_name, created);
CREATE TABLE IF NOT EXISTS tasks (
  job_id TEXT NOT NULL,
  node_name TEXT NOT NULL,
  batch_index INTEGER NOT NULL,
  task_id TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  result_inline BLOB,
  result_key TEXT,
  result_size INTEGER NOT NULL,
  meta TEXT NOT NULL,
  error TEXT,
  started INTEGER,
  ended INTEGER NOT NULL,
  PRIMARY KEY (job_id, node_name, batch_index)
);
`;

interface JobRow {
  job_id: string;
  pipeline_name: string;
  descriptor: string;
  flow_input: Buffer;
  state: string;
  priority: number;
  tags: string;
  error: string;
  created: number;
  started: number | null;
  ended: number | null;
  nodes: string | null;
  parent_job_id: string;
}

interface TaskRow {
  job_id: string;
  node_name: string;
  batch_index: number;
  task_id: string;
  state: string;
  attempts: number;
  result_inline: Buffer | null;
  result_key: string | null;
  result_size: number;
  meta: string;
  error: string | null;
  started: number | null;
  ended: number;
}

function taskRow(t: TaskRecord): Record<string, unknown> {
  return {
    job_id: t.jobId,
    node_name: t.nodeName,
    batch_index: t.batchIndex,
    task_id: t.taskId,
    state: t.state,
    attempts: t.attempts,
    result_inline: t.resultInline ?? null,
    result_key: t.resultKey ?? null,
    result_size: t.resultSize,
    meta: JSON.stringify(t.meta),
    error: t.error === undefined ? null : JSON.stringify(t.error),
    started: t.started?.getTime() ?? null,
    ended: t.ended.getTime(),
  };
}

const toDate = (ms: number | null): Date | undefined => (ms === null ? undefined : new Date(ms));

function jobFromRow(r: JobRow): JobRecord {
  return {
    jobId: r.job_id,
    pipelineName: r.pipeline_name,
    descriptor: JSON.parse(r.descriptor) as Record<string, unknown>,
    flowInput: r.flow_input,
    state: r.state as JobState,
    priority: r.priority,
    tags: JSON.parse(r.tags) as string[],
    error: r.error,
    created: new Date(r.created),
    started: toDate(r.started),
    ended: toDate(r.ended),
    nodes: r.nodes === null ? undefined : (JSON.parse(r.nodes) as Record<string, unknown>[]),
    parentJobId: r.parent_job_id,
  };
}

function taskFromRow(r: TaskRow): TaskRecord {
  return {
    jobId: r.job_id,
    nodeName: r.node_name,
    batchIndex: r.batch_index,
    taskId: r.task_id,
    state: r.state as TaskRecord['state'],
    attempts: r.attempts,
    resultInline: r.result_inline ?? undefined,
    resultKey: r.result_key ?? undefined,
    resultSize: r.result_size,
    meta: JSON.parse(r.meta) as TaskRecord['meta'],
    error: r.error === null ? undefined : (JSON.parse(r.error) as TaskRecord['error']),
    started: toDate(r.started),
    ended: new Date(r.ended),
  };
}

/**
 * Opens (creating) a SQLite file the way every weft store uses it: WAL, so
 * readers never block the writer and a killed process loses nothing
 * committed; synchronous=NORMAL; and a busy timeout for the other connection.
 */
export function openSqlite(file: string): Database.Database {
  mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  return db;
}

/**
 * The state store in a SQLite file (WAL mode). Keeps the contract of
 * ports/state-store.ts: every write is committed before its promise resolves
 * (recordTask after its turn's batch transaction). Commits are durable
 * against a killed process; with synchronous=NORMAL a power loss may drop the
 * last transactions, which the restart logic tolerates (tasks simply run
 * again).
 */
export class SqliteStateStore implements StateStore {
  private readonly db: Database.Database;
  private readonly stmts;
  private pendingTasks: {
    row: Record<string, unknown>;
    resolve: (inserted: boolean) => void;
    reject: (err: unknown) => void;
  }[] = [];

  constructor(file: string) {
    this.db = openSqlite(file);
    this.db.exec(SCHEMA);
    // Data directories made before jobs.nodes existed.
    const columns = this.db.prepare(`PRAGMA table_info(jobs)`).all() as { name: string }[];
    if (!columns.some((c) => c.name === 'nodes')) this.db.exec(`ALTER TABLE jobs ADD COLUMN nodes TEXT`);
    if (!columns.some((c) => c.name === 'parent_job_id')) {
      this.db.exec(`ALTER TABLE jobs ADD COLUMN parent_job_id TEXT NOT NULL DEFAULT ''`);
    }
    const db = this.db;
    this.stmts = {
      putAlgorithm: db.prepare(
        `INSERT INTO algorithms (name, spec, created, modified) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, modified = excluded.modified`,
      ),
      getAlgorithm: db.prepare(`SELECT * FROM algorithms WHERE name = ?`),
      listAlgorithms: db.prepare(`SELECT * FROM algorithms ORDER BY name`),
      deleteAlgorithm: db.prepare(`DELETE FROM algorithms WHERE name = ?`),
      putPipeline: db.prepare(
        `INSERT INTO pipelines (name, descriptor, created, modified) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET descriptor = excluded.descriptor, modified = excluded.modified`,
      ),
      getPipeline: db.prepare(`SELECT * FROM pipelines WHERE name = ?`),
      listPipelines: db.prepare(`SELECT * FROM pipelines ORDER BY name`),
      deletePipeline: db.prepare(`DELETE FROM pipelines WHERE name = ?`),
      createJob: db.prepare(
        `INSERT INTO jobs (job_id, pipeline_name, descriptor, flow_input, state, priority, tags, error, created, started, ended, nodes, parent_job_id)
         VALUES (@job_id, @pipeline_name, @descriptor, @flow_input, @state, @priority, @tags, @error, @created, @started, @ended, @nodes, @parent_job_id)`,
      ),
      getJob: db.prepare(`SELECT * FROM jobs WHERE job_id = ?`),
      recordTask: db.prepare(
        `INSERT INTO tasks (job_id, node_name, batch_index, task_id, state, attempts, result_inline, result_key, result_size, meta, error, started, ended)
         VALUES (@job_id, @node_name, @batch_index, @task_id, @state, @attempts, @result_inline, @result_key, @result_size, @meta, @error, @started, @ended)
         ON CONFLICT (job_id, node_name, batch_index) DO NOTHING`,
      ),
      listTasks: db.prepare(`SELECT * FROM tasks WHERE job_id = ? ORDER BY node_name, batch_index`),
    };
  }

  putAlgorithm(name: string, spec: Record<string, unknown>): Promise<AlgorithmRecord> {
    const now = Date.now();
    this.stmts.putAlgorithm.run(name, JSON.stringify(spec), now, now);
    return this.getAlgorithm(name).then((r) => r!);
  }

  getAlgorithm(name: string): Promise<AlgorithmRecord | undefined> {
    const r = this.stmts.getAlgorithm.get(name) as
      { name: string; spec: string; created: number; modified: number } | undefined;
    return Promise.resolve(
      r && {
        name: r.name,
        spec: JSON.parse(r.spec) as Record<string, unknown>,
        created: new Date(r.created),
        modified: new Date(r.modified),
      },
    );
  }

  listAlgorithms(): Promise<AlgorithmRecord[]> {
    const rows = this.stmts.listAlgorithms.all() as { name: string; spec: string; created: number; modified: number }[];
    return Promise.resolve(
      rows.map((r) => ({
        name: r.name,
        spec: JSON.parse(r.spec) as Record<string, unknown>,
        created: new Date(r.created),
        modified: new Date(r.modified),
      })),
    );
  }

  deleteAlgorithm(name: string): Promise<boolean> {
    return Promise.resolve(this.stmts.deleteAlgorithm.run(name).changes > 0);
  }

  putPipeline(name: string, descriptor: Record<string, unknown>): Promise<PipelineRecord> {
    const now = Date.now();
    this.stmts.putPipeline.run(name, JSON.stringify(descriptor), now, now);
    return this.getPipeline(name).then((r) => r!);
  }

  getPipeline(name: string): Promise<PipelineRecord | undefined> {
    const r = this.stmts.getPipeline.get(name) as
      { name: string; descriptor: string; created: number; modified: number } | undefined;
    return Promise.resolve(
      r && {
        name: r.name,
        descriptor: JSON.parse(r.descriptor) as Record<string, unknown>,
        created: new Date(r.created),
        modified: new Date(r.modified),
      },
    );
  }

  listPipelines(): Promise<PipelineRecord[]> {
    const rows = this.stmts.listPipelines.all() as {
      name: string;
      descriptor: string;
      created: number;
      modified: number;
    }[];
    return Promise.resolve(
      rows.map((r) => ({
        name: r.name,
        descriptor: JSON.parse(r.descriptor) as Record<string, unknown>,
        created: new Date(r.created),
        modified: new Date(r.modified),
      })),
    );
  }

  deletePipeline(name: string): Promise<boolean> {
    return Promise.resolve(this.stmts.deletePipeline.run(name).changes > 0);
  }

  createJob(job: JobRecord): Promise<void> {
    try {
      this.insertJob(job);
    } catch (err) {
      // A duplicate id (or any refused row) is a rejected promise, as the port promises, not a throw.
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return Promise.resolve();
  }

  private insertJob(job: JobRecord): void {
    this.stmts.createJob.run({
      job_id: job.jobId,
      pipeline_name: job.pipelineName,
      descriptor: JSON.stringify(job.descriptor),
      flow_input: job.flowInput,
      state: job.state,
      priority: job.priority,
      tags: JSON.stringify(job.tags),
      error: job.error,
      created: job.created.getTime(),
      started: job.started?.getTime() ?? null,
      ended: job.ended?.getTime() ?? null,
      nodes: job.nodes === undefined ? null : JSON.stringify(job.nodes),
      parent_job_id: job.parentJobId,
    });
  }

  updateJob(
    jobId: string,
    patch: Partial<Pick<JobRecord, 'state' | 'error' | 'started' | 'ended' | 'nodes'>>,
  ): Promise<void> {
    const sets: string[] = [];
    const args: (string | number | null)[] = [];
    const set = (column: string, value: string | number): void => {
      sets.push(`${column} = ?`);
      args.push(value);
    };
    if (patch.state !== undefined) set('state', patch.state);
    if (patch.error !== undefined) set('error', patch.error);
    if (patch.started !== undefined) set('started', patch.started.getTime());
    if (patch.ended !== undefined) set('ended', patch.ended.getTime());
    if (patch.nodes !== undefined) set('nodes', JSON.stringify(patch.nodes));
    if (sets.length > 0) this.db.prepare(`UPDATE jobs SET ${sets.join(', ')} WHERE job_id = ?`).run(...args, jobId);
    return Promise.resolve();
  }

  getJob(jobId: string): Promise<JobRecord | undefined> {
    const r = this.stmts.getJob.get(jobId) as JobRow | undefined;
    return Promise.resolve(r && jobFromRow(r));
  }

  listJobs(filter: JobFilter): Promise<JobRecord[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (filter.pipelineName) {
      where.push('pipeline_name = ?');
      args.push(filter.pipelineName);
    }
    if (filter.tag) {
      // Tags are stored as a JSON array of strings; match the quoted element.
      where.push(`tags LIKE ? ESCAPE '\\'`);
      args.push(`%${JSON.stringify(filter.tag).replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
    }
    if (filter.from) {
      where.push('created >= ?');
      args.push(filter.from.getTime());
    }
    if (filter.to) {
      where.push('created < ?');
      args.push(filter.to.getTime());
    }
    if (filter.parentJobId) {
      where.push('parent_job_id = ?');
      args.push(filter.parentJobId);
    }
    if (filter.endedBefore) {
      where.push('ended IS NOT NULL AND ended < ?');
      args.push(filter.endedBefore.getTime());
    }
    if (filter.states && filter.states.length > 0) {
      where.push(`state IN (${filter.states.map(() => '?').join(', ')})`);
      args.push(...filter.states);
    }
    const sql =
      `SELECT * FROM jobs ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created DESC` +
      (filter.limit ? ` LIMIT ${Math.floor(filter.limit)}` : '');
    const rows = this.db.prepare(sql).all(...args) as JobRow[];
    return Promise.resolve(rows.map(jobFromRow));
  }

  /**
   * Task records that arrive in the same event-loop turn are written in one
   * transaction: a busy batch finishes hundreds of tasks per turn, and a
   * commit per row would cost more than everything else the control plane
   * does for a task.
   */
  recordTask(t: TaskRecord): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.pendingTasks.push({ row: taskRow(t), resolve, reject });
      if (this.pendingTasks.length === 1) setImmediate(() => this.flushTasks());
    });
  }

  private flushTasks(): void {
    const batch = this.pendingTasks;
    this.pendingTasks = [];
    if (batch.length === 0) return;
    try {
      const inserted = this.db.transaction(() => batch.map((b) => this.stmts.recordTask.run(b.row).changes > 0))();
      batch.forEach((b, i) => b.resolve(inserted[i]!));
    } catch {
      // One bad row must not fail the others that shared its transaction.
      for (const b of batch) {
        try {
          b.resolve(this.stmts.recordTask.run(b.row).changes > 0);
        } catch (err) {
          b.reject(err);
        }
      }
    }
  }

  listTasks(jobId: string): Promise<TaskRecord[]> {
    return Promise.resolve((this.stmts.listTasks.all(jobId) as TaskRow[]).map(taskFromRow));
  }

  deleteJob(jobId: string): Promise<void> {
    this.flushTasks();
    this.db.transaction(() => {
      this.db.prepare(`DELETE FROM tasks WHERE job_id = ?`).run(jobId);
      this.db.prepare(`DELETE FROM jobs WHERE job_id = ?`).run(jobId);
    })();
    return Promise.resolve();
  }

  dropTaskResult(jobId: string, nodeName: string): Promise<void> {
    this.flushTasks();
    this.db
      .prepare(
        `UPDATE tasks SET result_key = NULL, result_inline = NULL, meta = '{"expired":{"type":"expired","size":0}}' WHERE job_id = ? AND node_name = ?`,
      )
      .run(jobId, nodeName);
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.flushTasks();
    this.db.close();
    return Promise.resolve();
  }
}
