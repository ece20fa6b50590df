/**
 * Content-addressed stages of code, shared by the client (which stages
 * closures), the control plane (which stores stages and algorithm code) and
 * the workers (which lay stages out and run them). It deliberately does not
 * depend on the TypeScript compiler: only the client's closure stager needs
 * that.
 *
 * - {@link StageManifest}: every file of a stage by hash; its sha256 is the
 *   stage id ({@link stageIdOf}).
 * - Stores: {@link BlobStageStore} on a blob store (where stages live),
 *   {@link FsStageStore} and {@link MemoryStageStore}, and
 *   {@link ClosuresStageStore}, the control plane's gRPC upload service.
 * - {@link stageDirectory}: stages a directory tree (an algorithm's code),
 *   uploading only what the store lacks.
 * - {@link materialize} lays a stage out once, {@link loadStaged} loads its
 *   function; {@link provideRoot} makes a worker's own packages importable
 *   from the stages it lays out.
 * @packageDocumentation
 */
export {
  canonicalJson,
  isStagePath,
  sha256,
  stageIdOf,
  validateManifest,
  type StageFile,
  type StageManifest,
} from './manifest.js';
export { MemoryStageStore, FsStageStore, type StageStore, type StageReader, type BlobData } from './store.js';
export { BlobStageStore, contentKey, manifestKey } from './blob-store.js';
export { ClosuresStageStore, BLOB_CHUNK_BYTES } from './grpc-store.js';
export {
  materialize,
  loadStaged,
  type MaterializedStage,
  type MaterializeOptions,
  type StagedFunction,
} from './materialize.js';
export { uploadStage, type StagePlan, type StageResult } from './upload.js';
export { planDirectory, stageDirectory, type DirectoryStageOptions, type DirectoryStageResult } from './directory.js';
export { WORKER_PACKAGES, packageDirs, provideRoot } from './provide.js';
export {
  HashCache,
  defaultCacheDir,
  type HashCacheEntry,
  type FileStamp,
  type ModuleReference,
  type ModuleReferenceKind,
} from './hash-cache.js';
export { assertSerializable, describeValue, encodeValue, decodeValue } from './serializable.js';
export { forEachLimit } from './limit.js';
