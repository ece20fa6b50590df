/**
 * The composition root: the only module that imports adapters. It picks them
 * by URL or name from the settings (WEFT_STATE, WEFT_BLOBS, WEFT_EXECUTOR),
 * then wires ports, engines and the gRPC services together. Nothing here
 * serves or starts work; main.ts owns that lifecycle.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server } from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { Status, WeftError, openBlobStore, type BlobStore, type Logger } from '@weft/common';
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
import { Dispatcher } from '../dispatch/dispatcher.js';
import { AlgorithmRegistry } from '../engine/algorithms.js';
import { JobEngine } from '../engine/jobs.js';
import { CLOSURE_POOL_PREFIX, ClosureEngine } from '../engine/closures.js';
import { COMMAND_ALGORITHM, Scheduler } from '../engine/scheduler.js';
import { Triggers } from '../engine/triggers.js';
import { Webhooks } from '../engine/webhooks.js';
import type { Descriptor } from '../domain/pipeline.js';
import type { AlgorithmDef, Executor } from '../ports/executor.js';
import type { ScheduleStore } from '../ports/schedule-store.js';
import type { StateStore } from '../ports/state-store.js';
import { LocalExecutor } from '../adapters/local/executor.js';
import { SqliteScheduleStore } from '../adapters/sqlite/schedule-store.js';
import { SqliteStateStore } from '../adapters/sqlite/state-store.js';
import { workersService } from '../adapters/grpc/worker-link.js';
import { systemClock } from '../adapters/system/clock.js';
import { backfills, concurrencyLimits, instances, workflows } from '../server/schedule-handlers.js';
import { closures, secrets, volumes } from '../server/closure-handlers.js';
import { algorithmStore, jobs, pipelineStore, type HandlerDeps } from '../server/handlers.js';
import { Metrics } from '../server/metrics.js';
import { adapterUrls, type ControlPlaneConfig } from './config.js';

/** The adapters behind the ports, chosen from the settings. */
export interface Adapters {
  store: StateStore;
  scheduleStore: ScheduleStore;
  blobs: BlobStore;
  executor: Executor;
}

/** A refused setting: one line naming it and what it accepts. */
function badSetting(message: string): WeftError {
  return new WeftError(Status.INVALID_ARGUMENT, message);
}

type StateOpener = (path: string) => { store: StateStore; scheduleStore: ScheduleStore };

/** State store adapters by URL scheme. */
const STATE_STORES: Record<string, StateOpener> = {
  sqlite: (file) => {
    const store = new SqliteStateStore(file);
    try {
      // Same file, own connection: WAL lets the two work side by side.
      return { store, scheduleStore: new SqliteScheduleStore(file) };
    } catch (err) {
      void store.close();
      throw err;
    }
  },
};

/** Parses WEFT_STATE, refusing what no adapter serves. */
export function stateOpener(url: string): () => { store: StateStore; scheduleStore: ScheduleStore } {
  const accepted = 'accepted: sqlite:FILE (postgres:// is not available yet)';
  if (/^postgres(ql)?:\/\//.test(url)) {
    throw badSetting(`WEFT_STATE: the PostgreSQL state store is not available yet; accepted: sqlite:FILE`);
  }
  const m = /^([a-z][a-z0-9+.-]*):(.*)$/.exec(url);
  const open = m ? STATE_STORES[m[1]!] : undefined;
  if (!m || !open) throw badSetting(`WEFT_STATE: "${url}" is not a state store URL; ${accepted}`);
  const path = m[2]!;
  if (!path) throw badSetting(`WEFT_STATE: "${url}" names no file; ${accepted}`);
  return () => open(resolve(path));
}

/** Parses WEFT_EXECUTOR, refusing what no adapter serves. */
export function executorFactory(
  name: string,
  opts: { dataDir: string; log: Logger; capacity: ControlPlaneConfig['capacity'] },
): () => Executor {
  const accepted = 'accepted: local (kubernetes is not available yet)';
  if (name === 'local') {
    return () => new LocalExecutor({ logDir: join(opts.dataDir, 'logs'), log: opts.log, ...opts.capacity });
  }
  if (name === 'kubernetes')
    throw badSetting('WEFT_EXECUTOR: the Kubernetes executor is not available yet; accepted: local');
  throw badSetting(`WEFT_EXECUTOR: "${name}" is not an executor; ${accepted}`);
}

/**
 * Opens the adapters the settings name. Every setting is validated before
 * anything is opened, and the blob store is checked (bucket, credentials,
 * directory) before the call resolves, so a bad setting fails the start with
 * one line naming it and leaves nothing open.
 */
export async function openAdapters(config: ControlPlaneConfig, dataDir: string, log: Logger): Promise<Adapters> {
  const urls = adapterUrls(config, dataDir);
  const openState = stateOpener(urls.state);
  const newExecutor = executorFactory(urls.executor, { dataDir, log, capacity: config.capacity });
  const blobs = await openBlobStore(urls.blobs, { setting: 'WEFT_BLOBS' });
  let state: ReturnType<typeof openState> | undefined;
  try {
    await blobs.check();
    try {
      state = openState();
    } catch (err) {
      throw badSetting(`WEFT_STATE: cannot open ${urls.state}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return { ...state, blobs, executor: newExecutor() };
  } catch (err) {
    // Leave nothing open behind a refused start.
    await state?.store.close().catch(() => undefined);
    await state?.scheduleStore.close().catch(() => undefined);
    await blobs.close().catch(() => undefined);
    throw err;
  }
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

/** The gRPC services a control plane serves, by their full names (health reports each). */
export const SERVICES = [
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
] as const;

/** Everything a control plane is made of, wired but not yet serving. */
export interface Components {
  metrics: Metrics;
  algorithms: AlgorithmRegistry;
  dispatcher: Dispatcher;
  webhooks: Webhooks;
  engine: JobEngine;
  triggers: Triggers;
  closures: ClosureEngine;
  scheduler: Scheduler;
  server: Server;
  health: HealthImplementation;
  /** Where the executor's workers dial; set once the server is bound. */
  setListening(host: string, port: number): void;
}

/** Wires the engines, the dispatcher and the gRPC services over the adapters. */
export async function compose(
  adapters: Adapters,
  config: ControlPlaneConfig,
  dataDir: string,
  log: Logger,
): Promise<Components> {
  const { store, scheduleStore, blobs, executor } = adapters;
  const commandDef = commandAlgorithm(config.commandWorkers);
  const metrics = new Metrics();
  const algorithms = new AlgorithmRegistry(store, blobs);
  await algorithms.load();
  let workerAddress = '';
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
    serverAddress: () => workerAddress,
    config: config.dispatcher,
    clock: systemClock,
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
  server.addService(
    WorkersService,
    workersService((link) => dispatcher.attach(link)),
  );
  server.addService(WorkflowsService, workflows(scheduler, log));
  server.addService(InstancesService, instances(scheduler, log));
  server.addService(BackfillsService, backfills(scheduler, log));
  server.addService(ConcurrencyLimitsService, concurrencyLimits(scheduler, log));
  server.addService(ClosuresService, closures(closureEngine, log));
  server.addService(SecretsService, secrets(closureEngine, log));
  server.addService(VolumesService, volumes(closureEngine, log));
  const health = new HealthImplementation(Object.fromEntries(['', ...SERVICES].map((s) => [s, 'SERVING' as const])));
  health.addToServer(server);
  new ReflectionService(loadFileDescriptorSetFromBuffer(readFileSync(descriptorSetPath))).addToServer(server);

  return {
    metrics,
    algorithms,
    dispatcher,
    webhooks,
    engine,
    triggers,
    closures: closureEngine,
    scheduler,
    server,
    health,
    setListening: (host, port) => {
      workerAddress = executor.advertise({ host, port });
    },
  };
}
