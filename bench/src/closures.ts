/**
 * Closure benchmarks against a `weft server` child process: round trip of a
 * tiny function on a warm worker with a cached stage, the same on a cold
 * worker, staging an unchanged project, and the first staging of the
 * README's closure example.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { credentials } from '@grpc/grpc-js';
import { ClosuresStageStore, HashCache, RunEnvironment, Submitter, locate, planStage, uploadStage } from '@weft/client';
import { ClosuresClient } from '@weft/proto';
import { ServerChild } from './schedules.js';
import { summarize, type Summary } from './stats.js';
import { ALGORITHMS_DIR, BENCH_DIR } from './util.js';

export interface ClosureResult {
  warm: Summary;
  cold: Summary;
  staging: {
    /** Files of the project staged (the function's module and what it imports). */
    files: number;
    /** First staging in a process with an empty hash cache: hash everything, upload what the server lacks. */
    firstMs: number;
    /** Unchanged project, hash cache warm: stat every file, one MissingBlobs, one PutManifest. */
    unchanged: Summary;
  }[];
}

/** The README's closure example (`extractEnv` of examples/closures) staged the first time. */
export interface ReadmeStaging {
  files: number;
  bytes: number;
  /** Contents uploaded (all of them: the server is new). */
  uploaded: number;
  /** Planning (hashing every file) and uploading, as the section 7 staging numbers measure it. */
  ms: number;
  /** Finding the function first (locate), not part of ms: the inspector's first use dominates it. */
  locateMs: number;
}

const README_EXAMPLE = join(BENCH_DIR, '..', 'examples', 'closures', 'dist', 'full.js');

async function importReadmeExample(): Promise<(cmd: string) => unknown> {
  const { extractEnv } = (await import(pathToFileURL(README_EXAMPLE).href)) as {
    extractEnv: (cmd: string) => unknown;
  };
  return extractEnv;
}

/**
 * The first staging of the README's closure example against a server that
 * has never seen it, with the hash cache pointed at an empty directory (as a
 * user's first run): plan (hash every file), upload, manifest.
 */
export async function readmeFirstStaging(): Promise<ReadmeStaging> {
  const s = await ServerChild.start('closures-readme');
  const client = new ClosuresClient(s.address, credentials.createInsecure());
  const cacheDir = mkdtempSync(join(tmpdir(), 'weft-bench-hash-cache-'));
  try {
    const extractEnv = await importReadmeExample();
    let t0 = performance.now();
    const located = locate(extractEnv);
    const locateMs = performance.now() - t0;
    t0 = performance.now();
    const plan = await planStage(located, { hashCache: new HashCache({ dir: cacheDir }) });
    const r = await uploadStage(plan, new ClosuresStageStore(client));
    const ms = performance.now() - t0;
    return {
      files: plan.manifest.files.length,
      bytes: plan.manifest.files.reduce((n, f) => n + f.size, 0),
      uploaded: r.newlyUploaded,
      ms,
      locateMs,
    };
  } finally {
    client.close();
    await s.close();
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

type Add = (a: number, b: number) => number;

async function stagingTimes(
  client: InstanceType<typeof ClosuresClient>,
  fn: (...a: never[]) => unknown,
  runs: number,
): Promise<ClosureResult['staging'][number]> {
  const store = new ClosuresStageStore(client);
  const cache = new HashCache({ dir: null });
  const located = locate(fn);
  let t0 = performance.now();
  const plan = await planStage(located, { hashCache: cache });
  await uploadStage(plan, store);
  const firstMs = performance.now() - t0;
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    t0 = performance.now();
    const p = await planStage(locate(fn), { hashCache: cache });
    const r = await uploadStage(p, store);
    samples.push(performance.now() - t0);
    if (r.newlyUploaded !== 0) throw new Error('an unchanged project uploaded files');
  }
  return { files: plan.manifest.files.length, firstMs, unchanged: summarize(samples) };
}

export async function closureRoundTrips(opts: { warmup: number; runs: number; cold: number }): Promise<ClosureResult> {
  const s = await ServerChild.start('closures');
  const weft = new Submitter({ server: s.address, logs: false, log: () => undefined });
  const client = new ClosuresClient(s.address, credentials.createInsecure());
  try {
    const { add } = (await import(pathToFileURL(join(ALGORITHMS_DIR, 'closures', 'fns.mjs')).href)) as { add: Add };
    for (let i = 0; i < opts.warmup; i++) await weft.submit(add, [i, 1]);
    const warm: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      const t0 = performance.now();
      const r = await weft.submit(add, [i, 1]);
      warm.push(performance.now() - t0);
      if (r !== i + 1) throw new Error(`add(${i}, 1) gave ${r}`);
    }
    // A new resource shape has no worker yet: each of these starts one.
    const cold: number[] = [];
    for (let i = 0; i < opts.cold; i++) {
      const env = RunEnvironment.defaults().withRequest({ cpu: 0.1, memory: `${200 + i}Mi` });
      const t0 = performance.now();
      await weft.submit(add, [i, 1], env);
      cold.push(performance.now() - t0);
    }
    const extractEnv = await importReadmeExample();
    const staging = [await stagingTimes(client, add, 20), await stagingTimes(client, extractEnv, 10)];
    return { warm: summarize(warm), cold: summarize(cold), staging };
  } finally {
    await weft.close();
    client.close();
    await s.close();
  }
}
