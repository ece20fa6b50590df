/**
 * Warm dispatch round trip at the level of the dispatcher: the real
 * Dispatcher, LocalExecutor (a real sidecar process and a real algorithm
 * process), the Workers gRPC stream on loopback, and nothing else (no job
 * engine, no store).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials, type ServerDuplexStream, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { FsBlobStore, createLogger, decode, encode } from '@weft/common';
import {
  DEFAULT_DISPATCHER_CONFIG,
  Dispatcher,
  LocalExecutor,
  Metrics,
  type AlgorithmDef,
  type Outcome,
  type WorkUnit,
} from '@weft/control-plane';
import { WorkersService, type WorkerCommand, type WorkerEvent, type WorkersServer } from '@weft/proto';
import { summarize, type Summary } from './stats.js';
import { ALGORITHMS_DIR, MiB, parentPid, procCpuMs } from './util.js';

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
}

export async function dispatchRoundTrip(opts: { warmup: number; units: number }): Promise<DispatchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-dispatch-'));
  const log = createLogger({ component: 'bench-dispatch' }, 'warn');
  const def: AlgorithmDef = {
    name: 'empty',
    env: 'nodejs',
    codePath: join(ALGORITHMS_DIR, 'empty'),
    entryPoint: 'index.js',
    image: '',
    cpu: 0.1,
    memBytes: 128 * MiB,
    gpu: 0,
    minHotWorkers: 1,
    maxWorkers: 1,
    env_vars: {},
  };
  const executor = new LocalExecutor({ logDir: join(dir, 'logs'), log });
  const blobs = new FsBlobStore(join(dir, 'blobs'));
  let address = '';
  const dispatcher = new Dispatcher({
    executor,
    algorithm: (name) => (name === def.name ? def : undefined),
    storageUrl: blobs.url,
    serverAddress: () => address,
    config: { ...DEFAULT_DISPATCHER_CONFIG },
    metrics: new Metrics(),
    log,
  });
  const server = new Server({
    'grpc.max_receive_message_length': 256 * MiB,
    'grpc.max_send_message_length': 256 * MiB,
  });
  const impl: WorkersServer & UntypedServiceImplementation = {
    connect: (call: ServerDuplexStream<WorkerEvent, WorkerCommand>) => dispatcher.attach(call),
  };
  server.addService(WorkersService, impl);
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
  );
  address = `127.0.0.1:${port}`;

  let seq = 0;
  const unit = (): WorkUnit => {
    const i = seq++;
    return {
      taskId: `bench:${i}`,
      jobId: 'bench',
      algorithmName: def.name,
      nodeName: 'empty',
      pipelineName: 'bench',
      batchIndex: -1,
      input: encode([i]),
      inputKeys: [],
      outputKey: `bench/${i}`,
      savePaths: [],
      priority: 3,
      kind: 'pipeline',
      retry: { policy: 'Never', limit: 0 },
    };
  };
  const check = (o: Outcome): void => {
    if (o.status !== 'succeeded') {
      throw new Error(`unit ${o.status}: ${o.status === 'failed' ? `${o.failure.type}: ${o.failure.message}` : ''}`);
    }
  };

  /** Runs n units one after another, the next submitted from onDone; returns each unit's submit→onDone time. */
  const sequential = (n: number, makeUnit: () => WorkUnit = unit): Promise<Float64Array> =>
    new Promise((resolve, reject) => {
      const out = new Float64Array(n);
      let i = 0;
      const next = (): void => {
        const u = makeUnit();
        const t0 = performance.now();
        dispatcher.submit(u, {
          onDone: (o) => {
            out[i] = performance.now() - t0;
            try {
              check(o);
            } catch (err) {
              reject(err);
              return;
            }
            if (++i === n) resolve(out);
            else next();
          },
        });
      };
      next();
    });

  try {
    // The first unit starts the worker: a sidecar process that spawns the algorithm's process.
    const first = await sequential(1);
    // The worker's pid, for CPU accounting: ask the empty algorithm who it is.
    const pid = await new Promise<number>((resolve, reject) => {
      dispatcher.submit({ ...unit(), input: encode([{ warm: 0 }]) }, {
        onDone: (o) => {
          if (o.status !== 'succeeded' || o.result.kind?.$case !== 'inline') return reject(new Error('pid probe failed'));
          resolve(decode(o.result.kind.value) as number);
        },
      });
    });
    const sidecarPid = parentPid(pid);
    await sequential(opts.warmup);

    const cpu0 = process.cpuUsage();
    const w0 = (procCpuMs(pid) ?? NaN) + (sidecarPid ? (procCpuMs(sidecarPid) ?? NaN) : NaN);
    const t0 = performance.now();
    const samples = await sequential(opts.units);
    const elapsed = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const w1 = (procCpuMs(pid) ?? NaN) + (sidecarPid ? (procCpuMs(sidecarPid) ?? NaN) : NaN);
    const workerCpu = w1 - w0;
    return {
      firstUnitMs: first[0]!,
      warmup: opts.warmup,
      units: opts.units,
      latencyMs: summarize(Array.from(samples)),
      unitsPerSec: opts.units / (elapsed / 1000),
      cpCpuUsPerUnit: (cpu.user + cpu.system) / opts.units,
      workerCpuUsPerUnit: Number.isFinite(workerCpu) ? (workerCpu * 1000) / opts.units : undefined,
    };
  } finally {
    await dispatcher.shutdown();
    await executor.shutdown();
    await new Promise<void>((res) => {
      const t = setTimeout(() => {
        server.forceShutdown();
        res();
      }, 2000);
      server.tryShutdown(() => {
        clearTimeout(t);
        res();
      });
    });
    rmSync(dir, { recursive: true, force: true });
  }
}
