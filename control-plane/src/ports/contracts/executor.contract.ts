/**
 * The executor contract (see ports/executor.ts), as a suite every adapter
 * runs: `executorContract('local', factory)`. The adapter's workers run the
 * probe worker (probe-worker.mjs here; an image of it on a cluster), which
 * stands in for the sidecar: it dials the advertised address, reports its
 * launch environment and the signals it gets, and behaves as its algorithm
 * environment says (PROBE_EXIT_CODE, PROBE_IGNORE_STOP).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AlgorithmDef, Executor, WorkerHandle } from '../executor.js';

/** The probe worker program, for adapters that run a local program as their worker. */
export const PROBE_WORKER = fileURLToPath(new URL('./probe-worker.mjs', import.meta.url));

/** What the contract gets from an adapter, fresh per test. */
export interface ExecutorFixture {
  /** Its workers run the probe worker; its capacity is what the factory was asked for. */
  executor: Executor;
  /** An algorithm the executor admits; the suite varies its name, cpu, memory and env_vars. */
  algorithm: AlgorithmDef;
  /** Algorithms the executor refuses (at least one: every executor refuses something). */
  refused: AlgorithmDef[];
  /** The host the suite listens on for the probe workers to dial. @default "127.0.0.1" */
  listenHost?: string;
  cleanup(): Promise<void>;
}

/** The capacity every fixture's executor is made with. */
export const CONTRACT_CAPACITY = { cpu: 1, memBytes: 1024 ** 3 };

interface Probe {
  hello: Record<string, string>;
  signals: string[];
}

/** Listens for probe workers; each reports as one JSON line per message. */
class ProbeListener {
  private readonly server: Server;
  private readonly probes = new Map<string, Probe>();
  private readonly waiters: (() => void)[] = [];
  private readonly sockets = new Set<Socket>();

  constructor() {
    this.server = createServer((sock) => {
      this.sockets.add(sock);
      sock.on('close', () => this.sockets.delete(sock));
      let buf = '';
      let probe: Probe | undefined;
      sock.setEncoding('utf8');
      sock.on('data', (chunk: string) => {
        buf += chunk;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const msg = JSON.parse(buf.slice(0, nl)) as { hello?: Record<string, string>; signal?: string };
          buf = buf.slice(nl + 1);
          if (msg.hello) {
            probe = { hello: msg.hello, signals: [] };
            this.probes.set(msg.hello['WEFT_WORKER_ID'] ?? '', probe);
          } else if (msg.signal && probe) {
            probe.signals.push(msg.signal);
          }
          for (const w of this.waiters.splice(0)) w();
        }
      });
    });
  }

  listen(host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, host, () => {
        const a = this.server.address();
        resolve(typeof a === 'object' && a ? a.port : 0);
      });
    });
  }

  /** Resolves once the probe of workerId has reported something that satisfies ok. */
  async until(workerId: string, ok: (p: Probe) => boolean): Promise<Probe> {
    for (;;) {
      const p = this.probes.get(workerId);
      if (p && ok(p)) return p;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Resolves with the handle's exit reason; counts how often the callback fired. */
function exitOf(handle: WorkerHandle): { done: Promise<string>; calls: () => number } {
  let n = 0;
  const done = new Promise<string>((resolve) =>
    handle.onExit((reason) => {
      n++;
      resolve(reason);
    }),
  );
  return { done, calls: () => n };
}

/**
 * Declares the executor contract's tests for one adapter. `factory` makes a
 * fresh fixture per test with the given capacity; `failingStart`, when the
 * adapter can be made to fail a start, makes an executor whose every start
 * fails.
 */
export function executorContract(
  name: string,
  factory: (capacity: typeof CONTRACT_CAPACITY) => Promise<ExecutorFixture>,
  failingStart?: () => Promise<{ executor: Executor; algorithm: AlgorithmDef; cleanup(): Promise<void> }>,
): void {
  describe(`Executor contract: ${name}`, () => {
    let fx: ExecutorFixture;
    let listener: ProbeListener;
    let address: string;
    let port: number;
    let seq = 0;

    beforeEach(async () => {
      fx = await factory(CONTRACT_CAPACITY);
      listener = new ProbeListener();
      port = await listener.listen(fx.listenHost ?? '127.0.0.1');
      address = fx.executor.advertise({ host: fx.listenHost ?? '127.0.0.1', port });
    });

    afterEach(async () => {
      await fx.executor.shutdown();
      await listener.close();
      await fx.cleanup();
    });

    const def = (over: Partial<AlgorithmDef> = {}): AlgorithmDef => ({
      ...fx.algorithm,
      name: `probe-${seq}`,
      cpu: 0.1,
      memBytes: 64 * 1024 ** 2,
      ...over,
    });
    const start = async (over: Partial<AlgorithmDef> = {}): Promise<WorkerHandle> => {
      const workerId = `probe-${++seq}`;
      const handle = await fx.executor.start({ workerId, algorithm: def(over), serverAddress: address });
      expect(handle.workerId).toBe(workerId);
      return handle;
    };

    it('admits its algorithm and refuses the others with a reason', () => {
      expect(fx.executor.admits(fx.algorithm)).toBeUndefined();
      expect(fx.refused.length).toBeGreaterThan(0);
      for (const alg of fx.refused) {
        const reason = fx.executor.admits(alg);
        expect(typeof reason).toBe('string');
        expect(reason!.length).toBeGreaterThan(10);
      }
    });

    it('advertises host:port of the listening port', () => {
      expect(address).toMatch(new RegExp(`^(\\[[^\\]]+\\]|[^:]+):${port}$`));
      expect(fx.executor.advertise({ host: '0.0.0.0', port: 1234 })).toMatch(/:1234$/);
    });

    it('starts a worker that dials the advertised address with the launch contract', async () => {
      const vars = { PROBE_X: 'y z', OTHER: '{"json":true}' };
      const handle = await start({ env_vars: vars, codeStage: 'stage-123', entryPoint: 'main.js', env: 'nodejs' });
      expect(typeof handle.logLocation).toBe('string');
      expect(handle.logLocation.length).toBeGreaterThan(0);
      const { hello } = await listener.until(handle.workerId, () => true);
      expect(hello).toMatchObject({
        WEFT_SERVER: address,
        WEFT_WORKER_ID: handle.workerId,
        WEFT_ALGORITHM_NAME: `probe-${seq}`,
        WEFT_ALGORITHM_ENV: 'nodejs',
        WEFT_ALGORITHM_PATH: fx.algorithm.codePath,
        WEFT_ALGORITHM_STAGE: 'stage-123',
        WEFT_ALGORITHM_ENTRY: 'main.js',
      });
      expect(JSON.parse(hello['WEFT_ALGORITHM_ENV_JSON']!)).toEqual(vars);
    });

    it('accounts a worker’s resources from start until its exit, and frees them before onExit fires', async () => {
      const big = { cpu: 0.6, memBytes: 256 * 1024 ** 2 };
      expect(fx.executor.fits(def(big))).toBe(true);
      expect(fx.executor.fits(def({ cpu: CONTRACT_CAPACITY.cpu * 2 }))).toBe(false);
      expect(fx.executor.fits(def({ memBytes: CONTRACT_CAPACITY.memBytes * 2 }))).toBe(false);
      expect(fx.executor.capacity()).toMatchObject({ ...CONTRACT_CAPACITY, usedCpu: 0, usedMemBytes: 0 });
      expect(fx.executor.canStart(def(big))).toBe(true);
      const handle = await start(big);
      expect(fx.executor.capacity().usedCpu).toBeCloseTo(0.6);
      expect(fx.executor.capacity().usedMemBytes).toBe(big.memBytes);
      expect(fx.executor.canStart(def(big))).toBe(false);
      expect(fx.executor.canStart(def({ cpu: 0.4 }))).toBe(true);
      await listener.until(handle.workerId, () => true);
      const usedAtExit = new Promise<number>((resolve) => handle.onExit(() => resolve(fx.executor.capacity().usedCpu)));
      handle.stop({ force: false });
      expect(await usedAtExit).toBeCloseTo(0);
      expect(fx.executor.capacity().usedMemBytes).toBe(0);
      expect(fx.executor.canStart(def(big))).toBe(true);
    });

    it('stop without force asks the worker to end, and it ends', async () => {
      const handle = await start();
      const exit = exitOf(handle);
      await listener.until(handle.workerId, () => true);
      handle.stop({ force: false });
      await listener.until(handle.workerId, (p) => p.signals.length > 0);
      expect((await exit.done).length).toBeGreaterThan(0);
    });

    it('force ends a worker that ignores the request to stop', async () => {
      const handle = await start({ env_vars: { PROBE_IGNORE_STOP: '1' } });
      const exit = exitOf(handle);
      await listener.until(handle.workerId, () => true);
      handle.stop({ force: false });
      // The worker got the request and is still there: it reported it over its connection.
      await listener.until(handle.workerId, (p) => p.signals.length > 0);
      expect(exit.calls()).toBe(0);
      handle.stop({ force: true });
      await exit.done;
      expect(exit.calls()).toBe(1);
    });

    it('fires onExit exactly once when a worker ends by itself, also for callbacks registered later', async () => {
      const handle = await start({ env_vars: { PROBE_EXIT_CODE: '3' } });
      const exit = exitOf(handle);
      const reason = await exit.done;
      expect(reason.length).toBeGreaterThan(0);
      expect(fx.executor.capacity().usedCpu).toBeCloseTo(0);
      // Stopping a worker that is gone is harmless and does not fire again.
      handle.stop({ force: false });
      handle.stop({ force: true });
      const late = await new Promise<string>((resolve) => handle.onExit(resolve));
      expect(late).toBe(reason);
      expect(exit.calls()).toBe(1);
    });

    it('shutdown ends every worker still running, also those ignoring stop', async () => {
      const a = await start({ env_vars: { PROBE_IGNORE_STOP: '1' } });
      const b = await start();
      const exits = [exitOf(a), exitOf(b)];
      await listener.until(a.workerId, () => true);
      await listener.until(b.workerId, () => true);
      await fx.executor.shutdown();
      await Promise.all(exits.map((e) => e.done));
      expect(exits.map((e) => e.calls())).toEqual([1, 1]);
      expect(fx.executor.capacity().usedCpu).toBeCloseTo(0);
    });

    if (failingStart) {
      it('rejects a start it cannot make, holding no resources', async () => {
        const f = await failingStart();
        try {
          const before = f.executor.capacity();
          await expect(
            f.executor.start({ workerId: 'doomed', algorithm: f.algorithm, serverAddress: address }),
          ).rejects.toThrow();
          expect(f.executor.capacity()).toEqual(before);
          expect(f.executor.canStart(f.algorithm)).toBe(true);
        } finally {
          await f.executor.shutdown();
          await f.cleanup();
        }
      });
    }
  });
}
