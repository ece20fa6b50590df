/** A full control plane in this process, driven through its public gRPC API. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { createLogger, decode } from '@weft/common';
import { configFromEnv, startControlPlane, type ControlPlane } from '@weft/control-plane';
import {
  AlgorithmSpec,
  AlgorithmStoreClient,
  JobState,
  JobsClient,
  PipelineDescriptor,
  type JobResult,
} from '@weft/proto';
import { ALGORITHMS_DIR } from './util.js';

export interface AlgorithmOptions {
  name: string;
  /** Directory under bench/algorithms. */
  code: string;
  minHotWorkers: number;
  maxWorkers: number;
  cpu?: number;
  mem?: string;
  env?: Record<string, string>;
}

export interface NodeSpec {
  nodeName: string;
  algorithmName: string;
  input: unknown[];
}

export interface JobRun {
  jobId: string;
  state: JobState;
  /** ExecRaw sent → Watch stream ended. */
  ms: number;
  /** ExecRaw sent → its answer (the job is recorded and its first tasks queued). */
  execRawMs: number;
}

export class Bench {
  readonly dir: string;
  private constructor(
    readonly cp: ControlPlane,
    dir: string,
    readonly algorithms: InstanceType<typeof AlgorithmStoreClient>,
    readonly jobs: InstanceType<typeof JobsClient>,
  ) {
    this.dir = dir;
  }

  /** A control plane with its data in a new temporary directory; `blobs` is its WEFT_BLOBS (default: the data dir). */
  static async start(label: string, where: { blobs?: string } = {}): Promise<Bench> {
    const dir = mkdtempSync(join(tmpdir(), `weft-bench-${label}-`));
    const config = configFromEnv(where.blobs ? { WEFT_BLOBS: where.blobs } : {});
    config.port = 0;
    config.metricsPort = -1;
    config.dataDir = dir;
    config.log = createLogger({ component: 'control-plane' }, 'warn');
    const cp = await startControlPlane(config);
    const opts = { 'grpc.max_receive_message_length': 256 * 1024 * 1024 };
    return new Bench(
      cp,
      dir,
      new AlgorithmStoreClient(cp.address, credentials.createInsecure(), opts),
      new JobsClient(cp.address, credentials.createInsecure(), opts),
    );
  }

  apply(a: AlgorithmOptions): Promise<void> {
    const spec = AlgorithmSpec.fromJSON({
      name: a.name,
      env: 'nodejs',
      code: { path: join(ALGORITHMS_DIR, a.code), entryPoint: 'index.js' },
      minHotWorkers: a.minHotWorkers,
      maxWorkers: a.maxWorkers,
      cpu: a.cpu ?? 0.1,
      mem: a.mem ?? '128Mi',
      algorithmEnv: a.env ?? {},
    });
    return new Promise((resolve, reject) => this.algorithms.apply({ spec }, (err) => (err ? reject(err) : resolve())));
  }

  /** ExecRaw, then Watch until the stream ends; the time covers both. */
  exec(name: string, nodes: NodeSpec[], flowInput: Record<string, unknown> = {}): Promise<JobRun> {
    const pipeline = PipelineDescriptor.fromJSON({ name, nodes, flowInput });
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      this.jobs.execRaw({ pipeline, flowInputMsgpack: Buffer.alloc(0) }, (err, res) => {
        if (err) return reject(err);
        const execRawMs = performance.now() - t0;
        const jobId = res.jobId;
        let state = JobState.JOB_STATE_UNSPECIFIED;
        const stream = this.jobs.watch({ jobId });
        stream.on('data', (ev: { event?: { $case: string; value: unknown } }) => {
          if (ev.event?.$case === 'status') state = (ev.event.value as { state: JobState }).state;
        });
        stream.on('error', reject);
        stream.on('end', () => resolve({ jobId, state, ms: performance.now() - t0, execRawMs }));
      });
    });
  }

  /** Like exec, but fails unless the job completed. */
  async run(name: string, nodes: NodeSpec[], flowInput: Record<string, unknown> = {}): Promise<JobRun> {
    const r = await this.exec(name, nodes, flowInput);
    if (r.state !== JobState.JOB_STATE_COMPLETED) {
      const status = await new Promise<{ error: string }>((res, rej) =>
        this.jobs.getStatus({ jobId: r.jobId }, (err, s) => (err ? rej(err) : res(s))),
      );
      throw new Error(`job ${r.jobId} ended ${JobState[r.state]}: ${status.error}`);
    }
    return r;
  }

  result(jobId: string): Promise<JobResult> {
    return new Promise((resolve, reject) =>
      this.jobs.getResult({ jobId }, (err, r) => (err ? reject(err) : resolve(r))),
    );
  }

  /** The decoded inline leaf results of a job, in batch order. */
  async values(jobId: string): Promise<unknown[]> {
    const r = await this.result(jobId);
    return r.results.map((l) =>
      l.result?.kind?.$case === 'inline' ? decode(l.result.kind.value) : l.result?.kind?.value,
    );
  }

  async close(): Promise<void> {
    this.algorithms.close();
    this.jobs.close();
    await this.cp.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
