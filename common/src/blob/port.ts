/**
 * The blob store port: where payloads (task results, large inputs), closure
 * stages and algorithm code live. One adapter per storage system: a directory
 * (`fs:`, the embedded default's shared volume) and S3 or any S3-compatible
 * store (`s3://`).
 *
 * Contract every adapter keeps (checked by `blob-store.contract.ts`):
 * - Keys are slash-separated relative paths; empty, `.` and `..` segments and
 *   a leading `/` are refused with INVALID_ARGUMENT.
 * - A write is atomic: a reader sees the whole new blob or the whole old one
 *   (or NOT_FOUND), never a part. A failed write leaves nothing visible.
 * - When a write's promise resolves, the blob is durable in the store and
 *   visible to every reader, on any machine, at once (S3 is strongly
 *   consistent for this since 2020; a directory is after rename).
 * - A missing key is a {@link WeftError} with NOT_FOUND from get, read,
 *   size and getToFile; has() answers false.
 * - Blobs are immutable by convention: the same key is written again only
 *   with the same content (a retried task), so readers need no locking.
 */
import type { Readable } from 'node:stream';

/** Bytes to store: chunks in memory, or a stream for payloads too large to hold. */
export type BlobBody = readonly Uint8Array[] | Readable | AsyncIterable<Uint8Array>;

export interface BlobStore {
  /**
   * Where this store lives, as {@link openBlobStore} accepts it. Sent to
   * sidecars, so it carries no secrets: credentials come from each process's
   * environment.
   */
  readonly url: string;
  /** Writes the chunks one after another as one blob; returns its size. */
  put(key: string, parts: readonly Uint8Array[]): Promise<number>;
  /** Writes a stream as one blob with bounded memory; returns its size. */
  putStream(key: string, body: Readable | AsyncIterable<Uint8Array>): Promise<number>;
  /** Uploads a local file as one blob; returns its size. */
  putFile(key: string, path: string): Promise<number>;
  get(key: string): Promise<Buffer>;
  /** Downloads a blob into a local file, atomically (temporary file, then rename); returns its size. */
  getToFile(key: string, path: string): Promise<number>;
  /**
   * Reads a blob in chunks, for results too large to hold in memory;
   * `start`/`end` (inclusive) read a byte range.
   */
  read(key: string, opts?: { chunkSize?: number; start?: number; end?: number }): AsyncIterable<Uint8Array>;
  /** The blob's size in bytes. */
  size(key: string): Promise<number>;
  has(key: string): Promise<boolean>;
  /** Keys under a prefix, in no particular order. */
  list(prefix: string): AsyncIterable<string>;
  /** Deletes every blob whose key starts with prefix (batched on S3). */
  deletePrefix(prefix: string): Promise<void>;
  /**
   * Verifies the settings at start (the directory is writable; the bucket
   * exists, the credentials are accepted, the endpoint answers). Throws a
   * WeftError whose message names the setting at fault.
   */
  check(): Promise<void>;
  /**
   * The blob's path on this machine's filesystem, when the store is a
   * directory. Processes that share the volume read it there directly, which
   * keeps large payloads off every socket.
   */
  localPath?(key: string): string;
  /** Releases connections. */
  close(): Promise<void>;
}
