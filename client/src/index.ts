/**
 * The client side of weft closures (Hype-style remote functions). Most
 * programs need only {@link Submitter} (`submit(fn, args, env)`,
 * `remote(fn)`, `runPipeline`, `close`) and {@link RunEnvironment} with its
 * volumes. Underneath it: find where a function lives and what it captures
 * ({@link locate}), package the code it needs into a content-addressed stage
 * and upload what the server lacks ({@link stage}), describe where it runs
 * ({@link RunEnvironment}), and, on the remote side, lay a stage out and load
 * the function again ({@link materialize}, {@link loadStaged}).
 *
 * The remote side needs only `materialize`, `loadStaged` and the value codec;
 * it can import them from `@weft/client/remote`, which does not load the
 * TypeScript compiler.
 * @packageDocumentation
 */
export { locate, type LocatedFunction, type ClosureModule } from './locate.js';
export { planStage, stage, uploadStage, type StageOptions, type StagePlan, type StageResult } from './stage.js';
// The stage format, stores and layout live in @weft/stage (shared with the control plane and the
// workers, neither of which should load the TypeScript compiler); re-exported here unchanged.
export {
  HashCache,
  defaultCacheDir,
  type HashCacheEntry,
  type FileStamp,
  canonicalJson,
  isStagePath,
  sha256,
  stageIdOf,
  validateManifest,
  type StageFile,
  type StageManifest,
  MemoryStageStore,
  FsStageStore,
  type StageStore,
  type StageReader,
  type BlobData,
  materialize,
  loadStaged,
  type MaterializedStage,
  type MaterializeOptions,
  type StagedFunction,
  assertSerializable,
  encodeValue,
  decodeValue,
  ClosuresStageStore,
  BLOB_CHUNK_BYTES,
} from '@weft/stage';
export {
  RunEnvironment,
  Volume,
  TransientVolume,
  PersistentVolume,
  VolumeMount,
  RUN_CONTAINER,
  type Resources,
  type ResourceSpec,
  type VolumeSpec,
  type RunEnvironmentSpec,
} from './environment.js';
export {
  Submitter,
  RemoteError,
  JobError,
  type RemoteFunction,
  type SubmitterOptions,
  type SubmitOptions,
  type SubmissionInfo,
  type PipelineLeafResult,
  type RunPipelineOptions,
} from './submitter.js';
// Refusals by the server are WeftErrors carrying a gRPC status code and the offending field.
export { WeftError, Status } from '@weft/common';
