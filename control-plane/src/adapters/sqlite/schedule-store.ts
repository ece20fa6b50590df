import type Database from 'better-sqlite3';
import type { InstanceState } from '../../domain/schedule.js';
import type { TriggerType } from '../../domain/workflow.js';
import type {
  BackfillRecord,
  ExecutionRecord,
  InstanceFilter,
  InstanceRecord,
  ResourceRecord,
  ScheduleStore,
  TriggerResult,
  WorkflowRecord,
} from '../../ports/schedule-store.js';
import { openSqlite } from './state-store.js';

// Same conventions as the job store: portable SQL, times as epoch ms.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS workflows (
  id TEXT PRIMARY KEY,
  document TEXT NOT NULL,
  enabled INTEGER NOT NULL,
  next_slot INTEGER NOT NULL,
  created INTEGER NOT NULL,
  modified INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
  workflow_id TEXT NOT NULL,
  parameter TEXT NOT NULL,
  slot INTEGER NOT NULL,
  state TEXT NOT NULL,
  trigger_id TEXT NOT NULL,
  trigger_type TEXT NOT NULL,
  trigger_env TEXT NOT NULL,
  tries INTEGER NOT NULL,
  consecutive_failures INTEGER NOT NULL,
  cost REAL NOT NULL,
  last_exit_code INTEGER,
  message TEXT NOT NULL,
  execution_id TEXT NOT NULL,
  next_attempt INTEGER NOT NULL,
  state_since INTEGER NOT NULL,
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  PRIMARY KEY (workflow_id, parameter)
);
CREATE INDEX IF NOT EXISTS instances_state ON instances (state);
CREATE INDEX IF NOT EXISTS instances_trigger ON instances (trigger_id);
CREATE TABLE IF NOT EXISTS executions (
  execution_id TEXT PRIMARY KEY,
  workflow_id TEXT NOT NULL,
  parameter TEXT NOT NULL,
  try INTEGER NOT NULL,
  trigger_id TEXT NOT NULL,
  started INTEGER,
  ended INTEGER,
  exit_code INTEGER,
  error TEXT NOT NULL,
  log TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_instance ON executions (workflow_id, parameter);
CREATE TABLE IF NOT EXISTS backfills (
  id TEXT PRIMARY KEY,
  workflow_id TEXT NOT NULL,
  start INTEGER NOT NULL,
  end_ INTEGER NOT NULL,
  concurrency INTEGER NOT NULL,
  reverse INTEGER NOT NULL,
  description TEXT NOT NULL,
  halted INTEGER NOT NULL,
  all_triggered INTEGER NOT NULL,
  next_index INTEGER NOT NULL,
  env TEXT NOT NULL,
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS resources (
  id TEXT PRIMARY KEY,
  concurrency INTEGER NOT NULL
);
`;

const FINAL = `('done', 'error')`;

interface WorkflowRow {
  id: string;
  document: string;
  enabled: number;
  next_slot: number;
  created: number;
  modified: number;
}

interface InstanceRow {
  workflow_id: string;
  parameter: string;
  slot: number;
  state: string;
  trigger_id: string;
  trigger_type: string;
  trigger_env: string;
  tries: number;
  consecutive_failures: number;
  cost: number;
  last_exit_code: number | null;
  message: string;
  execution_id: string;
  next_attempt: number;
  state_since: number;
  created: number;
  updated: number;
}

interface ExecutionRow {
  execution_id: string;
  workflow_id: string;
  parameter: string;
  try: number;
  trigger_id: string;
  started: number | null;
  ended: number | null;
  exit_code: number | null;
  error: string;
  log: string;
}

interface BackfillRow {
  id: string;
  workflow_id: string;
  start: number;
  end_: number;
  concurrency: number;
  reverse: number;
  description: string;
  halted: number;
  all_triggered: number;
  next_index: number;
  env: string;
  created: number;
}

const INSTANCE_COLUMNS: Record<string, string> = {
  slot: 'slot',
  state: 'state',
  triggerId: 'trigger_id',
  triggerType: 'trigger_type',
  triggerEnv: 'trigger_env',
  tries: 'tries',
  consecutiveFailures: 'consecutive_failures',
  cost: 'cost',
  lastExitCode: 'last_exit_code',
  message: 'message',
  executionId: 'execution_id',
  nextAttempt: 'next_attempt',
  stateSince: 'state_since',
  updated: 'updated',
};

function sqlValue(v: unknown): unknown {
  if (v instanceof Date) return v.getTime();
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (v !== null && typeof v === 'object') return JSON.stringify(v);
  return v;
}

function instanceRow(i: InstanceRecord): InstanceRow {
  return {
    workflow_id: i.workflowId,
    parameter: i.parameter,
    slot: i.slot.getTime(),
    state: i.state,
    trigger_id: i.triggerId,
    trigger_type: i.triggerType,
    trigger_env: JSON.stringify(i.triggerEnv),
    tries: i.tries,
    consecutive_failures: i.consecutiveFailures,
    cost: i.cost,
    last_exit_code: i.lastExitCode,
    message: i.message,
    execution_id: i.executionId,
    next_attempt: i.nextAttempt.getTime(),
    state_since: i.stateSince.getTime(),
    created: i.created.getTime(),
    updated: i.updated.getTime(),
  };
}

function fromInstanceRow(r: InstanceRow): InstanceRecord {
  return {
    workflowId: r.workflow_id,
    parameter: r.parameter,
    slot: new Date(r.slot),
    state: r.state as InstanceState,
    triggerId: r.trigger_id,
    triggerType: r.trigger_type as TriggerType,
    triggerEnv: JSON.parse(r.trigger_env) as Record<string, string>,
    tries: r.tries,
    consecutiveFailures: r.consecutive_failures,
    cost: r.cost,
    lastExitCode: r.last_exit_code,
    message: r.message,
    executionId: r.execution_id,
    nextAttempt: new Date(r.next_attempt),
    stateSince: new Date(r.state_since),
    created: new Date(r.created),
    updated: new Date(r.updated),
  };
}

function fromWorkflowRow(r: WorkflowRow): WorkflowRecord {
  return {
    id: r.id,
    document: JSON.parse(r.document) as Record<string, unknown>,
    enabled: r.enabled === 1,
    nextSlot: new Date(r.next_slot),
    created: new Date(r.created),
    modified: new Date(r.modified),
  };
}

function fromBackfillRow(r: BackfillRow): BackfillRecord {
  return {
    id: r.id,
    workflowId: r.workflow_id,
    start: new Date(r.start),
    end: new Date(r.end_),
    concurrency: r.concurrency,
    reverse: r.reverse === 1,
    description: r.description,
    halted: r.halted === 1,
    allTriggered: r.all_triggered === 1,
    nextIndex: r.next_index,
    env: JSON.parse(r.env) as Record<string, string>,
    created: new Date(r.created),
  };
}

function fromExecutionRow(r: ExecutionRow): ExecutionRecord {
  return {
    executionId: r.execution_id,
    workflowId: r.workflow_id,
    parameter: r.parameter,
    try: r.try,
    triggerId: r.trigger_id,
    started: r.started === null ? undefined : new Date(r.started),
    ended: r.ended === null ? undefined : new Date(r.ended),
    exitCode: r.exit_code,
    error: r.error,
    log: r.log,
  };
}

/**
 * Keeps the contract of ports/schedule-store.ts: updateWorkflow,
 * updateInstance and putExecution are write-behind (see `pending`), every
 * other write commits before it resolves.
 *
 * Schedule state in the same SQLite file as the jobs, on its own connection
 * (WAL lets both work; better-sqlite3 runs each transaction to completion
 * synchronously, so they never contend within the process).
 */
export class SqliteScheduleStore implements ScheduleStore {
  private readonly db: Database.Database;
  private readonly s;
  /**
   * Instance and execution updates of one event-loop turn, committed in one
   * transaction: a busy scheduler changes hundreds of instances per second,
   * and a commit per change would cost more than the changes. Reads and
   * triggers flush first, so nothing reads stale data and a trigger's
   * cursor move still commits with its instance.
   */
  private pending: (() => void)[] = [];
  private flushScheduled = false;
  private readonly updateStatements = new Map<string, Database.Statement>();

  constructor(file: string) {
    this.db = openSqlite(file);
    this.db.exec(SCHEMA);
    const db = this.db;
    this.s = {
      putWorkflow: db.prepare(
        `INSERT INTO workflows (id, document, enabled, next_slot, created, modified)
         VALUES (@id, @document, @enabled, @next_slot, @created, @modified)
         ON CONFLICT (id) DO UPDATE SET document = excluded.document, enabled = excluded.enabled,
           next_slot = excluded.next_slot, modified = excluded.modified`,
      ),
      getWorkflow: db.prepare(`SELECT * FROM workflows WHERE id = ?`),
      listWorkflows: db.prepare(`SELECT * FROM workflows ORDER BY id`),
      deleteWorkflow: db.prepare(`DELETE FROM workflows WHERE id = ?`),
      setNextSlot: db.prepare(`UPDATE workflows SET next_slot = ? WHERE id = ?`),
      setEnabled: db.prepare(`UPDATE workflows SET enabled = ? WHERE id = ?`),
      getInstance: db.prepare(`SELECT * FROM instances WHERE workflow_id = ? AND parameter = ?`),
      insertInstance: db.prepare(
        `INSERT INTO instances (workflow_id, parameter, slot, state, trigger_id, trigger_type, trigger_env, tries,
           consecutive_failures, cost, last_exit_code, message, execution_id, next_attempt, state_since, created, updated)
         VALUES (@workflow_id, @parameter, @slot, @state, @trigger_id, @trigger_type, @trigger_env, @tries,
           @consecutive_failures, @cost, @last_exit_code, @message, @execution_id, @next_attempt, @state_since, @created, @updated)
         ON CONFLICT (workflow_id, parameter) DO NOTHING`,
      ),
      deleteFinalInstance: db.prepare(
        `DELETE FROM instances WHERE workflow_id = ? AND parameter = ? AND state IN ${FINAL}`,
      ),
      setBackfillCursor: db.prepare(`UPDATE backfills SET next_index = ?, all_triggered = ? WHERE id = ?`),
      putExecution: db.prepare(
        `INSERT INTO executions (execution_id, workflow_id, parameter, try, trigger_id, started, ended, exit_code, error, log)
         VALUES (@execution_id, @workflow_id, @parameter, @try, @trigger_id, @started, @ended, @exit_code, @error, @log)
         ON CONFLICT (execution_id) DO UPDATE SET started = excluded.started, ended = excluded.ended,
           exit_code = excluded.exit_code, error = excluded.error, log = excluded.log`,
      ),
      listExecutions: db.prepare(
        `SELECT * FROM executions WHERE workflow_id = ? AND parameter = ? ORDER BY started IS NULL, started, try`,
      ),
      putBackfill: db.prepare(
        `INSERT INTO backfills (id, workflow_id, start, end_, concurrency, reverse, description, halted, all_triggered, next_index, env, created)
         VALUES (@id, @workflow_id, @start, @end_, @concurrency, @reverse, @description, @halted, @all_triggered, @next_index, @env, @created)
         ON CONFLICT (id) DO UPDATE SET concurrency = excluded.concurrency, description = excluded.description,
           halted = excluded.halted, all_triggered = excluded.all_triggered, next_index = excluded.next_index`,
      ),
      getBackfill: db.prepare(`SELECT * FROM backfills WHERE id = ?`),
      listBackfills: db.prepare(`SELECT * FROM backfills ORDER BY created, id`),
      putResource: db.prepare(
        `INSERT INTO resources (id, concurrency) VALUES (?, ?)
         ON CONFLICT (id) DO UPDATE SET concurrency = excluded.concurrency`,
      ),
      getResource: db.prepare(`SELECT * FROM resources WHERE id = ?`),
      listResources: db.prepare(`SELECT * FROM resources ORDER BY id`),
      deleteResource: db.prepare(`DELETE FROM resources WHERE id = ?`),
    };
  }

  private defer(op: () => void): Promise<void> {
    this.pending.push(op);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return Promise.resolve();
  }

  /** Commits the deferred writes now. */
  flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const ops = this.pending;
    this.pending = [];
    this.db.transaction(() => {
      for (const op of ops) op();
    })();
  }

  putWorkflow(w: WorkflowRecord): Promise<void> {
    this.flush();
    this.s.putWorkflow.run({
      id: w.id,
      document: JSON.stringify(w.document),
      enabled: w.enabled ? 1 : 0,
      next_slot: w.nextSlot.getTime(),
      created: w.created.getTime(),
      modified: w.modified.getTime(),
    });
    return Promise.resolve();
  }

  getWorkflow(id: string): Promise<WorkflowRecord | undefined> {
    this.flush();
    const r = this.s.getWorkflow.get(id) as WorkflowRow | undefined;
    return Promise.resolve(r ? fromWorkflowRow(r) : undefined);
  }

  listWorkflows(): Promise<WorkflowRecord[]> {
    this.flush();
    return Promise.resolve((this.s.listWorkflows.all() as WorkflowRow[]).map(fromWorkflowRow));
  }

  deleteWorkflow(id: string): Promise<boolean> {
    this.flush();
    return Promise.resolve(this.s.deleteWorkflow.run(id).changes > 0);
  }

  updateWorkflow(id: string, patch: Partial<Pick<WorkflowRecord, 'enabled' | 'nextSlot'>>): Promise<void> {
    return this.defer(() => {
      if (patch.enabled !== undefined) this.s.setEnabled.run(patch.enabled ? 1 : 0, id);
      if (patch.nextSlot !== undefined) this.s.setNextSlot.run(patch.nextSlot.getTime(), id);
    });
  }

  trigger(
    inst: InstanceRecord,
    opts: {
      replaceFinal: boolean;
      nextSlot?: Date;
      backfill?: { id: string; nextIndex: number; allTriggered: boolean };
    },
  ): Promise<TriggerResult> {
    this.flush();
    const result = this.db.transaction((): TriggerResult => {
      if (opts.nextSlot) this.s.setNextSlot.run(opts.nextSlot.getTime(), inst.workflowId);
      if (opts.backfill) {
        const b = opts.backfill;
        this.s.setBackfillCursor.run(b.nextIndex, b.allTriggered ? 1 : 0, b.id);
      }
      if (opts.replaceFinal) this.s.deleteFinalInstance.run(inst.workflowId, inst.parameter);
      if (this.s.insertInstance.run(instanceRow(inst)).changes > 0) return 'created';
      const existing = this.s.getInstance.get(inst.workflowId, inst.parameter) as InstanceRow;
      return existing.state === 'done' || existing.state === 'error' ? 'final' : 'active';
    })();
    return Promise.resolve(result);
  }

  updateInstance(
    workflowId: string,
    parameter: string,
    patch: Partial<Omit<InstanceRecord, 'workflowId' | 'parameter' | 'created'>>,
  ): Promise<void> {
    const sets: string[] = [];
    const values: unknown[] = [];
    for (const [k, v] of Object.entries(patch)) {
      const col = INSTANCE_COLUMNS[k];
      if (!col) continue;
      sets.push(`${col} = ?`);
      values.push(sqlValue(v));
    }
    if (sets.length === 0) return Promise.resolve();
    // Column names come from INSTANCE_COLUMNS only, never from input.
    const sql = `UPDATE instances SET ${sets.join(', ')} WHERE workflow_id = ? AND parameter = ?`;
    let stmt = this.updateStatements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.updateStatements.set(sql, stmt);
    }
    const st = stmt;
    return this.defer(() => st.run(...values, workflowId, parameter));
  }

  getInstance(workflowId: string, parameter: string): Promise<InstanceRecord | undefined> {
    this.flush();
    const r = this.s.getInstance.get(workflowId, parameter) as InstanceRow | undefined;
    return Promise.resolve(r ? fromInstanceRow(r) : undefined);
  }

  listInstances(f: InstanceFilter): Promise<InstanceRecord[]> {
    this.flush();
    const where: string[] = [];
    const values: unknown[] = [];
    if (f.workflowId) {
      where.push('workflow_id = ?');
      values.push(f.workflowId);
    }
    if (f.triggerId) {
      where.push('trigger_id = ?');
      values.push(f.triggerId);
    }
    if (f.states && f.states.length > 0) {
      where.push(`state IN (${f.states.map(() => '?').join(', ')})`);
      values.push(...f.states);
    }
    if (f.active) where.push(`state NOT IN ${FINAL}`);
    const sql =
      `SELECT * FROM instances${where.length ? ` WHERE ${where.join(' AND ')}` : ''}` +
      ` ORDER BY workflow_id, slot${f.limit ? ` LIMIT ${Math.floor(f.limit)}` : ''}`;
    return Promise.resolve((this.db.prepare(sql).all(...values) as InstanceRow[]).map(fromInstanceRow));
  }

  putExecution(e: ExecutionRecord): Promise<void> {
    const row = {
      execution_id: e.executionId,
      workflow_id: e.workflowId,
      parameter: e.parameter,
      try: e.try,
      trigger_id: e.triggerId,
      started: e.started?.getTime() ?? null,
      ended: e.ended?.getTime() ?? null,
      exit_code: e.exitCode,
      error: e.error,
      log: e.log,
    };
    return this.defer(() => this.s.putExecution.run(row));
  }

  listExecutions(workflowId: string, parameter: string): Promise<ExecutionRecord[]> {
    this.flush();
    return Promise.resolve((this.s.listExecutions.all(workflowId, parameter) as ExecutionRow[]).map(fromExecutionRow));
  }

  putBackfill(b: BackfillRecord): Promise<void> {
    this.flush();
    this.s.putBackfill.run({
      id: b.id,
      workflow_id: b.workflowId,
      start: b.start.getTime(),
      end_: b.end.getTime(),
      concurrency: b.concurrency,
      reverse: b.reverse ? 1 : 0,
      description: b.description,
      halted: b.halted ? 1 : 0,
      all_triggered: b.allTriggered ? 1 : 0,
      next_index: b.nextIndex,
      env: JSON.stringify(b.env),
      created: b.created.getTime(),
    });
    return Promise.resolve();
  }

  getBackfill(id: string): Promise<BackfillRecord | undefined> {
    this.flush();
    const r = this.s.getBackfill.get(id) as BackfillRow | undefined;
    return Promise.resolve(r ? fromBackfillRow(r) : undefined);
  }

  listBackfills(): Promise<BackfillRecord[]> {
    this.flush();
    return Promise.resolve((this.s.listBackfills.all() as BackfillRow[]).map(fromBackfillRow));
  }

  putResource(r: ResourceRecord): Promise<void> {
    this.flush();
    this.s.putResource.run(r.id, r.concurrency);
    return Promise.resolve();
  }

  getResource(id: string): Promise<ResourceRecord | undefined> {
    this.flush();
    return Promise.resolve(this.s.getResource.get(id) as ResourceRecord | undefined);
  }

  listResources(): Promise<ResourceRecord[]> {
    this.flush();
    return Promise.resolve(this.s.listResources.all() as ResourceRecord[]);
  }

  deleteResource(id: string): Promise<boolean> {
    this.flush();
    return Promise.resolve(this.s.deleteResource.run(id).changes > 0);
  }

  close(): Promise<void> {
    this.flush();
    this.db.close();
    return Promise.resolve();
  }
}
