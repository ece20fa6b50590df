/**
 * Test helpers: a real control plane in its own process (so tests can
 * SIGKILL it), promisified gRPC clients, and the weft CLI.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { afterAll } from 'vitest';
import { decode } from '@weft/common';
import { loadAlgorithmSpecs } from '@weft/control-plane';
import {
  AlgorithmStoreClient,
  BackfillsClient,
  ConcurrencyLimitsClient,
  InstancesClient,
  WorkflowsClient,
  type Backfill,
  type Instance,
  type Resource,
  type Workflow,
  JobsClient,
  JobState,
  PipelineDescriptor,
  PipelineStoreClient,
  type JobEvent,
  type JobResult,
  type JobStatus,
} from '@weft/proto';
import { s3ServerEnv, testingOnS3 } from './s3.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = join(ROOT, 'control-plane', 'dist', 'cli', 'main.js');
export const FIXTURES = join(ROOT, 'test', 'fixtures');

/** Servers still running; a failed test must not leave one (and its workers) behind. */
const running = new Set<ChildProcess>();
afterAll(() => {
  for (const proc of running) {
    try {
      process.kill(proc.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
});

export function tempDir(prefix = 'weft-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface ServerProc {
  proc: ChildProcess;
  address: string;
  metricsPort: number;
  dataDir: string;
  stderr: () => string;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
}

/** Starts `weft server` on free ports with its data in dataDir (reused across restarts). */
export async function startServer(opts: { dataDir?: string; env?: Record<string, string> } = {}): Promise<ServerProc> {
  const dataDir = opts.dataDir ?? tempDir();
  // WEFT_TEST_BLOBS=s3 runs the same tests with payloads on a real S3-compatible server.
  const s3 = testingOnS3() && !opts.env?.['WEFT_BLOBS'] ? await s3ServerEnv(dataDir) : {};
  const proc = spawn(process.execPath, [CLI, 'server', '--port', '0', '--metrics-port', '0', '--data-dir', dataDir], {
    env: { ...process.env, WEFT_LOG_LEVEL: 'warn', ...s3, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stdout.on('data', () => undefined);
  const ready = new Promise<{ address: string; metricsPort: number }>((resolve, reject) => {
    proc.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /listening on (\S+) .*metrics: http:\/\/[^:]+:(\d+)/.exec(err);
      if (m) resolve({ address: m[1]!, metricsPort: Number(m[2]) });
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code} before listening:\n${err}`)));
  });
  const { address, metricsPort } = await ready;
  running.add(proc);
  const exited = new Promise<number | null>((r) =>
    proc.on('exit', (code) => {
      running.delete(proc);
      r(code);
    }),
  );
  return {
    proc,
    address,
    metricsPort,
    dataDir,
    stderr: () => err,
    stop: async () => {
      proc.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

function promisify<Req, Res>(client: Client, method: string): (req: Req) => Promise<Res> {
  const fn = (client as unknown as Record<string, (r: Req, cb: (e: ServiceError | null, v: Res) => void) => void>)[
    method
  ]!.bind(client);
  return (req: Req) => new Promise<Res>((resolve, reject) => fn(req, (e, v) => (e ? reject(e) : resolve(v))));
}

/** Promise-returning gRPC clients for one control plane. */
export function clients(address: string) {
  const algorithms = new AlgorithmStoreClient(address, credentials.createInsecure());
  const pipelines = new PipelineStoreClient(address, credentials.createInsecure());
  const jobs = new JobsClient(address, credentials.createInsecure());
  const c = {
    jobs,
    applyAlgorithm: promisify(algorithms, 'apply'),
    storePipeline: promisify(pipelines, 'store'),
    execRaw: promisify<{ pipeline: PipelineDescriptor; flowInputMsgpack: Buffer }, { jobId: string }>(jobs, 'execRaw'),
    status: promisify<{ jobId: string }, JobStatus>(jobs, 'getStatus'),
    result: promisify<{ jobId: string }, JobResult>(jobs, 'getResult'),
    stop: promisify<{ jobId: string; reason: string }, JobStatus>(jobs, 'stop'),
    pause: promisify<{ jobId: string }, JobStatus>(jobs, 'pause'),
    resume: promisify<{ jobId: string }, JobStatus>(jobs, 'resume'),
    /** Stores a pipeline given in its JSON (HKube) form. */
    async store(descriptor: Record<string, unknown>): Promise<void> {
      await c.storePipeline({ pipeline: PipelineDescriptor.fromJSON(descriptor) });
    },
    execStored: async (name: string): Promise<string> =>
      (
        await promisify<{ name: string; flowInputMsgpack: Buffer }, { jobId: string }>(
          jobs,
          'execStored',
        )({
          name,
          flowInputMsgpack: Buffer.alloc(0),
        })
      ).jobId,
    list: async (filter: { pipelineName?: string; tag?: string }): Promise<JobStatus[]> =>
      (
        await promisify<{ pipelineName: string; tag: string; state: number; limit: number }, { jobs: JobStatus[] }>(
          jobs,
          'list',
        )({ pipelineName: filter.pipelineName ?? '', tag: filter.tag ?? '', state: 0, limit: 0 })
      ).jobs,
    /** Applies every spec in a file (relative code paths resolved against it). */
    async applyFile(file: string): Promise<void> {
      for (const spec of (await loadAlgorithmSpecs(file)).specs) await c.applyAlgorithm({ spec });
    },
    /** Runs a descriptor (JSON form) and returns its job id. */
    async exec(descriptor: Record<string, unknown>, flowInputMsgpack: Buffer = Buffer.alloc(0)): Promise<string> {
      return (await c.execRaw({ pipeline: PipelineDescriptor.fromJSON(descriptor), flowInputMsgpack })).jobId;
    },
    /** Collects the job's watch events until the stream ends. */
    watch(jobId: string): Promise<JobEvent[]> {
      const events: JobEvent[] = [];
      const s = jobs.watch({ jobId });
      return new Promise((resolve, reject) => {
        s.on('data', (e: JobEvent) => events.push(e));
        s.on('end', () => resolve(events));
        s.on('error', reject);
      });
    },
    /** Waits for the job to end and returns its status. */
    async wait(jobId: string, timeoutMs = 60_000): Promise<JobStatus> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const st = await c.status({ jobId });
        if (st.state >= JobState.JOB_STATE_COMPLETED) return st;
        if (Date.now() > deadline) throw new Error(`job ${jobId} still ${JobState[st.state]} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    /** Decoded leaf results. */
    async values(jobId: string): Promise<unknown[]> {
      const r = await c.result({ jobId });
      return r.results.map((l) =>
        l.result?.kind?.$case === 'inline' ? decode(l.result.kind.value) : l.result?.kind?.value,
      );
    },
    close(): void {
      algorithms.close();
      pipelines.close();
      jobs.close();
    },
  };
  return c;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the weft CLI against a server. */
export function weft(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, ...env }, cwd: ROOT },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function until(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Pids of live processes whose environment has key=value (Linux /proc). */
export function pidsWithEnv(key: string, value: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0');
      if (env.includes(`${key}=${value}`)) out.push(Number(entry));
    } catch {
      // The process ended or is not ours to read.
    }
  }
  return out;
}

/** Promise-returning clients of the schedule services. */
export function scheduleClients(address: string) {
  const wf = new WorkflowsClient(address, credentials.createInsecure());
  const inst = new InstancesClient(address, credentials.createInsecure());
  const bf = new BackfillsClient(address, credentials.createInsecure());
  const res = new ConcurrencyLimitsClient(address, credentials.createInsecure());
  return {
    apply: (document: Record<string, unknown>) =>
      promisify<{ document: Record<string, unknown> }, Workflow>(wf, 'apply')({ document }),
    getWorkflow: (id: string) => promisify<{ id: string }, Workflow>(wf, 'get')({ id }),
    setEnabled: (id: string, enabled: boolean) =>
      promisify<{ id: string; enabled: boolean }, Workflow>(wf, 'setEnabled')({ id, enabled }),
    deleteWorkflow: (id: string) => promisify<{ id: string }, Workflow>(wf, 'delete')({ id }),
    trigger: (workflowId: string, parameter: string, env: Record<string, string> = {}) =>
      promisify<{ workflowId: string; parameter: string; env: Record<string, string>; allowFuture: boolean }, Instance>(
        wf,
        'trigger',
      )({ workflowId, parameter, env, allowFuture: false }),
    instances: async (workflowId: string): Promise<Instance[]> =>
      (
        await promisify<
          { workflowId: string; states: number[]; triggerId: string; limit: number },
          { instances: Instance[] }
        >(
          inst,
          'list',
        )({ workflowId, states: [], triggerId: '', limit: 0 })
      ).instances,
    instance: (workflowId: string, parameter: string) =>
      promisify<{ workflowId: string; parameter: string }, Instance>(inst, 'get')({ workflowId, parameter }),
    halt: (workflowId: string, parameter: string) =>
      promisify<{ workflowId: string; parameter: string }, Instance>(inst, 'halt')({ workflowId, parameter }),
    retry: (workflowId: string, parameter: string, delayMs = 0) =>
      promisify<{ workflowId: string; parameter: string; delayMs: number }, Instance>(
        inst,
        'retry',
      )({
        workflowId,
        parameter,
        delayMs,
      }),
    createBackfill: (req: {
      workflowId: string;
      start: Date;
      end: Date;
      concurrency: number;
      reverse?: boolean;
      description?: string;
    }) =>
      promisify<Record<string, unknown>, Backfill>(
        bf,
        'create',
      )({
        reverse: false,
        description: '',
        allowFuture: false,
        env: {},
        ...req,
      }),
    backfill: (id: string) => promisify<{ id: string }, Backfill>(bf, 'get')({ id }),
    haltBackfill: (id: string, graceful: boolean) =>
      promisify<{ id: string; graceful: boolean }, Backfill>(bf, 'halt')({ id, graceful }),
    createResource: (id: string, concurrency: number) =>
      promisify<{ id: string; concurrency: number; used: number }, Resource>(
        res,
        'create',
      )({ id, concurrency, used: 0 }),
    close(): void {
      wf.close();
      inst.close();
      bf.close();
      res.close();
    },
  };
}

/** Runs fn and returns the gRPC error it rejects with. */
export async function rejection(fn: () => Promise<unknown>): Promise<ServiceError> {
  try {
    await fn();
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected the call to fail');
}
