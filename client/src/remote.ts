/**
 * What the remote side of a closure needs, without the staging side's
 * dependencies (the TypeScript compiler, the inspector): lay a stage out,
 * load its function, and decode and encode values. Import it as
 * `@weft/client/remote`. It is @weft/stage's, re-exported.
 * @packageDocumentation
 */
export {
  materialize,
  loadStaged,
  type MaterializedStage,
  type MaterializeOptions,
  type StagedFunction,
  FsStageStore,
  MemoryStageStore,
  type StageReader,
  type StageStore,
  type BlobData,
  stageIdOf,
  validateManifest,
  type StageFile,
  type StageManifest,
  encodeValue,
  decodeValue,
} from '@weft/stage';
