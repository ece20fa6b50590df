/**
 * The control plane's settings: the WEFT_* environment (and the `weft
 * server` flags, which override it) turned into one validated
 * {@link ControlPlaneConfig}. Adapter URLs are checked against the adapters
 * that exist in compose.ts, which alone knows them.
 */
import { DEFAULT_DISPATCHER_CONFIG, type DispatcherConfig } from '../dispatch/dispatcher.js';
import { parseMemory } from '../engine/algorithms.js';
import { DEFAULT_CLOSURE_CONFIG, type ClosureConfig } from '../engine/closures.js';
import { DEFAULT_SCHEDULER_CONFIG, DEFAULT_STATE_TIMEOUTS, type SchedulerConfig } from '../engine/scheduler.js';
import { INSTANCE_STATES } from '../domain/schedule.js';
import type { Logger } from '@weft/common';

/** How to run a control plane. Every field has an environment equivalent (see configFromEnv). */
export interface ControlPlaneConfig {
  /** gRPC port; 0 picks a free one. @default 50051 */
  port: number;
  /** @default "127.0.0.1" */
  host: string;
  /** The SQLite file, the blobs (on the default fs store, code stages among them) and logs live here. @default ".weft" */
  dataDir: string;
  /**
   * Blob store URL (WEFT_BLOBS): `fs:DIR` or `s3://bucket/prefix?endpoint=…&region=…&path_style=true`.
   * @default "fs:<dataDir>/blobs"
   */
  blobs?: string;
  /** State store URL (WEFT_STATE): `sqlite:FILE`. @default "sqlite:<dataDir>/weft.db" */
  state?: string;
  /** Executor (WEFT_EXECUTOR): `local`. @default "local" */
  executor?: string;
  /** HTTP port of /metrics; 0 picks a free one, -1 disables it. @default 9464 */
  metricsPort: number;
  /** Directories whose `*\/algorithms.yaml` files are applied at start (the examples). */
  registerDirs: string[];
  dispatcher: DispatcherConfig;
  /** Stored results up to this size are inlined in GetResult. @default 1 MiB */
  resultInlineLimit: number;
  /** CPU cores and memory bytes workers may request in total. @default the machine's */
  capacity: { cpu?: number; memBytes?: number };
  /** How long ended jobs keep their data: intermediates 5 days, jobs with results 20 days (HKube's). */
  retention: { intermediateMs: number; jobsMs: number; intervalMs: number };
  /** Retry policy and state timeouts of scheduled workflows (Styx's defaults). */
  schedules: Omit<SchedulerConfig, 'logDir'>;
  /** Most `command` executions running at once (workers of the built-in weft-command). @default 16 */
  commandWorkers: number;
  /** Closure sessions, runs and worker pools (WEFT_SESSION_TTL, WEFT_CLOSURE_WORKERS). */
  closures: Omit<ClosureConfig, 'dataDir'>;
  log?: Logger;
}

function num(v: string | undefined, fallback: number): number {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`expected a number, got "${v}"`);
  return n;
}

const DAY = 24 * 60 * 60 * 1000;

/** Reads a duration such as "90s", "30m", "12h", "5d" or plain milliseconds. */
function duration(v: string | undefined, fallback: number, name: string): number {
  if (v === undefined || v === '') return fallback;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) throw new Error(`${name}: "${v}" is not a duration (e.g. 90s, 30m, 12h, 5d)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: DAY }[m[2] ?? 'ms'] ?? 1;
  return Number(m[1]) * unit;
}

/**
 * Styx's retry and timeout settings, each overridable: WEFT_RETRY_BASE_DELAY,
 * WEFT_RETRY_MISSING_DEPS_DELAY, WEFT_RETRY_MAX_COST, WEFT_RETRY_FAILURE_COST,
 * WEFT_RETRY_MISSING_DEPS_COST, WEFT_TIMEOUT_<STATE> (e.g. WEFT_TIMEOUT_RUNNING=24h,
 * WEFT_TIMEOUT_DEFAULT) and WEFT_MAX_RUNNING_TIMEOUT.
 */
function schedulesFromEnv(env: NodeJS.ProcessEnv): Omit<SchedulerConfig, 'logDir'> {
  const d = DEFAULT_SCHEDULER_CONFIG;
  const timeouts: SchedulerConfig['stateTimeoutsMs'] = { ...DEFAULT_STATE_TIMEOUTS };
  for (const st of [...INSTANCE_STATES, 'default' as const]) {
    const name = `WEFT_TIMEOUT_${st.toUpperCase()}`;
    if (env[name]) timeouts[st] = duration(env[name], 0, name);
  }
  const retry: SchedulerConfig['retry'] = {};
  if (env['WEFT_RETRY_BASE_DELAY'])
    retry.baseDelayMs = duration(env['WEFT_RETRY_BASE_DELAY'], 0, 'WEFT_RETRY_BASE_DELAY');
  if (env['WEFT_RETRY_MISSING_DEPS_DELAY']) {
    retry.missingDependenciesDelayMs = duration(
      env['WEFT_RETRY_MISSING_DEPS_DELAY'],
      0,
      'WEFT_RETRY_MISSING_DEPS_DELAY',
    );
  }
  if (env['WEFT_RETRY_MAX_COST']) retry.maxCost = num(env['WEFT_RETRY_MAX_COST'], 50);
  if (env['WEFT_RETRY_FAILURE_COST']) retry.failureCost = num(env['WEFT_RETRY_FAILURE_COST'], 1);
  if (env['WEFT_RETRY_MISSING_DEPS_COST'])
    retry.missingDependenciesCost = num(env['WEFT_RETRY_MISSING_DEPS_COST'], 0.1);
  return {
    retry,
    stateTimeoutsMs: timeouts,
    maxRunningTimeoutMs: duration(env['WEFT_MAX_RUNNING_TIMEOUT'], d.maxRunningTimeoutMs, 'WEFT_MAX_RUNNING_TIMEOUT'),
  };
}

/** An unset or empty variable is "use the default". */
function setting(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

/** Defaults, overridden by WEFT_* environment variables. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ControlPlaneConfig {
  const blobs = setting(env, 'WEFT_BLOBS');
  const state = setting(env, 'WEFT_STATE');
  const executor = setting(env, 'WEFT_EXECUTOR');
  return {
    port: num(env['WEFT_PORT'], 50051),
    host: env['WEFT_HOST'] || '127.0.0.1',
    dataDir: env['WEFT_DATA_DIR'] || '.weft',
    ...(blobs !== undefined ? { blobs } : {}),
    ...(state !== undefined ? { state } : {}),
    ...(executor !== undefined ? { executor } : {}),
    metricsPort: num(env['WEFT_METRICS_PORT'], 9464),
    registerDirs: env['WEFT_REGISTER'] ? env['WEFT_REGISTER'].split(':').filter(Boolean) : [],
    dispatcher: {
      inlineThreshold: num(env['WEFT_INLINE_THRESHOLD'], DEFAULT_DISPATCHER_CONFIG.inlineThreshold),
      heartbeatIntervalMs: num(env['WEFT_HEARTBEAT_MS'], DEFAULT_DISPATCHER_CONFIG.heartbeatIntervalMs),
      heartbeatTimeoutMs: num(env['WEFT_HEARTBEAT_TIMEOUT_MS'], DEFAULT_DISPATCHER_CONFIG.heartbeatTimeoutMs),
      idleTimeoutMs: num(env['WEFT_IDLE_TIMEOUT_MS'], DEFAULT_DISPATCHER_CONFIG.idleTimeoutMs),
      stopGraceMs: num(env['WEFT_STOP_GRACE_MS'], DEFAULT_DISPATCHER_CONFIG.stopGraceMs),
      startTimeoutMs: num(env['WEFT_START_TIMEOUT_MS'], DEFAULT_DISPATCHER_CONFIG.startTimeoutMs),
    },
    resultInlineLimit: num(env['WEFT_RESULT_INLINE_LIMIT'], 1024 * 1024),
    retention: {
      intermediateMs: duration(env['WEFT_RETAIN_INTERMEDIATE'], 5 * DAY, 'WEFT_RETAIN_INTERMEDIATE'),
      jobsMs: duration(env['WEFT_RETAIN_JOBS'], 20 * DAY, 'WEFT_RETAIN_JOBS'),
      intervalMs: duration(env['WEFT_RETENTION_INTERVAL'], 60 * 60 * 1000, 'WEFT_RETENTION_INTERVAL'),
    },
    schedules: schedulesFromEnv(env),
    commandWorkers: num(env['WEFT_COMMAND_WORKERS'], 16),
    closures: {
      sessionTtlMs: duration(env['WEFT_SESSION_TTL'], DEFAULT_CLOSURE_CONFIG.sessionTtlMs, 'WEFT_SESSION_TTL'),
      keepRunsMs: DEFAULT_CLOSURE_CONFIG.keepRunsMs,
      maxWorkers: num(env['WEFT_CLOSURE_WORKERS'], DEFAULT_CLOSURE_CONFIG.maxWorkers),
    },
    capacity: {
      ...(env['WEFT_CPUS'] ? { cpu: num(env['WEFT_CPUS'], 0) } : {}),
      ...(env['WEFT_MEMORY'] ? { memBytes: parseMemory(env['WEFT_MEMORY'], 'WEFT_MEMORY') } : {}),
    },
  };
}

/** The adapter URLs with their defaults filled in from dataDir (an absolute path). */
export function adapterUrls(
  config: ControlPlaneConfig,
  dataDir: string,
): { blobs: string; state: string; executor: string } {
  return {
    blobs: config.blobs ?? `fs:${dataDir}/blobs`,
    state: config.state ?? `sqlite:${dataDir}/weft.db`,
    executor: config.executor ?? 'local',
  };
}
