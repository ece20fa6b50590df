import type { AlgorithmDef, Capacity, Executor, WorkerHandle, WorkerLaunch } from '../ports/executor.js';

/** A handle of {@link FakeExecutor}: records stop calls; exit() ends the worker. */
export interface FakeHandle extends WorkerHandle {
  stops: boolean[];
  exit(reason: string): void;
}

/**
 * An executor in memory for dispatcher tests: starts resolve, reject
 * (failWith) or wait (hold, release) as the test says; cpu is accounted from
 * start until the handle exits, and a forced stop exits it.
 */
export class FakeExecutor implements Executor {
  readonly defaultMaxWorkers = 4;
  readonly launches: WorkerLaunch[] = [];
  readonly handles: FakeHandle[] = [];
  used = 0;
  failWith: string | undefined;
  refuse: string | undefined;
  /** When set, starts wait until the test calls release(). */
  hold = false;
  private held: (() => void)[] = [];

  release(): void {
    for (const go of this.held.splice(0)) go();
  }

  admits(): string | undefined {
    return this.refuse;
  }
  canStart(alg: AlgorithmDef): boolean {
    return this.used + alg.cpu <= 1;
  }
  fits(alg: AlgorithmDef): boolean {
    return alg.cpu <= 1;
  }
  capacity(): Capacity {
    return { cpu: 1, memBytes: 1 << 30, usedCpu: this.used, usedMemBytes: 0 };
  }
  advertise(): string {
    return '127.0.0.1:1';
  }
  start(launch: WorkerLaunch): Promise<WorkerHandle> {
    this.launches.push(launch);
    if (this.failWith !== undefined) return Promise.reject(new Error(this.failWith));
    this.used += launch.algorithm.cpu;
    let reason: string | undefined;
    const cbs: ((r: string) => void)[] = [];
    const h: FakeHandle = {
      workerId: launch.workerId,
      logLocation: `memory:${launch.workerId}`,
      stops: [],
      stop: ({ force }) => {
        h.stops.push(force);
        // A forced stop ends the worker, as a SIGKILL would.
        if (force) h.exit('killed');
      },
      onExit: (cb) => (reason !== undefined ? cb(reason) : cbs.push(cb)),
      exit: (r) => {
        if (reason !== undefined) return;
        reason = r;
        this.used -= launch.algorithm.cpu;
        for (const cb of cbs) cb(r);
      },
    };
    this.handles.push(h);
    if (!this.hold) return Promise.resolve(h);
    return new Promise((resolve) => this.held.push(() => resolve(h)));
  }
  shutdown(): Promise<void> {
    for (const h of this.handles) h.exit('shutdown');
    return Promise.resolve();
  }
}
