/**
 * The blob store port lives in @weft/common (common/src/blob/port.ts),
 * because the sidecar and the wrappers use it too; its contract (durability
 * of put, ranged reads, prefix delete, check) is written there and checked by
 * the blob-store contract suite in common. It is re-exported here so every
 * seam of the control plane is listed in this folder.
 */
export type { BlobStore } from '@weft/common';
