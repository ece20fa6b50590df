import { forEachLimit } from './limit.js';
import type { StageManifest } from './manifest.js';
import type { BlobData, StageStore } from './store.js';

/** A stage worked out but not uploaded. */
export interface StagePlan {
  readonly manifest: StageManifest;
  readonly stageId: string;
  /** Absolute directory that stage paths are relative to. */
  readonly root: string;
  /** Files on disk whose content had to be read because the hash cache did not know them. */
  readonly hashed: number;
  /** The content of a file of the stage, by hash. Reads the disk again; fails if the file changed since. */
  content(hash: string): Promise<BlobData>;
}

/** The outcome of {@link uploadStage}, small enough to log. */
export interface StageResult {
  readonly manifest: StageManifest;
  readonly stageId: string;
  /** Distinct contents uploaded because the store did not have them. */
  readonly newlyUploaded: number;
  /** Distinct contents the store already had. */
  readonly cached: number;
  /** Files on disk read and hashed (the rest came from the hash cache). */
  readonly hashed: number;
  /** Bytes uploaded. */
  readonly uploadedBytes: number;
}

/**
 * Asks the store which of the plan's contents it lacks, uploads those (at
 * most `concurrency` at once, default 8), then stores the manifest. Callers
 * that remember which stages a store already holds can plan, compare stage
 * ids and skip this step altogether.
 */
export async function uploadStage(
  plan: StagePlan,
  store: StageStore,
  options: { readonly concurrency?: number } = {},
): Promise<StageResult> {
  const hashes = [...new Set(plan.manifest.files.map((f) => f.hash))];
  const missing = await store.missing(hashes);
  const sizes = new Map(plan.manifest.files.map((f) => [f.hash, f.size]));
  let uploadedBytes = 0;
  await forEachLimit(missing, options.concurrency ?? 8, async (hash) => {
    await store.put(hash, await plan.content(hash));
    uploadedBytes += sizes.get(hash) ?? 0;
  });
  await store.putManifest(plan.stageId, plan.manifest);
  return {
    manifest: plan.manifest,
    stageId: plan.stageId,
    newlyUploaded: missing.length,
    cached: hashes.length - missing.length,
    hashed: plan.hashed,
    uploadedBytes,
  };
}
