import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@weft/common';
import type {
  AlgorithmDef,
  Capacity,
  Executor,
  ListenAddress,
  WorkerHandle,
  WorkerLaunch,
} from '../../ports/executor.js';

/** The sidecar program of the Node wrapper package. */
const SIDECAR = fileURLToPath(import.meta.resolve('@weft/wrapper/sidecar'));

/**
 * Where a process on this machine dials a server listening on host: the host
 * itself, or loopback for the wildcard addresses.
 */
export function loopbackAddress(listen: ListenAddress): string {
  const { host, port } = listen;
  if (host === '0.0.0.0' || host === '') return `127.0.0.1:${port}`;
  if (host === '::' || host === '[::]') return `[::1]:${port}`;
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Runs each worker as local processes: the sidecar, which starts the
 * algorithm's process itself. CPU and memory requests are accounted against
 * this machine so the local executor never starts more than it can hold.
 */
export class LocalExecutor implements Executor {
  readonly defaultMaxWorkers: number;
  private usedCpu = 0;
  private usedMem = 0;
  private readonly live = new Map<string, WorkerHandle>();
  private readonly cpu: number;
  private readonly mem: number;

  constructor(
    private readonly opts: {
      logDir: string;
      log: Logger;
      cpu?: number;
      memBytes?: number;
      extraEnv?: Record<string, string>;
      /** The sidecar program to run; the Node wrapper's by default (tests give a fake one). */
      sidecar?: string;
    },
  ) {
    this.cpu = opts.cpu ?? availableParallelism();
    this.mem = opts.memBytes ?? totalmem();
    // More busy processes than cores only slows everyone down; algorithms that
    // mostly wait can raise maxWorkers.
    this.defaultMaxWorkers = Math.max(1, Math.floor(this.cpu));
    mkdirSync(opts.logDir, { recursive: true });
  }

  admits(alg: AlgorithmDef): string | undefined {
    if (alg.codePath || alg.codeStage) return undefined;
    return alg.image
      ? `has no code.path, only the image ${alg.image}; the local executor runs local code (images need the Kubernetes executor, not available yet)`
      : 'has no code.path; the local executor runs local code';
  }

  capacity(): Capacity {
    return { cpu: this.cpu, memBytes: this.mem, usedCpu: this.usedCpu, usedMemBytes: this.usedMem };
  }

  fits(alg: AlgorithmDef): boolean {
    return alg.cpu <= this.cpu && alg.memBytes <= this.mem;
  }

  canStart(alg: AlgorithmDef): boolean {
    // A small epsilon: ten workers of 0.1 cpu must fit in one core despite float sums.
    return this.usedCpu + alg.cpu <= this.cpu + 1e-9 && this.usedMem + alg.memBytes <= this.mem;
  }

  /** Sidecars run on this machine, so loopback reaches a wildcard listener. */
  advertise(listen: ListenAddress): string {
    return loopbackAddress(listen);
  }

  start(launch: WorkerLaunch): Promise<WorkerHandle> {
    const alg = launch.algorithm;
    const logPath = join(this.opts.logDir, `${launch.workerId}.log`);
    let child: ChildProcess;
    try {
      const fd = openSync(logPath, 'a');
      try {
        child = spawn(process.execPath, [this.opts.sidecar ?? SIDECAR], {
          stdio: ['ignore', fd, fd],
          // Its own process group: the sidecar and the algorithm it starts are
          // killed together, even when the algorithm never looks at its socket.
          detached: true,
          env: {
            ...process.env,
            ...this.opts.extraEnv,
            WEFT_SERVER: launch.serverAddress,
            WEFT_WORKER_ID: launch.workerId,
            WEFT_ALGORITHM_NAME: alg.name,
            WEFT_ALGORITHM_ENV: alg.env,
            WEFT_ALGORITHM_PATH: alg.codePath,
            WEFT_ALGORITHM_STAGE: alg.codeStage,
            WEFT_ALGORITHM_ENTRY: alg.entryPoint,
            WEFT_ALGORITHM_ENV_JSON: JSON.stringify(alg.env_vars),
          },
        });
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      // Nothing was accounted yet: a refused start holds no resources.
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.usedCpu += alg.cpu;
    this.usedMem += alg.memBytes;
    const exitCbs: ((reason: string) => void)[] = [];
    let exitReason: string | undefined;
    const onGone = (reason: string): void => {
      if (exitReason !== undefined) return;
      exitReason = reason;
      this.usedCpu -= alg.cpu;
      this.usedMem -= alg.memBytes;
      this.live.delete(launch.workerId);
      for (const cb of exitCbs.splice(0)) cb(reason);
    };
    const handle: WorkerHandle = {
      workerId: launch.workerId,
      logLocation: logPath,
      stop: ({ force }) => {
        if (child.pid === undefined || exitReason !== undefined) return;
        try {
          process.kill(-child.pid, force ? 'SIGKILL' : 'SIGTERM');
        } catch {
          // The group is already gone.
        }
      },
      onExit: (cb) => {
        if (exitReason !== undefined) cb(exitReason);
        else exitCbs.push(cb);
      },
    };
    this.live.set(launch.workerId, handle);
    return new Promise<WorkerHandle>((resolve, reject) => {
      child.once('spawn', () => resolve(handle));
      child.on('exit', (code, signal) => onGone(`process exited (code ${code}, signal ${signal})`));
      child.on('error', (err) => {
        this.opts.log.error('worker process error', { worker: launch.workerId, err });
        onGone(`process error: ${err.message}`);
        // Before 'spawn' this is a failed start; after it the promise is settled and this is a no-op.
        reject(err);
      });
    });
  }

  async shutdown(): Promise<void> {
    const gone = [...this.live.values()].map(
      (h) =>
        new Promise<void>((resolve) => {
          h.onExit(() => resolve());
          h.stop({ force: true });
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(gone),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 2000);
      }),
    ]);
    clearTimeout(timer);
  }
}
