import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@weft/common';
import type { AlgorithmDef, Capacity, Executor, WorkerHandle, WorkerLaunch } from './port.js';

/** The sidecar program of the Node wrapper package. */
const SIDECAR = fileURLToPath(import.meta.resolve('@weft/wrapper/sidecar'));

/**
 * Runs each worker as local processes: the sidecar, which starts the
 * algorithm's process itself. CPU and memory requests are accounted against
 * this machine so the embedded default never starts more than it can hold.
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
    },
  ) {
    this.cpu = opts.cpu ?? availableParallelism();
    this.mem = opts.memBytes ?? totalmem();
    // More busy processes than cores only slows everyone down; algorithms that
    // mostly wait can raise maxWorkers.
    this.defaultMaxWorkers = Math.max(1, Math.floor(this.cpu));
    mkdirSync(opts.logDir, { recursive: true });
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

  start(launch: WorkerLaunch): WorkerHandle {
    const alg = launch.algorithm;
    const logPath = join(this.opts.logDir, `${launch.workerId}.log`);
    const fd = openSync(logPath, 'a');
    let child;
    try {
      child = spawn(process.execPath, [SIDECAR], {
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
    this.usedCpu += alg.cpu;
    this.usedMem += alg.memBytes;
    const exitCbs: ((code: number | null, signal: string | null) => void)[] = [];
    let exited = false;
    const onGone = (code: number | null, signal: string | null): void => {
      if (exited) return;
      exited = true;
      this.usedCpu -= alg.cpu;
      this.usedMem -= alg.memBytes;
      this.live.delete(launch.workerId);
      for (const cb of exitCbs) cb(code, signal);
    };
    child.on('exit', onGone);
    child.on('error', (err) => {
      this.opts.log.error('worker process error', { worker: launch.workerId, err });
      onGone(null, null);
    });
    const handle: WorkerHandle = {
      workerId: launch.workerId,
      pid: child.pid,
      logPath,
      kill: (signal = 'SIGTERM') => {
        if (child.pid === undefined) return;
        try {
          process.kill(-child.pid, signal);
        } catch {
          // The group is already gone.
        }
      },
      onExit: (cb) => {
        exitCbs.push(cb);
      },
    };
    this.live.set(launch.workerId, handle);
    return handle;
  }

  async shutdown(): Promise<void> {
    for (const h of this.live.values()) h.kill('SIGKILL');
    const deadline = Date.now() + 2000;
    while (this.live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }
}
