import { once } from 'node:events';
import type { ServiceError } from '@grpc/grpc-js';
import type { ClosuresClient } from '@weft/proto';
import { canonicalJson } from './manifest.js';
import type { StageManifest } from './manifest.js';
import type { BlobData, StageStore } from './store.js';

/** Bytes per PutBlob message. */
export const BLOB_CHUNK_BYTES = 1024 * 1024;

/**
 * A {@link StageStore} on the server's Closures service: `missing` is
 * MissingBlobs, `put` streams PutBlob in chunks of {@link BLOB_CHUNK_BYTES}
 * (the first one names the hash; the server checks the content against it),
 * and `putManifest` sends the manifest's canonical JSON, whose sha256 is the
 * stage id.
 *
 * Failures are the calls' own `ServiceError`s, untranslated, so that a
 * caller can tell a lost connection (worth staging again: every step is
 * idempotent) from a refusal.
 */
export class ClosuresStageStore implements StageStore {
  constructor(private readonly client: ClosuresClient) {}

  missing(hashes: readonly string[]): Promise<string[]> {
    if (hashes.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.client.missingBlobs({ hashes: [...hashes] }, (err, res) => (err ? reject(err) : resolve(res.hashes)));
    });
  }

  put(hash: string, data: BlobData): Promise<void> {
    return new Promise((resolve, reject) => {
      let answered = false;
      let answer: () => void = () => undefined;
      const answeredNow = new Promise<void>((r) => (answer = r));
      const call = this.client.putBlob((err: ServiceError | null) => {
        answered = true;
        answer();
        if (err) reject(err);
        else resolve();
      });
      const send = async (): Promise<void> => {
        let first = true;
        for await (const chunk of chunksOf(data)) {
          // The server may refuse early (a hash it will not take); stop sending then.
          if (answered) return;
          const flowing = call.write({ hash: first ? hash : '', data: chunk });
          first = false;
          // Without this, a large file would be read into grpc-js's buffers at disk speed.
          if (!flowing) await Promise.race([once(call, 'drain'), answeredNow]);
        }
        // An empty file is still one message: the hash has to arrive.
        if (first) call.write({ hash, data: Buffer.alloc(0) });
        call.end();
      };
      send().catch((err: unknown) => {
        call.cancel();
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  putManifest(stageId: string, manifest: StageManifest): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.putManifest({ stageId, manifestJson: canonicalJson(manifest) }, (err) =>
        err ? reject(err) : resolve(),
      );
    });
  }
}

/** The content in pieces of exactly BLOB_CHUNK_BYTES (the last one shorter), without copying bytes given whole. */
async function* chunksOf(data: BlobData): AsyncGenerator<Buffer> {
  if (data instanceof Uint8Array) {
    const all = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    for (let at = 0; at < all.length; at += BLOB_CHUNK_BYTES) yield all.subarray(at, at + BLOB_CHUNK_BYTES);
    return;
  }
  let pending: Buffer[] = [];
  let size = 0;
  for await (const piece of data) {
    const buf = Buffer.isBuffer(piece) ? piece : Buffer.from(piece as Uint8Array);
    pending.push(buf);
    size += buf.length;
    while (size >= BLOB_CHUNK_BYTES) {
      const joined = Buffer.concat(pending, size);
      yield joined.subarray(0, BLOB_CHUNK_BYTES);
      const rest = joined.subarray(BLOB_CHUNK_BYTES);
      pending = rest.length > 0 ? [rest] : [];
      size = rest.length;
    }
  }
  if (size > 0) yield Buffer.concat(pending, size);
}
