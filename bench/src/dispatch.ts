/**
 * Benchmarks at the level of the dispatcher: the real Dispatcher and
 * LocalExecutor (a real sidecar process and a real algorithm process per
 * worker), the Workers gRPC stream on loopback, and nothing else (no job
 * engine, no state store, no Jobs API).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { FsBlobStore, createLogger, decode, encode } from '@weft/common';
import {
  DEFAULT_DISPATCHER_CONFIG,
  Dispatcher,
  LocalExecutor,
  Metrics,
  systemClock,
  workersService,
  type AlgorithmDef,
  type Outcome,
  type WorkUnit,
} from '@weft/control-plane';
import { WorkersService } from '@weft/proto';
import { summarize, type Summary } from './stats.js';
import { ALGORITHMS_DIR, LoadMonitor, MiB, parentPid, procCpuMs, sleep, type LoadReport } from './util.js';

function failure(o: Outcome): Error | undefined {
  if (o.status === 'succeeded') return undefined;
  return new Error(`unit ${o.status}${o.status === 'failed' ? `: ${o.failure.type}: ${o.failure.message}` : ''}`);
}

/** The empty task's algorithm in each language: `bench/algorithms/empty` (Node) and `empty-py` (Python). */
export type BenchEnv = 'nodejs' | 'python';
const EMPTY: Record<BenchEnv, { name: string; entryPoint: string }> = {
  nodejs: { name: 'empty', entryPoint: 'index.js' },
  python: { name: 'empty-py', entryPoint: 'main.py' },
};

/** A dispatcher serving one pool of `empty` (or `empty-py`) workers. */
class Harness {
  private seq = 0;
  private constructor(
    readonly dir: string,
    readonly dispatcher: Dispatcher,
    private readonly executor: LocalExecutor,
    private readonly server: Server,
    readonly algorithm: string,
  ) {}

  static async start(workers: number, env: BenchEnv = 'nodejs'): Promise<Harness> {
    const dir = mkdtempSync(join(tmpdir(), 'weft-bench-dispatch-'));
    const log = createLogger({ component: 'bench-dispatch' }, 'warn');
    const def: AlgorithmDef = {
      name: EMPTY[env].name,
      env,
      codePath: join(ALGORITHMS_DIR, EMPTY[env].name),
      codeStage: '',
      entryPoint: EMPTY[env].entryPoint,
      image: '',
      cpu: 0.1,
      memBytes: 128 * MiB,
      gpu: 0,
      minHotWorkers: workers,
      maxWorkers: workers,
      env_vars: {},
    };
    const executor = new LocalExecutor({ logDir: join(dir, 'logs'), log });
    let address = '';
    const dispatcher = new Dispatcher({
      executor,
      algorithm: (name) => (name === def.name ? def : undefined),
      storageUrl: new FsBlobStore(join(dir, 'blobs')).url,
      serverAddress: () => address,
      config: { ...DEFAULT_DISPATCHER_CONFIG },
      clock: systemClock,
      metrics: new Metrics(),
      log,
    });
    dispatcher.start();
    const server = new Server({
      'grpc.max_receive_message_length': 256 * MiB,
      'grpc.max_send_message_length': 256 * MiB,
    });
    server.addService(
      WorkersService,
      workersService((link) => dispatcher.attach(link)),
    );
    const port = await new Promise<number>((res, rej) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
    );
    address = `127.0.0.1:${port}`;
    return new Harness(dir, dispatcher, executor, server, def.name);
  }

  unit(value?: unknown): WorkUnit {
    const i = this.seq++;
    return {
      taskId: `bench:${i}`,
      jobId: 'bench',
      algorithmName: this.algorithm,
      nodeName: 'empty',
      pipelineName: 'bench',
      batchIndex: i,
      input: encode([value ?? i]),
      inputKeys: [],
      outputKey: `bench/${i}`,
      savePaths: [],
      priority: 3,
      kind: 'pipeline',
      retry: { policy: 'Never', limit: 0 },
    };
  }

  /** Runs n units one after another, the next submitted from onDone; returns each unit's submit→onDone time. */
  sequential(n: number): Promise<Float64Array> {
    return new Promise((resolve, reject) => {
      const out = new Float64Array(n);
      let i = 0;
      const next = (): void => {
        const u = this.unit();
        const t0 = performance.now();
        this.dispatcher.submit(u, {
          onDone: (o) => {
            out[i] = performance.now() - t0;
            const err = failure(o);
            if (err) return reject(err);
            if (++i === n) resolve(out);
            else next();
          },
        });
      };
      next();
    });
  }

  /** Submits n units at once; resolves with their decoded results when all are done. */
  burst(n: number, value?: unknown): Promise<unknown[]> {
    return new Promise((resolve, reject) => {
      const results: unknown[] = [];
      let done = 0;
      for (let i = 0; i < n; i++) {
        this.dispatcher.submit(this.unit(value), {
          onDone: (o) => {
            const err = failure(o);
            if (err) return reject(err);
            if (o.status === 'succeeded' && o.result.kind?.$case === 'inline')
              results.push(decode(o.result.kind.value));
            if (++done === n) resolve(results);
          },
        });
      }
    });
  }

  /** Waits until `n` distinct algorithm processes have answered; returns their pids. */
  async warm(n: number, timeoutMs = 30_000): Promise<number[]> {
    const pids = new Set<number>();
    const deadline = Date.now() + timeoutMs;
    while (pids.size < n) {
      if (Date.now() > deadline) throw new Error(`only ${pids.size} of ${n} workers came up within ${timeoutMs} ms`);
      for (const v of await this.burst(Math.max(8, 4 * n), { warm: 25 })) if (typeof v === 'number') pids.add(v);
      if (pids.size < n) await sleep(50);
    }
    return [...pids];
  }

  async close(): Promise<void> {
    await this.dispatcher.shutdown();
    await this.executor.shutdown();
    await new Promise<void>((res) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        res();
      }, 2000);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        res();
      });
    });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** CPU used so far by the workers (sidecar + algorithm process), ms. */
function workersCpuMs(algorithmPids: number[]): number {
  let total = 0;
  for (const pid of algorithmPids) {
    const sidecar = parentPid(pid);
    total += (procCpuMs(pid) ?? NaN) + (sidecar ? (procCpuMs(sidecar) ?? NaN) : NaN);
  }
  return total;
}

export interface DispatchResult {
  firstUnitMs: number;
  warmup: number;
  units: number;
  latencyMs: Summary;
  unitsPerSec: number;
  /** Control-plane (this process) CPU per unit, µs. */
  cpCpuUsPerUnit: number;
  /** Sidecar + algorithm process CPU per unit, µs (from /proc). */
  workerCpuUsPerUnit: number | undefined;
  load: LoadReport;
}

/** One warm worker; units one after another; submit→onDone per unit. `env: 'python'` runs the Python empty task. */
export async function dispatchRoundTrip(opts: {
  warmup: number;
  units: number;
  env?: BenchEnv;
}): Promise<DispatchResult> {
  const h = await Harness.start(1, opts.env);
  try {
    const first = await h.sequential(1); // starts the worker: a sidecar process that spawns the algorithm's process
    const pids = await h.warm(1);
    await h.sequential(opts.warmup);
    const load = new LoadMonitor();
    const cpu0 = process.cpuUsage();
    const w0 = workersCpuMs(pids);
    const t0 = performance.now();
    const samples = await h.sequential(opts.units);
    const elapsed = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const workerCpu = workersCpuMs(pids) - w0;
    return {
      firstUnitMs: first[0]!,
      warmup: opts.warmup,
      units: opts.units,
      latencyMs: summarize(Array.from(samples)),
      unitsPerSec: opts.units / (elapsed / 1000),
      cpCpuUsPerUnit: (cpu.user + cpu.system) / opts.units,
      workerCpuUsPerUnit: Number.isFinite(workerCpu) ? (workerCpu * 1000) / opts.units : undefined,
      load: load.stop(),
    };
  } finally {
    await h.close();
  }
}

export interface DispatchBurstResult {
  workers: number;
  units: number;
  ms: number;
  unitsPerSec: number;
  cpCpuUsPerUnit: number;
  workerCpuUsPerUnit: number | undefined;
  load: LoadReport;
}

/** `workers` warm workers; `units` submitted at once: the dispatcher's throughput without engine and store. */
export async function dispatchBurst(opts: {
  workers: number;
  warmup: number;
  units: number;
}): Promise<DispatchBurstResult> {
  const h = await Harness.start(opts.workers);
  try {
    h.dispatcher.ensureHot(h.algorithm);
    const pids = await h.warm(opts.workers);
    await h.burst(opts.warmup);
    const load = new LoadMonitor();
    const cpu0 = process.cpuUsage();
    const w0 = workersCpuMs(pids);
    const t0 = performance.now();
    await h.burst(opts.units);
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const workerCpu = workersCpuMs(pids) - w0;
    return {
      workers: opts.workers,
      units: opts.units,
      ms,
      unitsPerSec: opts.units / (ms / 1000),
      cpCpuUsPerUnit: (cpu.user + cpu.system) / opts.units,
      workerCpuUsPerUnit: Number.isFinite(workerCpu) ? (workerCpu * 1000) / opts.units : undefined,
      load: load.stop(),
    };
  } finally {
    await h.close();
  }
}
