/**
 * The weft control plane: start one in-process with startControlPlane().
 * @packageDocumentation
 */
export { startControlPlane, configFromEnv, type ControlPlane, type ControlPlaneConfig } from './server/app.js';
export { runServer } from './server/run.js';
export {
  Dispatcher,
  DEFAULT_DISPATCHER_CONFIG,
  type WorkUnit,
  type Outcome,
  type UnitListener,
  type DispatcherConfig,
} from './dispatch/dispatcher.js';
export { LocalExecutor } from './executor/local.js';
export type { Executor, AlgorithmDef, WorkerHandle, WorkerLaunch } from './executor/port.js';
export { Metrics } from './server/metrics.js';
export { SqliteStateStore } from './store/sqlite.js';
export type { StateStore } from './store/port.js';
export { loadAlgorithmSpecs, loadPipelines } from './cli/files.js';
