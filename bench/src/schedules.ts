/**
 * Scheduler benchmarks, against a `weft server` child process (so its CPU
 * and memory are its own): trigger lateness of many workflows on a seconds
 * schedule, and the idle cost of many enabled hourly workflows.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { WorkflowsClient, type Workflow } from '@weft/proto';
import { percentile } from './stats.js';
import { LoadMonitor, procCpuMs, sleep, type LoadReport } from './util.js';

const CLI = fileURLToPath(import.meta.resolve('@weft/control-plane').replace(/index\.js$/, 'cli/main.js'));

/** A control plane in its own process. */
export class ServerChild {
  private constructor(
    readonly proc: ChildProcess,
    readonly address: string,
    readonly dataDir: string,
    readonly workflows: InstanceType<typeof WorkflowsClient>,
  ) {}

  static async start(label: string, env: Record<string, string> = {}): Promise<ServerChild> {
    const dataDir = mkdtempSync(join(tmpdir(), `weft-bench-${label}-`));
    const proc = spawn(
      process.execPath,
      [CLI, 'server', '--port', '0', '--metrics-port', '-1', '--data-dir', dataDir],
      { env: { ...process.env, WEFT_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    const address = await new Promise<string>((resolve, reject) => {
      proc.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        const m = /listening on (\S+)/.exec(err);
        if (m) resolve(m[1]!);
      });
      proc.on('exit', (code) => reject(new Error(`weft server exited with ${code}:\n${err}`)));
    });
    return new ServerChild(proc, address, dataDir, new WorkflowsClient(address, credentials.createInsecure()));
  }

  apply(document: Record<string, unknown>): Promise<Workflow> {
    return new Promise((resolve, reject) =>
      this.workflows.apply({ document }, (e: ServiceError | null, w: Workflow) => (e ? reject(e) : resolve(w))),
    );
  }

  setEnabled(id: string, enabled: boolean): Promise<Workflow> {
    return new Promise((resolve, reject) =>
      this.workflows.setEnabled({ id, enabled }, (e: ServiceError | null, w: Workflow) => (e ? reject(e) : resolve(w))),
    );
  }

  rssBytes(): number {
    const status = readFileSync(`/proc/${this.proc.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
  }

  async close(): Promise<void> {
    this.workflows.close();
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    await exited;
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Applies n workflows, a few requests in flight at a time. */
async function applyMany(s: ServerChild, n: number, doc: (i: number) => Record<string, unknown>): Promise<Workflow[]> {
  const out: Workflow[] = new Array<Workflow>(n);
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) out[i] = await s.apply(doc(i));
  };
  await Promise.all(Array.from({ length: 16 }, lane));
  return out;
}

export interface LatenessResult {
  workflows: number;
  schedule: string;
  spread: string;
  measuredSeconds: number;
  executions: number;
  /** From due time (slot + offset + the workflow's spread) to the command's process start, ms. */
  latenessMs: { p50: number; p90: number; p99: number; max: number };
  /** Executions due in the window that had not started by its end. */
  notStarted: number;
  /** Worst lateness per second of the window, ms: shows whether lateness is spread or comes in stalls. */
  worstBySecond: number[];
  /**
   * The warm-up, from the last workflow applied: command workers start on
   * demand, and runs due meanwhile queue behind them.
   */
  warmup: { seconds: number; executions: number; p50: number; p99: number; max: number };
  load: LoadReport;
}

/**
 * n command workflows (`/bin/true`) on a seconds schedule, enabled together;
 * after a warm-up, every execution's lateness is read from the store:
 * process start (taken by the runner right after spawn) minus due time.
 */
export async function triggerLateness(opts: {
  workflows: number;
  schedule: string;
  spread: string;
  warmupSeconds: number;
  measureSeconds: number;
}): Promise<LatenessResult> {
  const s = await ServerChild.start('lateness');
  try {
    const applied = await applyMany(s, opts.workflows, (i) => ({
      id: `lateness-${i}`,
      schedule: opts.schedule,
      ...(opts.spread ? { spread: opts.spread } : {}),
      command: ['/bin/true'],
      enabled: true,
    }));
    // The spread of each workflow: next due minus its slot (raw cron: no offset).
    const spreadMs = new Map(
      applied.map((w) => [w.id, w.nextDue!.getTime() - w.nextNaturalTrigger!.getTime()] as const),
    );
    const appliedAt = Date.now();
    await sleep(opts.warmupSeconds * 1000);
    const from = Date.now();
    const load = new LoadMonitor();
    await sleep(opts.measureSeconds * 1000);
    const to = Date.now();
    const report = load.stop();
    await Promise.all(applied.map((w) => s.setEnabled(w.id, false)));
    // Let executions due just before `to` finish.
    await sleep(2000);
    const db = new Database(join(s.dataDir, 'weft.db'), { readonly: true });
    const rows = db
      .prepare(
        `SELECT i.workflow_id AS id, i.slot AS slot, e.started AS started
           FROM instances i LEFT JOIN executions e
             ON e.workflow_id = i.workflow_id AND e.parameter = i.parameter AND e.try = 1`,
      )
      .all() as { id: string; slot: number; started: number | null }[];
    db.close();
    const late: number[] = [];
    const early: number[] = [];
    const worstBySecond: number[] = new Array<number>(Math.ceil((to - from) / 1000)).fill(0);
    let notStarted = 0;
    for (const r of rows) {
      const due = r.slot + (spreadMs.get(r.id) ?? 0);
      if (due >= appliedAt && due < from && r.started !== null) early.push(r.started - due);
      if (due < from || due >= to) continue;
      if (r.started === null) notStarted++;
      else {
        late.push(r.started - due);
        const sec = Math.floor((due - from) / 1000);
        worstBySecond[sec] = Math.max(worstBySecond[sec] ?? 0, r.started - due);
      }
    }
    late.sort((a, b) => a - b);
    early.sort((a, b) => a - b);
    return {
      workflows: opts.workflows,
      schedule: opts.schedule,
      spread: opts.spread,
      measuredSeconds: (to - from) / 1000,
      executions: late.length,
      latenessMs: {
        p50: percentile(late, 50),
        p90: percentile(late, 90),
        p99: percentile(late, 99),
        max: late[late.length - 1] ?? NaN,
      },
      notStarted,
      worstBySecond,
      warmup: {
        seconds: opts.warmupSeconds,
        executions: early.length,
        p50: percentile(early, 50),
        p99: percentile(early, 99),
        max: early[early.length - 1] ?? NaN,
      },
      load: report,
    };
  } finally {
    await s.close();
  }
}

export interface IdleResult {
  workflows: number;
  applySeconds: number;
  measuredSeconds: number;
  /** CPU of the control-plane process, % of one core. */
  cpuPercent: number;
  rssBytes: number;
  /** The same control plane with no workflows, measured the same way in this run. */
  baseline: { cpuPercent: number; rssBytes: number };
  /** Instances triggered during the measurement (non-zero only if it crossed the hour). */
  triggeredDuring: number;
}

async function idleCpu(s: ServerChild, seconds: number): Promise<number> {
  const pid = s.proc.pid!;
  const c0 = procCpuMs(pid) ?? 0;
  const t0 = performance.now();
  await sleep(seconds * 1000);
  return (((procCpuMs(pid) ?? 0) - c0) / (performance.now() - t0)) * 100;
}

/** CPU and memory of an idle control plane holding n enabled hourly workflows, against an empty one. */
export async function idleWorkflows(n: number, seconds: number): Promise<IdleResult> {
  const empty = await ServerChild.start('idle-empty');
  let baseline: { cpuPercent: number; rssBytes: number };
  try {
    await sleep(3000);
    baseline = { cpuPercent: await idleCpu(empty, seconds), rssBytes: empty.rssBytes() };
  } finally {
    await empty.close();
  }
  const s = await ServerChild.start('idle');
  try {
    const t0 = performance.now();
    await applyMany(s, n, (i) => ({ id: `hourly-${i}`, schedule: 'hourly', command: ['/bin/true'], enabled: true }));
    const applySeconds = (performance.now() - t0) / 1000;
    // Let the burst of applies settle (GC, SQLite checkpoint) before measuring.
    await sleep(5000);
    const cpuPercent = await idleCpu(s, seconds);
    const rssBytes = s.rssBytes();
    const db = new Database(join(s.dataDir, 'weft.db'), { readonly: true });
    const triggeredDuring = (db.prepare(`SELECT COUNT(*) AS n FROM instances`).get() as { n: number }).n;
    db.close();
    return { workflows: n, applySeconds, measuredSeconds: seconds, cpuPercent, rssBytes, baseline, triggeredDuring };
  } finally {
    await s.close();
  }
}
