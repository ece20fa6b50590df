/**
 * The weft control plane: start one in-process with startControlPlane().
 * @packageDocumentation
 */
export { startControlPlane, type ControlPlane } from './app/main.js';
export { configFromEnv, type ControlPlaneConfig } from './app/config.js';
export { runServer, type ServerOptions } from './app/run.js';
export {
  Dispatcher,
  DEFAULT_DISPATCHER_CONFIG,
  type WorkUnit,
  type Outcome,
  type UnitListener,
  type DispatcherConfig,
} from './dispatch/dispatcher.js';
export { LocalExecutor } from './adapters/local/executor.js';
export { GrpcWorkerLink, workersService } from './adapters/grpc/worker-link.js';
export { systemClock } from './adapters/system/clock.js';
export type { Executor, AlgorithmDef, WorkerHandle, WorkerLaunch } from './ports/executor.js';
export type { WorkerLink } from './ports/worker-link.js';
export type { Clock, Timer } from './ports/clock.js';
export { Metrics } from './server/metrics.js';
export { SqliteStateStore } from './adapters/sqlite/state-store.js';
export type { StateStore } from './ports/state-store.js';
export { loadAlgorithmSpecs, loadPipelines } from './cli/files.js';
