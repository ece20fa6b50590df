/**
 * The weft Node wrapper: `run()` for algorithm code, and the local protocol
 * types shared with the sidecar.
 * @packageDocumentation
 */
export {
  run,
  MissingDependencies,
  PermanentFailure,
  type Algorithm,
  type Api,
  type TaskArgs,
  type RunOptions,
} from './algorithm.js';
export { LOCAL_PROTOCOL_VERSION } from './protocol.js';
export type { InitializeData, SidecarFrame, AlgorithmFrame } from './protocol.js';
