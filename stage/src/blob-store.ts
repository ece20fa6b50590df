import { createHash } from 'node:crypto';
import { chmod } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { Status, WeftError, type BlobStore } from '@weft/common';
import { forEachLimit } from './limit.js';
import { canonicalJson, stageIdOf, validateManifest, type StageManifest } from './manifest.js';
import type { BlobData, StageReader, StageStore } from './store.js';

const HASH = /^[0-9a-f]{64}$/;

function checkHash(hash: string, what: string): void {
  if (!HASH.test(hash)) throw new WeftError(Status.INVALID_ARGUMENT, `not a ${what}: ${JSON.stringify(hash)}`);
}

/** Blob key of the content with this sha256: `cas/<first two hex digits>/<hash>`. */
export function contentKey(hash: string): string {
  checkHash(hash, 'sha256 hash');
  return `cas/${hash.slice(0, 2)}/${hash}`;
}

/** Blob key of a stage's manifest: `stages/<stageId>.json`. */
export function manifestKey(stageId: string): string {
  checkHash(stageId, 'stage id');
  return `stages/${stageId}.json`;
}

/** Existence checks in flight at once: one request each on S3. */
const LOOKUPS = 32;

/**
 * A {@link StageStore} and {@link StageReader} on a {@link BlobStore}, so
 * that stages live wherever payloads do (a shared directory, S3) and any
 * machine that can open the store can lay them out. Content is at
 * {@link contentKey}, manifests at {@link manifestKey}: the same keys on
 * every adapter.
 *
 * Content is verified against its hash while it streams in; a mismatch fails
 * the write, which by the blob store's contract leaves nothing visible. A
 * manifest is stored only once all of its content is, so a stage id that
 * resolves is always complete.
 *
 * When the blob store has a local view, {@link localPath} hands it on and
 * {@link materialize} hardlinks instead of copying; content files are made
 * read-only (0o444) for that, since every laid-out stage shares them.
 */
export class BlobStageStore implements StageStore, StageReader {
  constructor(readonly blobs: BlobStore) {}

  async missing(hashes: readonly string[]): Promise<string[]> {
    const present = new Map<string, boolean>();
    const unique = [...new Set(hashes)];
    await forEachLimit(unique, LOOKUPS, async (h) => {
      present.set(h, await this.blobs.has(contentKey(h)));
    });
    return hashes.filter((h) => present.get(h) !== true);
  }

  async put(hash: string, data: BlobData): Promise<void> {
    const key = contentKey(hash);
    const source = data instanceof Uint8Array ? Readable.from([data]) : data;
    const digest = createHash('sha256');
    async function* verified(): AsyncGenerator<Uint8Array> {
      for await (const chunk of source as AsyncIterable<Uint8Array>) {
        digest.update(chunk);
        yield chunk;
      }
      const actual = digest.digest('hex');
      // Thrown before the stream ends, so the store discards what it received.
      if (actual !== hash) {
        throw new WeftError(Status.DATA_LOSS, `content does not match its hash: expected ${hash}, got ${actual}`);
      }
    }
    await this.blobs.putStream(key, verified());
    const local = this.blobs.localPath?.(key);
    if (local !== undefined) await chmod(local, 0o444);
  }

  async putManifest(stageId: string, manifest: StageManifest): Promise<void> {
    validateManifest(manifest);
    if (stageIdOf(manifest) !== stageId) {
      throw new WeftError(Status.INVALID_ARGUMENT, `manifest does not match stage id ${stageId}`);
    }
    const missing = await this.missing([...new Set(manifest.files.map((f) => f.hash))]);
    if (missing.length > 0) {
      throw new WeftError(
        Status.FAILED_PRECONDITION,
        `${missing.length} file(s) of stage ${stageId} were not uploaded (first: ${missing[0]})`,
      );
    }
    await this.blobs.put(manifestKey(stageId), [Buffer.from(canonicalJson(manifest))]);
  }

  /** Whether a stage's manifest is stored (and so, all of its content). */
  hasManifest(stageId: string): Promise<boolean> {
    return this.blobs.has(manifestKey(stageId));
  }

  /** The manifest stored under a stage id; NOT_FOUND when there is none. */
  async getManifest(stageId: string): Promise<StageManifest> {
    const text = (await this.blobs.get(manifestKey(stageId))).toString('utf8');
    const manifest = validateManifest(JSON.parse(text));
    if (stageIdOf(manifest) !== stageId) {
      throw new WeftError(Status.DATA_LOSS, `stored manifest does not match stage id ${stageId}`);
    }
    return manifest;
  }

  get(hash: string): Promise<Buffer> {
    return this.blobs.get(contentKey(hash));
  }

  localPath(hash: string): string | undefined {
    return this.blobs.localPath?.(contentKey(hash));
  }
}
