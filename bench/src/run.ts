/**
 * weft benchmarks: `npm run bench` from the repository root. Prints a report
 * and writes the same numbers to bench/results.json.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pingPong, type PingPongResult } from './baseline.js';
import { Bench } from './cp.js';
import { dispatchBurst, dispatchRoundTrip, type DispatchBurstResult, type DispatchResult } from './dispatch.js';
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
import { linearChain, priorityMix, type ChainResult, type PriorityMixResult } from './pipelines.js';
import { idleWorkflows, triggerLateness, type IdleResult, type LatenessResult } from './schedules.js';
import { closureRoundTrips, readmeFirstStaging, type ClosureResult, type ReadmeStaging } from './closures.js';
import { handoffS3, type S3HandoffResult } from './s3.js';
import { median } from './stats.js';
import { BENCH_DIR, LoadMonitor, machine, sleep, type LoadReport } from './util.js';

const TARGET = {
  dispatchP50Ms: 2,
  batchTasksPerSec: 2000,
  handoffCopyRatio: 1 / 3,
  pythonToNodeP50: 2,
  chainPerNodeMs: 5,
  latenessP99Ms: 50,
  idleCpuPercent: 2,
  closureWarmP50Ms: 20,
  s3HandoffRatio: 0.8,
  readmeFirstStagingMs: 300,
};
const CHAIN_NODES = 100;
const BATCH_ITEMS = 10_000;
const JIT_WARMUP_ITEMS = 1_000;
const SWEEP = [1, 2, 3, 4];

interface Results {
  date: string;
  machine: ReturnType<typeof machine>;
  backgroundBeforeStart?: LoadReport;
  totalSeconds?: number;
  baseline?: PingPongResult;
  dispatch?: DispatchResult & { ratioToBaselineP50: number; target: string; pass: boolean };
  dispatchPython?: DispatchResult & { ratioToNodeP50: number; target: string; pass: boolean };
  execLatency?: LatencyResult;
  batch?: BatchResult & { target: string; pass: boolean };
  batchSweep?: BatchResult[];
  dispatchBurst?: DispatchBurstResult;
  handoff?: HandoffResult & { ratios: Record<string, number>; target: string; pass: Record<string, boolean> };
  handoffS3?: S3HandoffResult & { target: string; pass: boolean };
  chain?: ChainResult & { ratioToDispatchP50: number | undefined; target: string; pass: boolean };
  priorityMix?: PriorityMixResult;
  lateness?: LatenessResult & { target: string; pass: boolean };
  latenessBurst?: LatenessResult;
  idle?: IdleResult & { target: string; pass: boolean };
  closures?: ClosureResult & {
    ratioToPingPongP50: number | undefined;
    ratioToDispatchP50: number | undefined;
    target: string;
    pass: boolean;
  };
  readmeStaging?: ReadmeStaging & { target: string; pass: boolean };
  /** The sections run, when WEFT_BENCH_ONLY chose some. */
  only?: string[];
  errors: Record<string, string>;
}

const out = (s = ''): void => void process.stdout.write(s + '\n');
const f = (x: number | undefined, d = 1): string =>
  x === undefined || !Number.isFinite(x)
    ? 'n/a'
    : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const verdict = (ok: boolean): string => (ok ? 'PASS' : 'FAIL');

function loadLine(l: LoadReport | undefined): string {
  if (!l) return '';
  const who = l.others.map((o) => `pid ${o.pid} ${o.cmd.split(' ').slice(0, 2).join(' ')} ${f(o.cores, 2)}`).join('; ');
  const steal = l.stealCores >= 0.01 ? `, steal ${f(l.stealCores, 2)}` : '';
  return `[CPU in cores: this benchmark ${f(l.benchCores, 2)}, other processes ${f(l.otherCores, 2)}, whole machine ${f(l.machineCores, 2)}${steal}${who ? ` — ${who}` : ''}]`;
}

/**
 * `WEFT_BENCH_ONLY=closures,handoff` runs only the sections whose names
 * contain one of the words (the names are those of the `section()` calls);
 * the others are skipped and results.json is left alone.
 */
const ONLY = (process.env['WEFT_BENCH_ONLY'] ?? '')
  .split(',')
  .map((w) => w.trim())
  .filter(Boolean);

async function section<T>(name: string, errors: Record<string, string>, fn: () => Promise<T>): Promise<T | undefined> {
  if (ONLY.length > 0 && !ONLY.some((w) => name.includes(w))) return undefined;
  try {
    return await fn();
  } catch (err) {
    errors[name] = err instanceof Error ? (err.stack ?? err.message) : String(err);
    out(`   !! ${name} failed: ${errors[name]}`);
    return undefined;
  }
}

function cpuLine(r: BatchResult): string {
  const per = (ms: number | undefined): string => (ms === undefined ? 'n/a' : `${f((ms * 1000) / r.items, 0)} µs`);
  return `CPU/task: control plane ${per(r.cpuMs.controlPlane)}, sidecar ${per(r.cpuMs.sidecars)}, algorithm ${per(r.cpuMs.algorithms)}`;
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
  const pre = new LoadMonitor();
  await sleep(1000);
  R.backgroundBeforeStart = pre.stop();
  out(`before start, 1 s idle: ${loadLine(R.backgroundBeforeStart)}`);
  const busyOthers = R.backgroundBeforeStart.otherCores;
  if (busyOthers > 0.1) {
    out(`   !! other processes are using ${f(busyOthers, 2)} of ${m.cores} cores: the numbers below are pessimistic`);
  }
  out();

  // 1. Transport baseline.
  out('1. Baseline: grpc-js bidi ping-pong, 64 B messages, client and server in separate processes');
  R.baseline = await section('baseline', R.errors, () =>
    pingPong({ warmup: 1000, roundTrips: 5000, payloadBytes: 64 }),
  );
  if (R.baseline) {
    const b = R.baseline;
    out(`   ${b.roundTrips} round trips after ${b.warmup} warm-up`);
    out(
      `   p50 ${f(b.latencyUs.p50)} µs   p90 ${f(b.latencyUs.p90)} µs   p99 ${f(b.latencyUs.p99)} µs   mean ${f(b.latencyUs.mean)} µs   ${f(b.rtPerSec, 0)} RT/s`,
    );
    out(`   ${loadLine(b.load)}`);
  }
  out();

  // 2a. Dispatcher-level round trip.
  out('2. Warm dispatch round trip of an empty task');
  out(
    '   a) Dispatcher + LocalExecutor + Workers gRPC stream (real sidecar and algorithm processes); no engine, store or Jobs API',
  );
  const d = await section('dispatch', R.errors, () => dispatchRoundTrip({ warmup: 300, units: 2000 }));
  if (d) {
    const ratio = R.baseline ? d.latencyMs.p50 / (R.baseline.latencyUs.p50 / 1000) : NaN;
    const pass = d.latencyMs.p50 <= TARGET.dispatchP50Ms;
    R.dispatch = { ...d, ratioToBaselineP50: ratio, target: `p50 <= ${TARGET.dispatchP50Ms} ms`, pass };
    out(
      `   first unit (starts the worker): ${f(d.firstUnitMs, 0)} ms; ${d.warmup} warm-up units; ${d.units} units one after another`,
    );
    out(
      `   submit→onDone  p50 ${f(d.latencyMs.p50, 3)} ms   p90 ${f(d.latencyMs.p90, 3)} ms   p99 ${f(d.latencyMs.p99, 3)} ms   mean ${f(d.latencyMs.mean, 3)} ms   (${f(d.unitsPerSec, 0)} units/s)`,
    );
    out(`   p50 / baseline p50 = ${f(ratio, 1)}x     target p50 <= ${TARGET.dispatchP50Ms} ms: ${verdict(pass)}`);
    out(
      `   CPU/unit: control plane ${f(d.cpCpuUsPerUnit, 0)} µs, sidecar + algorithm ${f(d.workerCpuUsPerUnit, 0)} µs`,
    );
    out(`   ${loadLine(d.load)}`);
  }
  out('   a2) the same with the Python empty task (bench/algorithms/empty-py: /usr/bin/python3 -m weft_shim)');
  const py = await section('dispatch python', R.errors, () =>
    dispatchRoundTrip({ warmup: 300, units: 2000, env: 'python' }),
  );
  if (py) {
    const ratio = R.dispatch ? py.latencyMs.p50 / R.dispatch.latencyMs.p50 : NaN;
    const pass = ratio <= TARGET.pythonToNodeP50;
    R.dispatchPython = { ...py, ratioToNodeP50: ratio, target: `p50 <= ${TARGET.pythonToNodeP50} x Node p50`, pass };
    out(`   first unit (starts the worker): ${f(py.firstUnitMs, 0)} ms; ${py.warmup} warm-up units; ${py.units} units`);
    out(
      `   submit→onDone  p50 ${f(py.latencyMs.p50, 3)} ms   p90 ${f(py.latencyMs.p90, 3)} ms   p99 ${f(py.latencyMs.p99, 3)} ms   mean ${f(py.latencyMs.mean, 3)} ms   (${f(py.unitsPerSec, 0)} units/s)`,
    );
    if (R.dispatch) {
      const n = R.dispatch.latencyMs;
      out(
        `   Node p50 ${f(n.p50, 3)} ms / p99 ${f(n.p99, 3)} ms; Python p50 ${f(py.latencyMs.p50, 3)} ms / p99 ${f(py.latencyMs.p99, 3)} ms`,
      );
    }
    out(`   Python p50 / Node p50 = ${f(ratio, 2)}x     target <= ${TARGET.pythonToNodeP50}x: ${verdict(pass)}`);
    out(
      `   CPU/unit: control plane ${f(py.cpCpuUsPerUnit, 0)} µs, sidecar + algorithm ${f(py.workerCpuUsPerUnit, 0)} µs`,
    );
    out(`   ${loadLine(py.load)}`);
  }

  // 2b + 3 (main): one full control plane.
  out(
    '   b) Exec → completed of a one-node pipeline: full control plane, Jobs API (ExecRaw, then Watch until it ends)',
  );
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
        out(
          `   ${R.execLatency.jobs} jobs one after another, warm worker: p50 ${f(l.p50, 2)} ms   p90 ${f(l.p90, 2)} ms   p99 ${f(l.p99, 2)} ms   mean ${f(l.mean, 2)} ms`,
        );
        out(
          `   of which ExecRaw's answer (job recorded, task queued): p50 ${f(R.execLatency.execRawMs.p50, 2)} ms   p99 ${f(R.execLatency.execRawMs.p99, 2)} ms`,
        );
        out(`   ${loadLine(R.execLatency.load)}`);
      }
      out();

      out(
        `3. ${BATCH_ITEMS.toLocaleString('en-US')}-item batch throughput: one node, input ['#@flowInput.items'], empty task`,
      );
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
        out(
          `   minHotWorkers 2, maxWorkers 2, both warm (control plane of 2b; a ${JIT_WARMUP_ITEMS}-item warm-up batch first)`,
        );
        out(
          `   ExecRaw → Watch ends COMPLETED: ${f(batch.ms, 0)} ms = ${f(batch.tasksPerSec, 0)} tasks/s     target >= ${f(TARGET.batchTasksPerSec, 0)} tasks/s: ${verdict(pass)}`,
        );
        out(`   ${cpuLine(batch)}`);
        out(`   ${loadLine(batch.load)}`);
      }
    }
  } finally {
    if (main) await section('control plane close', R.errors, () => main!.close());
  }
  out('   maxWorkers sweep, each on a fresh control plane (workers warm, warm-up batch first):');
  const sweep: BatchResult[] = [];
  for (const w of SWEEP) {
    const r = await section(`batch sweep maxWorkers ${w}`, R.errors, () =>
      batchOnFreshPlane(w, BATCH_ITEMS, JIT_WARMUP_ITEMS),
    );
    if (r) {
      sweep.push(r);
      out(
        `     maxWorkers ${w}: ${f(r.ms, 0).padStart(6)} ms = ${f(r.tasksPerSec, 0).padStart(5)} tasks/s   ${cpuLine(r)}; other processes ${f(r.load.otherCores, 2)} cores`,
      );
    }
  }
  R.batchSweep = sweep;
  R.dispatchBurst = await section('dispatch burst', R.errors, () =>
    dispatchBurst({ workers: 2, warmup: 1000, units: BATCH_ITEMS }),
  );
  if (R.dispatchBurst) {
    const x = R.dispatchBurst;
    out(
      `   for comparison, the dispatcher alone (2 workers, ${BATCH_ITEMS.toLocaleString('en-US')} units submitted at once, no engine/store/Jobs API): ${f(x.unitsPerSec, 0)} units/s;`,
    );
    out(
      `     CPU/unit: dispatcher process ${f(x.cpCpuUsPerUnit, 0)} µs, sidecar + algorithm ${f(x.workerCpuUsPerUnit, 0)} µs; other processes ${f(x.load.otherCores, 2)} cores`,
    );
  }
  out();

  // 4. Large payload hand-off.
  out('4. 64 MiB binary hand-off P → C through the filesystem blob storage (data dir)');
  const h = await section('handoff', R.errors, () => handoff(5));
  if (h) {
    const ratios = {
      copyFileSyncKept: h.handoffMiBps / h.copyFileSync.keptMiBps,
      readWriteKept: h.handoffMiBps / h.readWrite.keptMiBps,
      copyFileSyncDeleted: h.handoffMiBps / h.copyFileSync.deletedMiBps,
      readWriteDeleted: h.handoffMiBps / h.readWrite.deletedMiBps,
    };
    const pass = Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, v >= TARGET.handoffCopyRatio]));
    R.handoff = { ...h, ratios, target: 'hand-off bandwidth >= 1/3 of plain copy bandwidth', pass };
    const list = (xs: number[]): string => xs.map((x) => f(x, 0)).join(', ');
    out(
      `   hand-off = consumer's start runs − producer returns the Buffer; ${h.runs} runs (warm workers): ${list(h.handoffMs)} ms`,
    );
    out(
      `   median ${f(h.medianHandoffMs, 0)} ms = ${f(h.handoffMiBps, 0)} MiB/s; the whole P → C job (ExecRaw → Watch end): median ${f(median(h.jobMs), 0)} ms`,
    );
    out(
      `   of which: producer writes its blob (return → file renamed) median ${f(median(h.producerWriteMs), 0)} ms; control plane hop + consumer reads it (renamed → start) median ${f(median(h.hopAndReadMs), 0)} ms`,
    );
    out(`   ${loadLine(h.load)}`);
    out(`   plain copy of a 64 MiB file in the data dir, source in the page cache, median of ${h.runs}:`);
    const cmp = (label: string, ms: number[], mibps: number, ratio: number): void =>
      out(
        `     ${label.padEnd(48)} ${f(median(ms), 0).padStart(4)} ms = ${f(mibps, 0).padStart(5)} MiB/s   hand-off/copy ${f(ratio, 2)}   target >= 0.33: ${verdict(ratio >= TARGET.handoffCopyRatio)}`,
      );
    cmp(
      'fs.copyFileSync, new file kept (as blobs are)',
      h.copyFileSync.keptMs,
      h.copyFileSync.keptMiBps,
      ratios.copyFileSyncKept,
    );
    cmp('readFileSync + writeFileSync, new file kept', h.readWrite.keptMs, h.readWrite.keptMiBps, ratios.readWriteKept);
    out(
      `       (of which read ${f(median(h.readWrite.keptReadMs), 0)} ms, write ${f(median(h.readWrite.keptWriteMs), 0)} ms)`,
    );
    cmp(
      'fs.copyFileSync, file deleted after each copy',
      h.copyFileSync.deletedMs,
      h.copyFileSync.deletedMiBps,
      ratios.copyFileSyncDeleted,
    );
    cmp(
      'readFileSync + writeFileSync, deleted after each',
      h.readWrite.deletedMs,
      h.readWrite.deletedMiBps,
      ratios.readWriteDeleted,
    );
  }
  out();

  // 4b. The same hand-off with payloads on S3.
  out('4b. 64 MiB binary hand-off P → C through S3 (s3rver on loopback, its own process) vs raw SDK put + get');
  const hs = await section('s3 handoff', R.errors, () => handoffS3(5));
  if (hs) {
    const pass = hs.ratio >= TARGET.s3HandoffRatio;
    R.handoffS3 = { ...hs, target: `raw put+get / hand-off >= ${TARGET.s3HandoffRatio}`, pass };
    const mibps = (ms: number): string => f(hs.sizeMiB / (ms / 1000), 0);
    const list = (xs: number[]): string => xs.map((x) => f(x, 0)).join(', ');
    out(`   hand-off (producer returns → consumer starts; upload, hop, download, decode), ${hs.runs} runs:`);
    out(`     ${list(hs.handoffMs)} ms; median ${f(hs.medianHandoffMs, 0)} ms = ${mibps(hs.medianHandoffMs)} MiB/s`);
    out(`   raw @aws-sdk/client-s3 PutObject + GetObject of the same bytes, interleaved with the runs above:`);
    out(
      `     put ${list(hs.rawPutMs)} ms, get ${list(hs.rawGetMs)} ms; median put+get ${f(hs.medianRawMs, 0)} ms = ${mibps(hs.medianRawMs)} MiB/s`,
    );
    out(
      `   raw / hand-off = ${f(hs.ratio, 2)}   target >= ${TARGET.s3HandoffRatio}: ${verdict(pass)}   ${loadLine(hs.load)}`,
    );
  }
  out();

  // 5. Pipeline-level overhead and mixed priorities.
  out(
    `5. A ${CHAIN_NODES}-node linear pipeline of empty tasks (each node reads the previous one's output), one warm worker`,
  );
  const chain = await section('chain', R.errors, () => linearChain(CHAIN_NODES, 5));
  if (chain) {
    const ratio = R.dispatch ? chain.perNodeMs / R.dispatch.latencyMs.p50 : undefined;
    const pass = chain.perNodeMs <= TARGET.chainPerNodeMs;
    R.chain = { ...chain, ratioToDispatchP50: ratio, target: `per-node overhead <= ${TARGET.chainPerNodeMs} ms`, pass };
    out(
      `   exec → completed, ${chain.runs.length} runs: ${chain.runs.map((x) => f(x, 0)).join(', ')} ms; median ${f(chain.medianMs, 0)} ms`,
    );
    out(
      `   per node ${f(chain.perNodeMs, 2)} ms (${ratio === undefined ? 'n/a' : f(ratio, 1) + 'x'} the warm dispatch p50 of 2a)     target <= ${TARGET.chainPerNodeMs} ms: ${verdict(pass)}`,
    );
    out(`   ${loadLine(chain.load)}`);
  }
  out('   Five jobs at priorities 1-5, 2,000 empty tasks each, submitted at once onto 2 warm workers');
  const mix = await section('priority mix', R.errors, () => priorityMix(2000, 2));
  if (mix) {
    R.priorityMix = mix;
    out(
      `   all 10,000 tasks in ${f(mix.totalMs, 0)} ms = ${f(mix.tasksPerSec, 0)} tasks/s (one job of 10,000 on the same workers, same run: ${f(mix.singleJobTasksPerSec, 0)} tasks/s)`,
    );
    out(
      `   finished after (ms): ${[5, 4, 3, 2, 1].map((p) => `priority ${p}: ${f(mix.finishedMs[p], 0)}`).join(', ')}`,
    );
    out(`   ${loadLine(mix.load)}`);
  }
  out();

  out('6. Schedules: a weft server child process, command workflows running /bin/true');
  out('   Trigger lateness: 1,000 workflows on */5 * * * * * (every 5 s) with spread PT5S (about 200 starts/s),');
  out('   from due time (slot + spread) to the process start the runner reports; 20 s warm-up, 20 s measured');
  const late = await section('trigger lateness', R.errors, () =>
    triggerLateness({
      workflows: 1000,
      schedule: '*/5 * * * * *',
      spread: 'PT5S',
      warmupSeconds: 20,
      measureSeconds: 20,
    }),
  );
  if (late) {
    const pass = late.latenessMs.p99 <= TARGET.latenessP99Ms;
    R.lateness = { ...late, target: `p99 <= ${TARGET.latenessP99Ms} ms`, pass };
    out(
      `   ${late.executions} executions: p50 ${f(late.latenessMs.p50, 0)} ms, p90 ${f(late.latenessMs.p90, 0)} ms, p99 ${f(late.latenessMs.p99, 0)} ms, max ${f(late.latenessMs.max, 0)} ms; not started ${late.notStarted}     target p99 <= ${TARGET.latenessP99Ms} ms: ${verdict(pass)}`,
    );
    out(`   worst per second: ${late.worstBySecond.map((x) => f(x, 0)).join(' ')} ms`);
    out(
      `   during the warm-up (workers starting on demand, ${late.warmup.executions} executions): p50 ${f(late.warmup.p50, 0)} ms, p99 ${f(late.warmup.p99, 0)} ms, max ${f(late.warmup.max, 0)} ms`,
    );
    out(`   ${loadLine(late.load)}`);
  }
  out('   The same 1,000 workflows without spread, all due in the same second (*/10 * * * * *): the burst drains at');
  const burst = await section('trigger lateness burst', R.errors, () =>
    triggerLateness({ workflows: 1000, schedule: '*/10 * * * * *', spread: '', warmupSeconds: 12, measureSeconds: 20 }),
  );
  if (burst) {
    R.latenessBurst = burst;
    const rate = burst.workflows / (burst.latenessMs.max / 1000);
    out(
      `   ~${f(rate, 0)} starts/s: p50 ${f(burst.latenessMs.p50, 0)} ms, p99 ${f(burst.latenessMs.p99, 0)} ms over ${burst.executions} executions (spread is the fix)`,
    );
    out(`   ${loadLine(burst.load)}`);
  }
  out('   Idle: 10,000 enabled hourly workflows, CPU and RSS of the server over 20 s, against an empty server');
  const idle = await section('idle workflows', R.errors, () => idleWorkflows(10_000, 20));
  if (idle) {
    const pass = idle.cpuPercent < TARGET.idleCpuPercent;
    R.idle = { ...idle, target: `< ${TARGET.idleCpuPercent}% of a core`, pass };
    out(
      `   applied in ${f(idle.applySeconds)} s; idle CPU ${f(idle.cpuPercent, 2)}% of a core (empty server: ${f(idle.baseline.cpuPercent, 2)}%), RSS ${f(idle.rssBytes / 2 ** 20, 0)} MiB (empty: ${f(idle.baseline.rssBytes / 2 ** 20, 0)} MiB)     target < ${TARGET.idleCpuPercent}%: ${verdict(pass)}`,
    );
    if (idle.triggeredDuring > 0)
      out(`   note: the hour turned during the measurement (${idle.triggeredDuring} instances)`);
  }
  out();

  out('7. Closures: @weft/client in this process, a weft server child process; add(a, b) from a module of 2 files');
  const cl = await section('closures', R.errors, () => closureRoundTrips({ warmup: 30, runs: 300, cold: 6 }));
  if (cl) {
    const pass = cl.warm.p50 <= TARGET.closureWarmP50Ms;
    const pp = R.baseline ? cl.warm.p50 / (R.baseline.latencyUs.p50 / 1000) : undefined;
    const dp = R.dispatch ? cl.warm.p50 / R.dispatch.latencyMs.p50 : undefined;
    R.closures = {
      ...cl,
      ratioToPingPongP50: pp,
      ratioToDispatchP50: dp,
      target: `warm p50 <= ${TARGET.closureWarmP50Ms} ms`,
      pass,
    };
    out(
      `   warm worker, stage cached, ${cl.warm.n} submits one after another: p50 ${f(cl.warm.p50, 2)} ms, p99 ${f(cl.warm.p99, 2)} ms` +
        ` (${pp === undefined ? 'n/a' : f(pp, 1) + 'x'} the grpc-js ping-pong p50, ${dp === undefined ? 'n/a' : f(dp, 1) + 'x'} the warm dispatch p50)     target p50 <= ${TARGET.closureWarmP50Ms} ms: ${verdict(pass)}`,
    );
    out(
      `   cold worker (a new resource shape each time, ${cl.cold.n} runs): p50 ${f(cl.cold.p50, 0)} ms, max ${f(cl.cold.max, 0)} ms`,
    );
    for (const st of cl.staging) {
      out(
        `   staging a project of ${st.files} files: first ${f(st.firstMs, 0)} ms (hash all, upload what is missing); unchanged: p50 ${f(st.unchanged.p50, 1)} ms`,
      );
    }
  }
  const rs = await section('closures readme staging', R.errors, () => readmeFirstStaging());
  if (rs) {
    const pass = rs.ms < TARGET.readmeFirstStagingMs;
    R.readmeStaging = { ...rs, target: `< ${TARGET.readmeFirstStagingMs} ms`, pass };
    out(
      `   first staging of the README closure example (examples/closures extractEnv, new server, empty hash cache): ${rs.files} files, ${f(rs.bytes / 1024, 1)} KiB, ${rs.uploaded} uploaded, ${f(rs.ms, 0)} ms (locate before it: ${f(rs.locateMs, 0)} ms)     target < ${TARGET.readmeFirstStagingMs} ms: ${verdict(pass)}`,
    );
  }
  out();

  R.totalSeconds = (performance.now() - t0) / 1000;
  out('Targets');
  const row = (name: string, value: string, target: string, ok: boolean | undefined): void =>
    out(`   ${name.padEnd(46)} ${value.padEnd(16)} ${target.padEnd(18)} ${ok === undefined ? 'n/a' : verdict(ok)}`);
  row(
    'warm dispatch round trip, p50',
    R.dispatch ? `${f(R.dispatch.latencyMs.p50, 3)} ms` : 'n/a',
    '<= 2 ms',
    R.dispatch?.pass,
  );
  row(
    'warm dispatch p50, Python / Node',
    R.dispatchPython ? `${f(R.dispatchPython.ratioToNodeP50, 2)}x` : 'n/a',
    `<= ${TARGET.pythonToNodeP50}x`,
    R.dispatchPython?.pass,
  );
  row(
    `${BATCH_ITEMS.toLocaleString('en-US')}-item batch, maxWorkers 2`,
    R.batch ? `${f(R.batch.tasksPerSec, 0)} tasks/s` : 'n/a',
    '>= 2,000 tasks/s',
    R.batch?.pass,
  );
  const hr = R.handoff;
  row(
    '64 MiB hand-off / fs.copyFileSync (kept)',
    hr ? f(hr.ratios['copyFileSyncKept'], 2) : 'n/a',
    '>= 0.33',
    hr?.pass['copyFileSyncKept'],
  );
  row(
    '64 MiB hand-off / read + write copy (kept)',
    hr ? f(hr.ratios['readWriteKept'], 2) : 'n/a',
    '>= 0.33',
    hr?.pass['readWriteKept'],
  );
  row(
    '64 MiB hand-off / fs.copyFileSync (deleted)',
    hr ? f(hr.ratios['copyFileSyncDeleted'], 2) : 'n/a',
    '>= 0.33',
    hr?.pass['copyFileSyncDeleted'],
  );
  row(
    '64 MiB hand-off / read + write copy (deleted)',
    hr ? f(hr.ratios['readWriteDeleted'], 2) : 'n/a',
    '>= 0.33',
    hr?.pass['readWriteDeleted'],
  );
  row(
    '64 MiB hand-off through S3: raw SDK put+get / hand-off',
    R.handoffS3 ? f(R.handoffS3.ratio, 2) : 'n/a',
    `>= ${TARGET.s3HandoffRatio}`,
    R.handoffS3?.pass,
  );
  row(
    `${CHAIN_NODES}-node linear pipeline, per node`,
    R.chain ? `${f(R.chain.perNodeMs, 2)} ms` : 'n/a',
    `<= ${TARGET.chainPerNodeMs} ms`,
    R.chain?.pass,
  );
  row(
    'trigger lateness p99, 1,000 workflows, spread',
    R.lateness ? `${f(R.lateness.latenessMs.p99, 0)} ms` : 'n/a',
    `<= ${TARGET.latenessP99Ms} ms`,
    R.lateness?.pass,
  );
  row(
    'idle CPU, 10,000 hourly workflows',
    R.idle ? `${f(R.idle.cpuPercent, 2)}%` : 'n/a',
    `< ${TARGET.idleCpuPercent}% of a core`,
    R.idle?.pass,
  );
  row(
    'closure round trip, warm worker, p50',
    R.closures ? `${f(R.closures.warm.p50, 2)} ms` : 'n/a',
    `<= ${TARGET.closureWarmP50Ms} ms`,
    R.closures?.pass,
  );
  row(
    'first staging, README closure example',
    R.readmeStaging ? `${f(R.readmeStaging.ms, 0)} ms, ${R.readmeStaging.files} files` : 'n/a',
    `< ${TARGET.readmeFirstStagingMs} ms`,
    R.readmeStaging?.pass,
  );
  out(`total time ${f(R.totalSeconds)} s; the numbers are also in bench/results.json`);
  if (Object.keys(R.errors).length > 0) out(`errors in: ${Object.keys(R.errors).join(', ')}`);

  if (ONLY.length > 0) {
    R.only = ONLY;
    out(`WEFT_BENCH_ONLY=${ONLY.join(',')}: a partial run, so bench/results.json is left as it was`);
  } else {
    await writeResults(join(BENCH_DIR, 'results.json'), R);
  }
  if (Object.keys(R.errors).length > 0) process.exitCode = 1;
}

/** Writes the results as JSON, formatted as the repository's Prettier wants it so `npm run lint` stays clean. */
async function writeResults(file: string, r: Results): Promise<void> {
  const round = (_k: string, v: unknown): unknown =>
    typeof v === 'number' && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v;
  let text = JSON.stringify(r, round, 2) + '\n';
  try {
    const prettier = await import('prettier');
    text = await prettier.format(text, { ...(await prettier.resolveConfig(file)), filepath: file });
  } catch {
    // Prettier is a dev dependency of the repository; without it the JSON is still valid.
  }
  writeFileSync(file, text);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
