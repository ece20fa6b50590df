/** Benchmarks through the full control plane and its Jobs gRPC API. */
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Bench } from './cp.js';
import { median, summarize, type Summary } from './stats.js';
import { LoadMonitor, MiB, parentPid, procCpuMs, sleep, type LoadReport } from './util.js';

/** Runs small batches of { warm } items until `n` distinct worker processes have answered. */
export async function warmPool(b: Bench, alg: string, n: number, timeoutMs = 30_000): Promise<number[]> {
  const pids = new Set<number>();
  const deadline = Date.now() + timeoutMs;
  while (pids.size < n) {
    if (Date.now() > deadline)
      throw new Error(`only ${pids.size} of ${n} "${alg}" workers came up within ${timeoutMs} ms`);
    const items = Array.from({ length: Math.max(20, 4 * n) }, () => ({ warm: 25 }));
    const r = await b.run(`warm-${alg}`, [{ nodeName: 'W', algorithmName: alg, input: ['#@flowInput.items'] }], {
      items,
    });
    for (const v of await b.values(r.jobId)) if (typeof v === 'number') pids.add(v);
    if (pids.size < n) await sleep(50);
  }
  return [...pids];
}

export interface LatencyResult {
  jobs: number;
  latencyMs: Summary;
  /** Of which ExecRaw's answer. */
  execRawMs: Summary;
  load: LoadReport;
}

/** Exec → completed of a one-node pipeline, sequential jobs on a warm worker. */
export async function execLatency(b: Bench, alg: string, warmup: number, jobs: number): Promise<LatencyResult> {
  const nodes = [{ nodeName: 'E', algorithmName: alg, input: ['@flowInput.x'] }];
  for (let i = 0; i < warmup; i++) await b.run('latency', nodes, { x: i });
  const samples: number[] = [];
  const execRaw: number[] = [];
  const load = new LoadMonitor();
  for (let i = 0; i < jobs; i++) {
    const r = await b.run('latency', nodes, { x: i });
    samples.push(r.ms);
    execRaw.push(r.execRawMs);
  }
  const loadReport = load.stop();
  const check = await b.run('latency', nodes, { x: 1 });
  const v = await b.values(check.jobId);
  if (v.length !== 1 || v[0] !== null) throw new Error(`unexpected result of the empty task: ${JSON.stringify(v)}`);
  return { jobs, latencyMs: summarize(samples), execRawMs: summarize(execRaw), load: loadReport };
}

export interface BatchResult {
  maxWorkers: number;
  items: number;
  ms: number;
  tasksPerSec: number;
  /** CPU time during the batch, ms: this process (control plane + client), the sidecars, the algorithm processes. */
  cpuMs: { controlPlane: number; sidecars: number | undefined; algorithms: number | undefined };
  load: LoadReport;
}

function workerCpu(pids: number[]): { sidecars: number | undefined; algorithms: number | undefined } {
  let alg = 0;
  let side = 0;
  for (const pid of pids) {
    const a = procCpuMs(pid);
    const pp = parentPid(pid);
    const s = pp ? procCpuMs(pp) : undefined;
    if (a === undefined || s === undefined) return { sidecars: undefined, algorithms: undefined };
    alg += a;
    side += s;
  }
  return { sidecars: side, algorithms: alg };
}

/** One job whose single node fans out over `items` small numbers. */
export async function batchThroughput(
  b: Bench,
  alg: string,
  maxWorkers: number,
  items: number,
  pids: number[],
): Promise<BatchResult> {
  const flow = { items: Array.from({ length: items }, (_, i) => i) };
  const nodes = [{ nodeName: 'B', algorithmName: alg, input: ['#@flowInput.items'] }];
  const load = new LoadMonitor();
  const c0 = process.cpuUsage();
  const w0 = workerCpu(pids);
  const r = await b.run('batch', nodes, flow);
  const c1 = process.cpuUsage(c0);
  const w1 = workerCpu(pids);
  const loadReport = load.stop();
  const res = await b.result(r.jobId);
  if (res.results.length !== items)
    throw new Error(`batch job returned ${res.results.length} results, expected ${items}`);
  const diff = (x: number | undefined, y: number | undefined): number | undefined =>
    x === undefined || y === undefined ? undefined : y - x;
  return {
    maxWorkers,
    items,
    ms: r.ms,
    tasksPerSec: items / (r.ms / 1000),
    cpuMs: {
      controlPlane: (c1.user + c1.system) / 1000,
      sidecars: diff(w0.sidecars, w1.sidecars),
      algorithms: diff(w0.algorithms, w1.algorithms),
    },
    load: loadReport,
  };
}

/** A fresh control plane with one pool of `empty` workers, warm; then the 10,000-item batch. */
export async function batchOnFreshPlane(
  maxWorkers: number,
  items: number,
  jitWarmupItems: number,
): Promise<BatchResult> {
  const b = await Bench.start(`batch${maxWorkers}`);
  try {
    const alg = 'empty';
    await b.apply({ name: alg, code: 'empty', minHotWorkers: maxWorkers, maxWorkers });
    const pids = await warmPool(b, alg, maxWorkers);
    await b.run('warm-batch', [{ nodeName: 'B', algorithmName: alg, input: ['#@flowInput.items'] }], {
      items: Array.from({ length: jitWarmupItems }, (_, i) => i),
    });
    return await batchThroughput(b, alg, maxWorkers, items, pids);
  } finally {
    await b.close();
  }
}

export interface CopyResult {
  /** Destination files kept (until both kinds of copy are done), as blob files are: every copy writes into new pages. */
  keptMs: number[];
  keptMiBps: number;
  /** Each destination deleted right after its copy (its page-cache pages are recycled by the next copy). */
  deletedMs: number[];
  deletedMiBps: number;
}

export interface HandoffResult {
  sizeMiB: number;
  runs: number;
  handoffMs: number[];
  medianHandoffMs: number;
  handoffMiBps: number;
  /** Producer returns → its blob file renamed into place (file ctime; filesystem clock granularity is a few ms). */
  producerWriteMs: number[];
  /** Blob renamed → consumer's start runs: control-plane hop, consumer's read and decode. */
  hopAndReadMs: number[];
  jobMs: number[];
  copyFileSync: CopyResult;
  readWrite: CopyResult & { keptReadMs: number[]; keptWriteMs: number[] };
  load: LoadReport;
}

/**
 * The 64 MiB hand-off pipeline on a control plane: bigproducer → bigconsumer,
 * each stamping its moment. The returned function runs it once and checks
 * what the consumer got.
 */
export async function handoffPipeline(
  b: Bench,
): Promise<
  (run: number) => Promise<{ jobId: string; handoffMs: number; jobMs: number; producedAt: number; consumedAt: number }>
> {
  const SIZE = 64 * MiB;
  const tsDir = join(b.dir, 'stamps');
  mkdirSync(tsDir, { recursive: true });
  const env = { BENCH_TS_DIR: tsDir };
  await b.apply({ name: 'bigproducer', code: 'bigproducer', minHotWorkers: 1, maxWorkers: 1, mem: '512Mi', env });
  await b.apply({ name: 'bigconsumer', code: 'bigconsumer', minHotWorkers: 1, maxWorkers: 1, mem: '512Mi', env });
  const nodes = [
    { nodeName: 'P', algorithmName: 'bigproducer', input: ['@flowInput.run'] },
    { nodeName: 'C', algorithmName: 'bigconsumer', input: ['@P'] },
  ];
  const stamp = (who: string, jobId: string): number => Number(readFileSync(join(tsDir, `${who}-${jobId}`), 'utf8'));
  return async (run) => {
    const r = await b.run('handoff', nodes, { run });
    const v = await b.values(r.jobId);
    if (v[0] !== SIZE) throw new Error(`consumer returned ${JSON.stringify(v)}, expected ${SIZE}`);
    const producedAt = stamp('producer', r.jobId);
    const consumedAt = stamp('consumer', r.jobId);
    return { jobId: r.jobId, handoffMs: consumedAt - producedAt, jobMs: r.ms, producedAt, consumedAt };
  };
}

/** 64 MiB from a producer node to a consumer node via the filesystem blob store, against plain copies. */
export async function handoff(runs: number): Promise<HandoffResult> {
  const SIZE = 64 * MiB;
  const b = await Bench.start('handoff');
  try {
    const run = await handoffPipeline(b);
    const once = async (i: number): Promise<{ handoff: number; job: number; write: number; rest: number }> => {
      const r = await run(i);
      // The engine's blob key of node 0's result (an internal layout: skipped when it changes).
      const blob = join(b.dir, 'blobs', 'jobs', r.jobId, '0', '0');
      const renamed = existsSync(blob) ? statSync(blob).ctimeMs : NaN;
      return { handoff: r.handoffMs, job: r.jobMs, write: renamed - r.producedAt, rest: r.consumedAt - renamed };
    };
    await once(-1); // warm: both workers up, the producer's buffer built
    const load = new LoadMonitor();
    const handoffMs: number[] = [];
    const jobMs: number[] = [];
    const producerWriteMs: number[] = [];
    const hopAndReadMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      const r = await once(i);
      handoffMs.push(r.handoff);
      jobMs.push(r.job);
      producerWriteMs.push(r.write);
      hopAndReadMs.push(r.rest);
    }
    const loadReport = load.stop();

    // Plain copies of a 64 MiB file on the same filesystem (the data dir), source in the page cache.
    const src = join(b.dir, 'copy-src.bin');
    const data = Buffer.allocUnsafe(SIZE);
    for (let i = 0; i < SIZE; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    writeFileSync(src, data);
    readFileSync(src);
    let seq = 0;
    const kept: string[] = [];
    /** One discarded warm-up copy, then `runs` timed ones. */
    const time = (fn: (dst: string) => number[], keep: boolean): number[][] => {
      const out: number[][] = [];
      for (let i = 0; i <= runs; i++) {
        const dst = join(b.dir, `copy-dst-${seq++}.bin`);
        const parts = fn(dst);
        if (keep) kept.push(dst);
        else unlinkSync(dst);
        if (i > 0) out.push(parts);
      }
      return out;
    };
    const copy = (dst: string): number[] => {
      const t0 = performance.now();
      copyFileSync(src, dst);
      return [performance.now() - t0];
    };
    const readWrite = (dst: string): number[] => {
      const t0 = performance.now();
      const buf = readFileSync(src);
      const t1 = performance.now();
      writeFileSync(dst, buf);
      const t2 = performance.now();
      return [t2 - t0, t1 - t0, t2 - t1];
    };
    // Kept files first, all kept until both have run: each copy then lands in
    // newly allocated page-cache pages, as every blob does. Deleting a file
    // hands its pages to the next write, which on this VM is far cheaper.
    const copyKept = time(copy, true);
    const rwKept = time(readWrite, true);
    for (const k of kept) unlinkSync(k);
    const copyDeleted = time(copy, false);
    const rwDeleted = time(readWrite, false);
    const mibps = (ms: number): number => SIZE / MiB / (ms / 1000);
    const col = (rows: number[][], k: number): number[] => rows.map((r) => r[k]!);
    const medianHandoffMs = median(handoffMs);
    return {
      sizeMiB: SIZE / MiB,
      runs,
      handoffMs,
      medianHandoffMs,
      handoffMiBps: mibps(medianHandoffMs),
      producerWriteMs,
      hopAndReadMs,
      jobMs,
      copyFileSync: {
        keptMs: col(copyKept, 0),
        keptMiBps: mibps(median(col(copyKept, 0))),
        deletedMs: col(copyDeleted, 0),
        deletedMiBps: mibps(median(col(copyDeleted, 0))),
      },
      readWrite: {
        keptMs: col(rwKept, 0),
        keptMiBps: mibps(median(col(rwKept, 0))),
        keptReadMs: col(rwKept, 1),
        keptWriteMs: col(rwKept, 2),
        deletedMs: col(rwDeleted, 0),
        deletedMiBps: mibps(median(col(rwDeleted, 0))),
      },
      load: loadReport,
    };
  } finally {
    await b.close();
  }
}
