import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { writeFileAtomic } from '@weft/common';
import { canonicalJson, sha256, stageIdOf, validateManifest, type StageManifest } from './manifest.js';

/** Content of a file to upload: the bytes, or a stream of them for large files. */
export type BlobData = Uint8Array | Readable;

/**
 * Where stages are uploaded: a content-addressed store of file contents plus
 * the manifests. This is the part of the server the client needs for
 * staging; the gRPC client implements it over the wire.
 */
export interface StageStore {
  /** The hashes, of those given, that the store does not hold yet. */
  missing(hashes: readonly string[]): Promise<string[]>;
  /** Stores content under its sha256. Must reject content whose hash is not `hash`. */
  put(hash: string, data: BlobData): Promise<void>;
  /** Stores a manifest under its stage id, after all its files are stored. */
  putManifest(stageId: string, manifest: StageManifest): Promise<void>;
}

/** What materializing a stage reads from: the content of each file by hash. */
export interface StageReader {
  get(hash: string): Promise<Buffer>;
  /**
   * The path of the content on this machine's filesystem, when the store is
   * a local directory; materializing then hardlinks instead of copying. The
   * file must never be changed in place.
   */
  localPath?(hash: string): string | undefined;
}

const HASH = /^[0-9a-f]{64}$/;

function checkHash(hash: string): void {
  if (!HASH.test(hash)) throw new Error(`not a sha256 hash: ${JSON.stringify(hash)}`);
}

async function collect(data: BlobData): Promise<Buffer> {
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const chunks: Buffer[] = [];
  for await (const chunk of data) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** A {@link StageStore} and {@link StageReader} in memory, for tests and for running in-process. */
export class MemoryStageStore implements StageStore, StageReader {
  readonly blobs = new Map<string, Buffer>();
  readonly manifests = new Map<string, StageManifest>();
  /** How many `put` calls stored content. */
  puts = 0;

  missing(hashes: readonly string[]): Promise<string[]> {
    return Promise.resolve(hashes.filter((h) => !this.blobs.has(h)));
  }

  async put(hash: string, data: BlobData): Promise<void> {
    checkHash(hash);
    const bytes = await collect(data);
    if (sha256(bytes) !== hash) throw new Error(`content does not match its hash ${hash}`);
    this.blobs.set(hash, Buffer.from(bytes));
    this.puts++;
  }

  putManifest(stageId: string, manifest: StageManifest): Promise<void> {
    validateManifest(manifest);
    if (stageIdOf(manifest) !== stageId)
      return Promise.reject(new Error(`manifest does not match stage id ${stageId}`));
    for (const f of manifest.files) {
      if (!this.blobs.has(f.hash)) return Promise.reject(new Error(`manifest file ${f.path} was not uploaded`));
    }
    this.manifests.set(stageId, manifest);
    return Promise.resolve();
  }

  get(hash: string): Promise<Buffer> {
    const blob = this.blobs.get(hash);
    return blob ? Promise.resolve(blob) : Promise.reject(new Error(`no content ${hash}`));
  }
}

/**
 * A {@link StageStore} and {@link StageReader} in a directory: content at
 * `dir/cas/<first two hex digits>/<hash>`, manifests at
 * `dir/stages/<stageId>.json`. Content is verified against its hash as it is
 * written, and written atomically (temporary file, then rename), so readers
 * never see a partial or wrong file. Content files are read-only (0o444)
 * because materialized stages hardlink them.
 */
export class FsStageStore implements StageStore, StageReader {
  constructor(readonly dir: string) {}

  /** Where the content with this hash is (or would be) stored. */
  blobPath(hash: string): string {
    checkHash(hash);
    return join(this.dir, 'cas', hash.slice(0, 2), hash);
  }

  async missing(hashes: readonly string[]): Promise<string[]> {
    const present = await Promise.all(
      hashes.map((h) =>
        stat(this.blobPath(h)).then(
          () => true,
          () => false,
        ),
      ),
    );
    return hashes.filter((_h, i) => !present[i]);
  }

  async put(hash: string, data: BlobData): Promise<void> {
    const target = this.blobPath(hash);
    const tmpDir = join(this.dir, 'tmp');
    await mkdir(tmpDir, { recursive: true });
    await mkdir(join(this.dir, 'cas', hash.slice(0, 2)), { recursive: true });
    const tmp = join(tmpDir, `${hash}.${randomBytes(6).toString('hex')}`);
    const digest = createHash('sha256');
    const source = data instanceof Uint8Array ? Readable.from([data]) : data;
    try {
      await pipeline(
        source,
        async function* (chunks: AsyncIterable<Uint8Array>) {
          for await (const chunk of chunks) {
            digest.update(chunk);
            yield chunk;
          }
        },
        createWriteStream(tmp, { mode: 0o444 }),
      );
      const actual = digest.digest('hex');
      if (actual !== hash) throw new Error(`content does not match its hash: expected ${hash}, got ${actual}`);
      await chmod(tmp, 0o444);
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async putManifest(stageId: string, manifest: StageManifest): Promise<void> {
    validateManifest(manifest);
    if (stageIdOf(manifest) !== stageId) throw new Error(`manifest does not match stage id ${stageId}`);
    const missing = await this.missing([...new Set(manifest.files.map((f) => f.hash))]);
    if (missing.length > 0) throw new Error(`${missing.length} file(s) of stage ${stageId} were not uploaded`);
    await writeFileAtomic(join(this.dir, 'stages', `${stageId}.json`), [Buffer.from(canonicalJson(manifest))]);
  }

  /** The manifest stored under a stage id. */
  async getManifest(stageId: string): Promise<StageManifest> {
    if (!HASH.test(stageId)) throw new Error(`not a stage id: ${JSON.stringify(stageId)}`);
    const text = await readFile(join(this.dir, 'stages', `${stageId}.json`), 'utf8');
    const manifest = validateManifest(JSON.parse(text));
    if (stageIdOf(manifest) !== stageId) throw new Error(`stored manifest does not match stage id ${stageId}`);
    return manifest;
  }

  get(hash: string): Promise<Buffer> {
    return readFile(this.blobPath(hash));
  }

  localPath(hash: string): string {
    return this.blobPath(hash);
  }
}
