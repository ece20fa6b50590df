/**
 * weft benchmarks: `npm run bench` from the repository root. Prints a report
 * and writes the same numbers to bench/results.json.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pingPong, type PingPongResult } from './baseline.js';
import { Bench } from './cp.js';
import { dispatchRoundTrip, type DispatchResult } from './dispatch.js';
import {
  batchOnFreshPlane,
  batchThroughput,
  execLatency,
  handoff,
  warmPool,
  type BatchResult,
  type HandoffResult,
  type LatencyResult,
} from './fullcp.js';
import { BENCH_DIR, machine } from './util.js';

const TARGET = {
  dispatchP50Ms: 2,
  batchTasksPerSec: 2000,
  handoffCopyRatio: 1 / 3,
};
const BATCH_ITEMS = 10_000;
const JIT_WARMUP_ITEMS = 1_000;
const SWEEP = [1, 2, 3, 4];

interface Results {
  date: string;
  machine: ReturnType<typeof machine>;
  totalSeconds?: number;
  baseline?: PingPongResult;
  dispatch?: DispatchResult & { ratioToBaselineP50: number; target: string; pass: boolean };
  execLatency?: LatencyResult;
  batch?: BatchResult & { target: string; pass: boolean };
  batchSweep?: BatchResult[];
  handoff?: HandoffResult & {
    ratioToCopyFileSync: number;
    ratioToReadWrite: number;
    target: string;
    passVsCopyFileSync: boolean;
    passVsReadWrite: boolean;
  };
  errors: Record<string, string>;
}

const out = (s = ''): void => void process.stdout.write(s + '\n');
const f = (x: number | undefined, d = 1): string =>
  x === undefined || !Number.isFinite(x) ? 'n/a' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const verdict = (ok: boolean): string => (ok ? 'PASS' : 'FAIL');

async function section<T>(name: string, errors: Record<string, string>, fn: () => Promise<T>): Promise<T | undefined> {
  const t0 = performance.now();
  try {
    return await fn();
  } catch (err) {
    errors[name] = err instanceof Error ? (err.stack ?? err.message) : String(err);
    out(`  !! ${name} failed: ${errors[name]}`);
    return undefined;
  } finally {
    process.stderr.write(`[bench] ${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const m = machine();
  const R: Results = { date: new Date().toISOString(), machine: m, errors: {} };

  out('weft benchmark');
  out('==============');
  out(`machine: ${m.cpuModel}, ${m.cores} cores, ${m.memGiB} GiB RAM, ${m.os}`);
  out(`runtime: Node ${m.node}, @grpc/grpc-js ${m.grpcJs}, msgpackr ${m.msgpackr}`);
  out(`date:    ${R.date}`);
  out();

  // 1. Transport baseline.
  out('1. Baseline: grpc-js bidi ping-pong, 64 B messages, client and server in separate processes');
  R.baseline = await section('baseline', R.errors, () => pingPong({ warmup: 1000, roundTrips: 5000, payloadBytes: 64 }));
  if (R.baseline) {
    const b = R.baseline;
    out(`   ${b.roundTrips} round trips after ${b.warmup} warm-up`);
    out(`   p50 ${f(b.latencyUs.p50)} µs   p99 ${f(b.latencyUs.p99)} µs   mean ${f(b.latencyUs.mean)} µs   ${f(b.rtPerSec, 0)} RT/s`);
  }
  out();

  // 2a. Dispatcher-level round trip.
  out('2. Warm dispatch round trip of an empty task');
  out('   a) Dispatcher + LocalExecutor + Workers gRPC stream (real sidecar and algorithm processes), no engine/store');
  const d = await section('dispatch', R.errors, () => dispatchRoundTrip({ warmup: 200, units: 2000 }));
  if (d) {
    const ratio = R.baseline ? d.latencyMs.p50 / (R.baseline.latencyUs.p50 / 1000) : NaN;
    const pass = d.latencyMs.p50 <= TARGET.dispatchP50Ms;
    R.dispatch = { ...d, ratioToBaselineP50: ratio, target: `p50 <= ${TARGET.dispatchP50Ms} ms`, pass };
    out(`   first unit (spawns the worker): ${f(d.firstUnitMs)} ms; then ${d.warmup} warm-up units; ${d.units} sequential units measured`);
    out(
      `   submit→onDone  p50 ${f(d.latencyMs.p50, 3)} ms   p99 ${f(d.latencyMs.p99, 3)} ms   mean ${f(d.latencyMs.mean, 3)} ms   (${f(d.unitsPerSec, 0)} units/s)`,
    );
    out(`   p50 / baseline p50 = ${f(ratio, 2)}x          target p50 <= ${TARGET.dispatchP50Ms} ms: ${verdict(pass)}`);
    out(
      `   CPU per unit: control plane ${f(d.cpCpuUsPerUnit, 0)} µs, sidecar + algorithm ${f(d.workerCpuUsPerUnit, 0)} µs`,
    );
  }

  // 2b + 3 (main): one full control plane.
  out('   b) Exec → completed of a one-node pipeline, full control plane, Jobs API (ExecRaw, then Watch to its end)');
  let main: Bench | undefined;
  try {
    main = await section('control plane start', R.errors, () => Bench.start('main'));
    if (main) {
      const b = main;
      R.execLatency = await section('exec latency', R.errors, async () => {
        await b.apply({ name: 'empty', code: 'empty', minHotWorkers: 1, maxWorkers: 1 });
        await warmPool(b, 'empty', 1);
        return execLatency(b, 'empty', 20, 200);
      });
      if (R.execLatency) {
        const l = R.execLatency.latencyMs;
        out(`   ${R.execLatency.jobs} sequential jobs, warm worker: p50 ${f(l.p50, 2)} ms   p99 ${f(l.p99, 2)} ms   mean ${f(l.mean, 2)} ms`);
      }
      out();

      out(`3. ${BATCH_ITEMS.toLocaleString('en-US')}-item batch throughput (one node, input ['#@flowInput.items'], empty task)`);
      const batch = await section('batch', R.errors, async () => {
        await b.apply({ name: 'empty', code: 'empty', minHotWorkers: 2, maxWorkers: 2 });
        const pids = await warmPool(b, 'empty', 2);
        await b.run('warm-batch', [{ nodeName: 'B', algorithmName: 'empty', input: ['#@flowInput.items'] }], {
          items: Array.from({ length: JIT_WARMUP_ITEMS }, (_, i) => i),
        });
        return batchThroughput(b, 'empty', 2, BATCH_ITEMS, pids);
      });
      if (batch) {
        const pass = batch.tasksPerSec >= TARGET.batchTasksPerSec;
        R.batch = { ...batch, target: `>= ${TARGET.batchTasksPerSec} tasks/s`, pass };
        out(`   minHotWorkers 2, maxWorkers 2, both warm (same control plane as 2b; ${JIT_WARMUP_ITEMS}-item warm-up batch first)`);
        out(
          `   ExecRaw → Watch end (COMPLETED): ${f(batch.ms, 0)} ms = ${f(batch.tasksPerSec, 0)} tasks/s     target >= ${TARGET.batchTasksPerSec} tasks/s: ${verdict(pass)}`,
        );
        out(`   ${cpuLine(batch)}`);
      }
    }
  } finally {
    if (main) await main.close();
  }
  out('   sweep, each on a fresh control plane (workers warm, JIT warm-up batch first):');
  const sweep: BatchResult[] = [];
  for (const w of SWEEP) {
    const r = await section(`batch sweep maxWorkers ${w}`, R.errors, () => batchOnFreshPlane(w, BATCH_ITEMS, JIT_WARMUP_ITEMS));
    if (r) {
      sweep.push(r);
      out(`     maxWorkers ${w}: ${f(r.ms, 0).padStart(6)} ms = ${f(r.tasksPerSec, 0).padStart(6)} tasks/s   ${cpuLine(r)}`);
    }
  }
  R.batchSweep = sweep;
  out();

  // 4. Large payload hand-off.
  out('4. 64 MiB binary hand-off P → C through the filesystem blob storage (data dir)');
  const h = await section('handoff', R.errors, () => handoff(5));
  if (h) {
    const r1 = h.handoffMiBps / h.copyFileSyncMiBps;
    const r2 = h.handoffMiBps / h.readWriteMiBps;
    R.handoff = {
      ...h,
      ratioToCopyFileSync: r1,
      ratioToReadWrite: r2,
      target: 'hand-off bandwidth >= 1/3 of plain copy bandwidth',
      passVsCopyFileSync: r1 >= TARGET.handoffCopyRatio,
      passVsReadWrite: r2 >= TARGET.handoffCopyRatio,
    };
    out(`   hand-off (producer returns → consumer's start runs), ${h.runs} runs: ${h.handoffMs.map((x) => f(x, 0)).join(', ')} ms`);
    out(`   median ${f(h.medianHandoffMs)} ms = ${f(h.handoffMiBps, 0)} MiB/s; whole P → C job (ExecRaw → Watch end) median ${f(medianOf(h.jobMs), 0)} ms`);
    out(`   plain copy of a 64 MiB file, page cache warm, median of ${h.runs}:`);
    out(
      `     fs.copyFileSync:              ${f(medianOf(h.copyFileSyncMs))} ms = ${f(h.copyFileSyncMiBps, 0)} MiB/s;  hand-off / copy = ${f(r1, 2)}   target >= 0.33: ${verdict(r1 >= TARGET.handoffCopyRatio)}`,
    );
    out(
      `     readFileSync + writeFileSync: ${f(medianOf(h.readWriteMs))} ms = ${f(h.readWriteMiBps, 0)} MiB/s;  hand-off / copy = ${f(r2, 2)}   target >= 0.33: ${verdict(r2 >= TARGET.handoffCopyRatio)}`,
    );
  }
  out();

  R.totalSeconds = (performance.now() - t0) / 1000;
  out('Targets');
  const row = (name: string, value: string, target: string, ok: boolean | undefined): void =>
    out(`   ${name.padEnd(38)} ${value.padEnd(22)} ${target.padEnd(26)} ${ok === undefined ? 'n/a' : verdict(ok)}`);
  row('warm dispatch round trip p50', R.dispatch ? `${f(R.dispatch.latencyMs.p50, 3)} ms` : 'n/a', '<= 2 ms', R.dispatch?.pass);
  row(`${BATCH_ITEMS.toLocaleString('en-US')}-item batch, maxWorkers 2`, R.batch ? `${f(R.batch.tasksPerSec, 0)} tasks/s` : 'n/a', '>= 2,000 tasks/s', R.batch?.pass);
  row(
    '64 MiB hand-off vs fs.copyFileSync',
    R.handoff ? `${f(R.handoff.ratioToCopyFileSync, 2)} of copy` : 'n/a',
    '>= 0.33 of copy',
    R.handoff?.passVsCopyFileSync,
  );
  row(
    '64 MiB hand-off vs read + write copy',
    R.handoff ? `${f(R.handoff.ratioToReadWrite, 2)} of copy` : 'n/a',
    '>= 0.33 of copy',
    R.handoff?.passVsReadWrite,
  );
  out(`total time ${f(R.totalSeconds)} s; numbers also in bench/results.json`);
  if (Object.keys(R.errors).length > 0) out(`errors in: ${Object.keys(R.errors).join(', ')}`);

  writeFileSync(join(BENCH_DIR, 'results.json'), JSON.stringify(R, null, 2) + '\n');
  if (Object.keys(R.errors).length > 0) process.exitCode = 1;
}

function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function cpuLine(r: BatchResult): string {
  const per = (ms: number | undefined): string => (ms === undefined ? 'n/a' : `${f((ms * 1000) / r.items, 0)} µs`);
  return `CPU per task: control plane ${per(r.cpuMs.controlPlane)}, sidecars ${per(r.cpuMs.sidecars)}, algorithms ${per(r.cpuMs.algorithms)}`;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
