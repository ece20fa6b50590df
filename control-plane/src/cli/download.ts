import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { decode } from '@weft/common';
import type { LeafResult } from '@weft/proto';
import { CliError } from './errors.js';
import { leafLabel } from './output.js';

/** What a downloaded result became. */
export interface WrittenFile {
  nodeName: string;
  /** -1 when the node is not a batch. */
  batchIndex: number;
  /** Path of the file, DIR joined with its name. */
  file: string;
  /** Bytes written. */
  bytes: number;
  /** True for raw bytes of a binary value (.bin), false for msgpack as stored (.msgpack). */
  binary: boolean;
}

/**
 * The file name of one leaf result: `Reduce.msgpack`, `Multiply-2.msgpack`
 * for a batch item, `.bin` for the raw bytes of a binary value. Characters
 * that would leave the directory or break the name become `_`.
 */
export function resultFileName(nodeName: string, batchIndex: number, binary: boolean): string {
  let base = nodeName.replace(/[/\\\0:]/g, '_');
  if (base === '' || base === '.' || base === '..') base = `_${base}`;
  if (batchIndex >= 0) base += `-${batchIndex}`;
  return `${base}.${binary ? 'bin' : 'msgpack'}`;
}

/** Length of the header a msgpack bin value starts with, by its first byte (bin8, bin16, bin32). */
const BIN_HEADER: Readonly<Record<number, number>> = { 0xc4: 2, 0xc5: 3, 0xc6: 5 };

/**
 * Reads the start of a msgpack value: a bin header means the whole value is
 * binary data, whose raw bytes follow the header. Undefined while `prefix` is
 * too short to tell.
 */
export function binHeader(prefix: Uint8Array): { binary: boolean; headerLength: number } | undefined {
  const first = prefix[0];
  if (first === undefined) return undefined;
  const headerLength = BIN_HEADER[first];
  if (headerLength === undefined) return { binary: false, headerLength: 0 };
  return prefix.length >= headerLength ? { binary: true, headerLength } : undefined;
}

/** The start of a streamed msgpack value, and the rest of it. */
export interface SniffedStream {
  /** True when the value is binary data: `rest` then yields its raw bytes, without the bin header. */
  binary: boolean;
  /** The remaining bytes, as they arrive. */
  rest: AsyncIterable<Buffer>;
}

/**
 * Reads chunks of a msgpack value until its header tells whether the value is
 * binary, without holding more than the header back. An empty stream is not
 * binary and yields nothing.
 */
export async function sniffBinary(chunks: AsyncIterable<Uint8Array>): Promise<SniffedStream> {
  const iterator = chunks[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let header: { binary: boolean; headerLength: number } | undefined;
  let ended = false;
  while (!header) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    head = head.length === 0 ? Buffer.from(next.value) : Buffer.concat([head, next.value]);
    header = binHeader(head);
  }
  const first = head.subarray(header?.headerLength ?? 0);
  async function* rest(): AsyncGenerator<Buffer> {
    if (first.length > 0) yield first;
    if (ended) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
    }
  }
  return { binary: header?.binary ?? false, rest: rest() };
}

/** How to fetch a stored result: the chunks of Jobs.DownloadResult. */
export type OpenDownload = (leaf: LeafResult) => AsyncIterable<{ data: Uint8Array; size: number }>;

// The raw bytes of a stored result, checking that all the announced bytes arrived.
async function* storedBytes(leaf: LeafResult, chunks: AsyncIterable<{ data: Uint8Array; size: number }>) {
  let expected: number | undefined;
  let received = 0;
  for await (const chunk of chunks) {
    if (expected === undefined && chunk.size > 0) expected = chunk.size;
    received += chunk.data.length;
    if (chunk.data.length > 0) yield chunk.data;
  }
  if (received === 0) throw new CliError(`${leafLabel(leaf)}: the control plane sent no data`);
  if (expected !== undefined && received !== expected) {
    throw new CliError(`${leafLabel(leaf)}: download ended after ${received} of ${expected} bytes`);
  }
}

/** A file name given out once per download, so no result overwrites another. */
class Names {
  private readonly taken = new Set<string>();

  claim(dir: string, leaf: LeafResult, binary: boolean): string {
    const name = resultFileName(leaf.nodeName, leaf.batchIndex, binary);
    if (this.taken.has(name)) throw new CliError(`${leafLabel(leaf)}: another result was already written to ${name}`);
    this.taken.add(name);
    return join(dir, name);
  }
}

/** A failed write as the user should see it, e.g. `cannot write out/A.bin: ENOSPC`. */
function writeFailure(file: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code) ? new CliError(`cannot write ${file}: ${code}`) : err;
}

/**
 * Writes a stored result, streaming: chunks go to a `.part` file that is
 * renamed once complete, so an interrupted download leaves no file that looks whole.
 */
async function writeStored(dir: string, leaf: LeafResult, open: OpenDownload, names: Names): Promise<WrittenFile> {
  const { binary, rest } = await sniffBinary(storedBytes(leaf, open(leaf)));
  const file = names.claim(dir, leaf, binary);
  const part = `${file}.part`;
  let bytes = 0;
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of rest) {
      bytes += chunk.length;
      yield chunk;
    }
  }
  try {
    await pipeline(counted(), createWriteStream(part));
    await rename(part, file);
  } catch (err) {
    await rm(part, { force: true });
    throw writeFailure(file, err);
  }
  return { nodeName: leaf.nodeName, batchIndex: leaf.batchIndex, file, bytes, binary };
}

// An undecodable result is written as stored; whoever reads it will see why.
function decodeOrUndefined(msgpack: Buffer): unknown {
  try {
    return decode(msgpack);
  } catch {
    return undefined;
  }
}

/** Writes an inline result: its msgpack as it is, or the raw bytes of a binary value. */
async function writeInline(dir: string, leaf: LeafResult, msgpack: Buffer, names: Names): Promise<WrittenFile> {
  const value = decodeOrUndefined(msgpack);
  const data = value instanceof Uint8Array ? value : msgpack;
  const binary = data !== msgpack;
  const file = names.claim(dir, leaf, binary);
  try {
    await writeFile(file, data);
  } catch (err) {
    throw writeFailure(file, err);
  }
  return { nodeName: leaf.nodeName, batchIndex: leaf.batchIndex, file, bytes: data.length, binary };
}

/**
 * Writes every leaf result to a file in `dir` (created if missing), one after
 * another, calling `onWritten` after each. Leaves without a payload are
 * passed to `onSkipped`.
 */
export async function downloadResults(
  dir: string,
  results: readonly LeafResult[],
  open: OpenDownload,
  on: { written(file: WrittenFile): void; skipped(leaf: LeafResult): void },
): Promise<WrittenFile[]> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(`cannot create ${dir}: ${code ?? (err instanceof Error ? err.message : String(err))}`);
  }
  const written: WrittenFile[] = [];
  const names = new Names();
  for (const leaf of results) {
    const kind = leaf.result?.kind;
    if (!kind) {
      on.skipped(leaf);
      continue;
    }
    const file =
      kind.$case === 'inline'
        ? await writeInline(dir, leaf, kind.value, names)
        : await writeStored(dir, leaf, open, names);
    written.push(file);
    on.written(file);
  }
  return written;
}
