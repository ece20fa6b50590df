/** Pipeline-level benchmarks: per-node overhead of a long chain, and mixed-priority jobs sharing workers. */
import { JobState, PipelineDescriptor } from '@weft/proto';
import { Bench } from './cp.js';
import { warmPool } from './fullcp.js';
import { median, round } from './stats.js';
import { LoadMonitor, type LoadReport } from './util.js';

/** ExecRaw of a full descriptor (priority included), then Watch until the job ends. */
function execDescriptor(
  b: Bench,
  descriptor: Record<string, unknown>,
): Promise<{ jobId: string; ms: number; state: JobState }> {
  const pipeline = PipelineDescriptor.fromJSON(descriptor);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    b.jobs.execRaw({ pipeline, flowInputMsgpack: Buffer.alloc(0) }, (err, res) => {
      if (err) return reject(err);
      let state = JobState.JOB_STATE_UNSPECIFIED;
      const stream = b.jobs.watch({ jobId: res.jobId });
      stream.on('data', (ev: { event?: { $case: string; value: unknown } }) => {
        if (ev.event?.$case === 'status') state = (ev.event.value as { state: JobState }).state;
      });
      stream.on('error', reject);
      stream.on('end', () => resolve({ jobId: res.jobId, ms: performance.now() - t0, state }));
    });
  });
}

export interface ChainResult {
  nodes: number;
  runs: number[];
  medianMs: number;
  perNodeMs: number;
  load: LoadReport;
}

/** A linear pipeline of `nodes` empty tasks, each reading the previous one's output, on one warm worker. */
export async function linearChain(nodes: number, runs: number): Promise<ChainResult> {
  const b = await Bench.start('chain');
  try {
    await b.apply({ name: 'empty', code: 'empty', minHotWorkers: 1, maxWorkers: 1 });
    await warmPool(b, 'empty', 1);
    const descriptor = {
      name: 'chain',
      nodes: Array.from({ length: nodes }, (_, i) => ({
        nodeName: `N${i}`,
        algorithmName: 'empty',
        input: [i === 0 ? '@flowInput.x' : `@N${i - 1}`],
      })),
      flowInput: { x: 1 },
    };
    await execDescriptor(b, descriptor); // JIT warm-up of the engine's paths
    const times: number[] = [];
    const load = new LoadMonitor();
    for (let r = 0; r < runs; r++) {
      const res = await execDescriptor(b, descriptor);
      if (res.state !== JobState.JOB_STATE_COMPLETED)
        throw new Error(`chain job ${res.jobId} ended ${JobState[res.state]}`);
      times.push(res.ms);
    }
    const medianMs = median(times);
    return { nodes, runs: times.map((t) => round(t, 1)), medianMs, perNodeMs: medianMs / nodes, load: load.stop() };
  } finally {
    await b.close();
  }
}

export interface PriorityMixResult {
  jobs: number;
  itemsPerJob: number;
  workers: number;
  totalMs: number;
  tasksPerSec: number;
  /** Single job of the same total size, same workers, same run: the baseline. */
  singleJobTasksPerSec: number;
  /** When each job finished, ms after all were submitted, by priority. */
  finishedMs: Record<number, number>;
  load: LoadReport;
}

/**
 * Five jobs at priorities 1-5, each a batch of empty tasks, submitted at once
 * onto the same warm workers: total dispatch throughput, and the order in
 * which they finish (priority 5 first).
 */
export async function priorityMix(itemsPerJob: number, workers: number): Promise<PriorityMixResult> {
  const b = await Bench.start('priorities');
  try {
    await b.apply({ name: 'empty', code: 'empty', minHotWorkers: workers, maxWorkers: workers });
    await warmPool(b, 'empty', workers);
    const batch = (name: string, priority: number, items: number) => ({
      name,
      priority,
      nodes: [{ nodeName: 'B', algorithmName: 'empty', input: ['#@flowInput.items'] }],
      flowInput: { items: Array.from({ length: items }, (_, i) => i) },
    });
    await execDescriptor(b, batch('warm', 3, 1000));
    const single = await execDescriptor(b, batch('single', 3, itemsPerJob * 5));
    const singleJobTasksPerSec = (itemsPerJob * 5) / (single.ms / 1000);

    const load = new LoadMonitor();
    const t0 = performance.now();
    const finishedMs: Record<number, number> = {};
    await Promise.all(
      [1, 2, 3, 4, 5].map(async (priority) => {
        const r = await execDescriptor(b, batch(`p${priority}`, priority, itemsPerJob));
        if (r.state !== JobState.JOB_STATE_COMPLETED)
          throw new Error(`priority ${priority} job ended ${JobState[r.state]}`);
        finishedMs[priority] = round(performance.now() - t0, 0);
      }),
    );
    const totalMs = performance.now() - t0;
    return {
      jobs: 5,
      itemsPerJob,
      workers,
      totalMs,
      tasksPerSec: (itemsPerJob * 5) / (totalMs / 1000),
      singleJobTasksPerSec,
      finishedMs,
      load: load.stop(),
    };
  } finally {
    await b.close();
  }
}
