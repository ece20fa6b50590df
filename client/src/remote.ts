/**
 * What the remote side of a closure needs, without the staging side's
 * dependencies (the TypeScript compiler, the inspector): lay a stage out,
 * load its function, and decode and encode values. Import it as
 * `@weft/client/remote`.
 * @packageDocumentation
 */
export {
  materialize,
  loadStaged,
  type MaterializedStage,
  type MaterializeOptions,
  type StagedFunction,
} from './materialize.js';
export { FsStageStore, MemoryStageStore, type StageReader, type StageStore, type BlobData } from './store.js';
export { stageIdOf, validateManifest, type StageFile, type StageManifest } from './manifest.js';
export { encodeValue, decodeValue } from './serializable.js';
