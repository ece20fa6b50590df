import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { FsBlobStore, createLogger, type Logger } from '@weft/common';
import {
  AlgorithmStoreService,
  BackfillsService,
  ClosuresService,
  ConcurrencyLimitsService,
  SecretsService,
  VolumesService,
  InstancesService,
  JobsService,
  WorkflowsService,
  PipelineStoreService,
  WorkersService,
  descriptorSetPath,
} from '@weft/proto';
import { DEFAULT_DISPATCHER_CONFIG, Dispatcher, type DispatcherConfig } from '../dispatch/dispatcher.js';
import { AlgorithmRegistry, parseMemory } from '../engine/algorithms.js';
import { JobEngine } from '../engine/jobs.js';
import { CLOSURE_POOL_PREFIX, ClosureEngine, DEFAULT_CLOSURE_CONFIG, type ClosureConfig } from '../engine/closures.js';
import {
  COMMAND_ALGORITHM,
  DEFAULT_SCHEDULER_CONFIG,
  DEFAULT_STATE_TIMEOUTS,
  Scheduler,
  type SchedulerConfig,
} from '../engine/scheduler.js';
import { INSTANCE_STATES } from '../domain/schedule.js';
import type { AlgorithmDef } from '../executor/port.js';
import { Triggers } from '../engine/triggers.js';
import { Webhooks } from '../engine/webhooks.js';
import type { Descriptor } from '../domain/pipeline.js';
import { LocalExecutor } from '../executor/local.js';
import { loadAlgorithmSpecs } from '../cli/files.js';
import { stageAlgorithmCode } from '../cli/code.js';
import { BlobStageStore } from '@weft/stage';
import { SqliteStateStore } from '../store/sqlite.js';
import { SqliteScheduleStore } from '../store/sqlite-schedules.js';
import { backfills, concurrencyLimits, instances, workflows } from './schedule-handlers.js';
import { closures, secrets, volumes } from './closure-handlers.js';
import { algorithmStore, jobs, pipelineStore, workers, type HandlerDeps } from './handlers.js';
import { Metrics } from './metrics.js';

/** How to run a control plane. Every field has an environment equivalent (see configFromEnv). */
export interface ControlPlaneConfig {
  /** gRPC port; 0 picks a free one. @default 50051 */
  port: number;
  /** @default "127.0.0.1" */
  host: string;
  /** SQLite file, blobs, logs and unpacked code live here. @default ".weft" */
  dataDir: string;
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

export interface ControlPlane {
  /** host:port clients dial. */
  readonly address: string;
  readonly port: number;
  readonly metricsPort: number | undefined;
  readonly dataDir: string;
  /** Stops serving, lets workers exit, closes the store. Idempotent. */
  close(): Promise<void>;
}

function num(v: string | undefined, fallback: number): number {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`expected a number, got "${v}"`);
  return n;
}

/**
 * Where clients on this machine (and the sidecars the local executor starts)
 * dial a server listening on host: the host itself, or loopback for the
 * wildcard addresses.
 */
function dialAddress(host: string, port: number): string {
  if (host === '0.0.0.0' || host === '') return `127.0.0.1:${port}`;
  if (host === '::' || host === '[::]') return `[::1]:${port}`;
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
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

/** The built-in algorithm that runs workflows' commands: light workers, one process per execution. */
function commandAlgorithm(maxWorkers: number): AlgorithmDef {
  const entry = fileURLToPath(import.meta.resolve('@weft/wrapper/builtin/command'));
  return {
    name: COMMAND_ALGORITHM,
    env: 'nodejs',
    codePath: dirname(entry),
    codeStage: '',
    entryPoint: 'command.js',
    image: '',
    cpu: 0.05,
    memBytes: 64 * 1024 * 1024,
    gpu: 0,
    minHotWorkers: 0,
    maxWorkers,
    env_vars: {},
  };
}

/** Defaults, overridden by WEFT_* environment variables. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ControlPlaneConfig {
  return {
    port: num(env['WEFT_PORT'], 50051),
    host: env['WEFT_HOST'] || '127.0.0.1',
    dataDir: env['WEFT_DATA_DIR'] || '.weft',
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

/** Starts a control plane on the embedded default: SQLite, local processes, a data directory. */
export async function startControlPlane(config: ControlPlaneConfig): Promise<ControlPlane> {
  const log = config.log ?? createLogger({ component: 'control-plane' });
  const dataDir = resolve(config.dataDir);
  const store = new SqliteStateStore(join(dataDir, 'weft.db'));
  const scheduleStore = new SqliteScheduleStore(join(dataDir, 'weft.db'));
  const commandDef = commandAlgorithm(config.commandWorkers);
  const blobs = new FsBlobStore(join(dataDir, 'blobs'));
  const metrics = new Metrics();
  const algorithms = new AlgorithmRegistry(store, blobs);
  await algorithms.load();
  const executor = new LocalExecutor({ logDir: join(dataDir, 'logs'), log, ...config.capacity });
  let address = '';
  // Created after the dispatcher, which asks it for its pools' definitions.
  const late: { closures?: ClosureEngine } = {};
  const dispatcher = new Dispatcher({
    executor,
    algorithm: (name) =>
      name === COMMAND_ALGORITHM
        ? commandDef
        : name.startsWith(CLOSURE_POOL_PREFIX)
          ? late.closures?.algorithm(name)
          : algorithms.get(name),
    storageUrl: blobs.url,
    serverAddress: () => address,
    config: config.dispatcher,
    metrics,
    log,
  });
  const webhooks = new Webhooks({ log });
  const engine = new JobEngine({
    store,
    dispatcher,
    blobs,
    algorithms,
    webhooks,
    metrics,
    log,
    config: {
      resultInlineLimit: config.resultInlineLimit,
      retainIntermediateMs: config.retention.intermediateMs,
      retainJobsMs: config.retention.jobsMs,
    },
  });
  const triggers = new Triggers(engine, log);
  const closureEngine = new ClosureEngine({
    dispatcher,
    blobs,
    config: { ...config.closures, dataDir },
    log: log.child({ component: 'closures' }),
  });
  late.closures = closureEngine;
  const scheduler = new Scheduler({
    store: scheduleStore,
    dispatcher,
    engine,
    hasAlgorithm: (name) => algorithms.get(name) !== undefined,
    config: { ...config.schedules, logDir: join(dataDir, 'logs', 'workflows') },
    log: log.child({ component: 'scheduler' }),
  });
  dispatcher.onSubmitJob = (req, parentJobId, reply) => void engine.submitFromTask(req, parentJobId, reply);
  for (const rec of await store.listPipelines()) {
    const d = rec.descriptor as unknown as Descriptor;
    engine.pipelineStored(rec.name, d);
    triggers.sync(rec.name, d);
  }

  const server = new Server({
    'grpc.max_receive_message_length': 256 * 1024 * 1024,
    'grpc.max_send_message_length': 256 * 1024 * 1024,
  });
  const deps: HandlerDeps = { store, blobs, triggers, algorithms, engine, dispatcher, log };
  server.addService(AlgorithmStoreService, algorithmStore(deps));
  server.addService(PipelineStoreService, pipelineStore(deps));
  server.addService(JobsService, jobs(deps));
  server.addService(WorkersService, workers(deps));
  server.addService(WorkflowsService, workflows(scheduler, log));
  server.addService(InstancesService, instances(scheduler, log));
  server.addService(BackfillsService, backfills(scheduler, log));
  server.addService(ConcurrencyLimitsService, concurrencyLimits(scheduler, log));
  server.addService(ClosuresService, closures(closureEngine, log));
  server.addService(SecretsService, secrets(closureEngine, log));
  server.addService(VolumesService, volumes(closureEngine, log));
  const services = [
    'weft.v1.AlgorithmStore',
    'weft.v1.PipelineStore',
    'weft.v1.Jobs',
    'weft.v1.Workers',
    'weft.v1.Workflows',
    'weft.v1.Instances',
    'weft.v1.Backfills',
    'weft.v1.ConcurrencyLimits',
    'weft.v1.Closures',
    'weft.v1.Secrets',
    'weft.v1.Volumes',
  ];
  const health = new HealthImplementation(Object.fromEntries(['', ...services].map((s) => [s, 'SERVING' as const])));
  health.addToServer(server);
  new ReflectionService(loadFileDescriptorSetFromBuffer(readFileSync(descriptorSetPath))).addToServer(server);

  const port = await new Promise<number>((res, rej) =>
    server.bindAsync(`${config.host}:${config.port}`, ServerCredentials.createInsecure(), (err, p) =>
      err ? rej(err) : res(p),
    ),
  );
  address = dialAddress(config.host, port);

  let metricsServer: HttpServer | undefined;
  let metricsPort: number | undefined;
  let gcTimer: NodeJS.Timeout | undefined;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      log.info('control plane shutting down');
      for (const s of ['', ...services]) health.setStatus(s, 'NOT_SERVING');
      if (gcTimer) clearInterval(gcTimer);
      triggers.stop();
      await scheduler.close();
      closureEngine.close();
      await dispatcher.shutdown();
      await executor.shutdown();
      await new Promise<void>((res) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          res();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(t);
          res();
        });
      });
      await new Promise<void>((res) => (metricsServer ? metricsServer.close(() => res()) : res()));
      await webhooks.close(2000);
      await store.close();
      await scheduleStore.close();
      log.info('control plane stopped');
    })());

  try {
    if (config.metricsPort >= 0) {
      metricsServer = createServer((req, res) => {
        if (req.url === '/metrics') {
          metrics.registry.metrics().then(
            (body) => {
              res.writeHead(200, { 'content-type': metrics.registry.contentType });
              res.end(body);
            },
            (err: unknown) => {
              res.writeHead(500);
              res.end(String(err));
            },
          );
        } else {
          res.writeHead(404);
          res.end('not found: try /metrics\n');
        }
      });
      metricsPort = await new Promise<number>((res, rej) => {
        metricsServer!.once('error', rej);
        metricsServer!.listen(config.metricsPort, config.host, () => {
          const a = metricsServer!.address();
          res(typeof a === 'object' && a ? a.port : config.metricsPort);
        });
      });
    }

    for (const dir of config.registerDirs) {
      for (const entry of existsSync(dir) ? readdirSync(dir).sort() : []) {
        const file = join(dir, entry, 'algorithms.yaml');
        if (!existsSync(file)) continue;
        const { specs, warnings } = await loadAlgorithmSpecs(file);
        for (const w of warnings) log.warn(w, { file });
        for (const local of specs) {
          // Into the blob store, as `weft algorithm apply` does through the API.
          const { spec, staged } = await stageAlgorithmCode(local, new BlobStageStore(blobs), file);
          const def = await algorithms.apply(spec);
          log.info('algorithm registered', { algorithm: def.name, from: file, files: staged?.files ?? 0 });
        }
      }
    }
    for (const rec of await store.listAlgorithms()) {
      if ((algorithms.get(rec.name)?.minHotWorkers ?? 0) > 0) dispatcher.ensureHot(rec.name);
    }
    const resumed = await engine.recover();
    // After the job engine: a pipeline workflow's running job must be back before the scheduler reattaches to it.
    const sched = await scheduler.start();
    const collect = (): void => {
      engine.collectGarbage().then(
        (n) =>
          (n.jobs || n.intermediates) &&
          log.info('retention', { deletedJobs: n.jobs, deletedIntermediates: n.intermediates }),
        (err: unknown) => log.warn('retention failed', { err }),
      );
    };
    collect();
    gcTimer = setInterval(collect, config.retention.intervalMs);
    gcTimer.unref();
    log.info('control plane serving', {
      address: `${config.host}:${port}`,
      dataDir,
      metricsPort,
      resumedJobs: resumed,
      workflows: sched.workflows,
      caughtUpSlots: sched.caughtUp,
    });
  } catch (err) {
    // Half-started is worse than not started: release the port, the workers
    // and the database so the caller sees the failure and the process can exit.
    await close();
    throw err;
  }

  return {
    address: dialAddress(config.host, port),
    port,
    metricsPort,
    dataDir,
    close,
  };
}
