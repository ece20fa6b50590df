/**
 * A control plane's lifecycle: open the adapters (compose.ts), serve, resume
 * the work that was running, and close everything in order.
 */
import { createServer, type Server as HttpServer } from 'node:http';
import { resolve } from 'node:path';
import { ServerCredentials } from '@grpc/grpc-js';
import { createLogger, type Logger } from '@weft/common';
import { compose, openAdapters, SERVICES, type Adapters, type Components } from './compose.js';
import type { ControlPlaneConfig } from './config.js';
import { registerAlgorithmDirs } from './register.js';

export { configFromEnv, type ControlPlaneConfig } from './config.js';

export interface ControlPlane {
  /** host:port clients dial. */
  readonly address: string;
  readonly port: number;
  readonly metricsPort: number | undefined;
  readonly dataDir: string;
  /** Stops serving, lets workers exit, closes the stores. Idempotent, and total: every step runs. */
  close(): Promise<void>;
}

/**
 * Where clients on this machine dial a server listening on host: the host
 * itself, or loopback for the wildcard addresses.
 */
function dialAddress(host: string, port: number): string {
  if (host === '0.0.0.0' || host === '') return `127.0.0.1:${port}`;
  if (host === '::' || host === '[::]') return `[::1]:${port}`;
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Serves /metrics; resolves the bound port. */
function serveMetrics(c: Components, host: string, port: number): Promise<{ server: HttpServer; port: number }> {
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      c.metrics.registry.metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': c.metrics.registry.contentType });
          res.end(body);
        },
        (err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
        },
      );
    } else {
      res.writeHead(404);
      res.end('not found: try /metrics\n');
    }
  });
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(port, host, () => {
      const a = server.address();
      res({ server, port: typeof a === 'object' && a ? a.port : port });
    });
  });
}

/** What close() has to release; each part is there once it was made. */
interface Parts {
  adapters?: Adapters;
  c?: Components;
  metricsServer?: HttpServer;
  gcTimer?: NodeJS.Timeout;
}

/**
 * The shutdown steps in order: stop taking work, let running work end,
 * stop serving, and close the stores last. Every step runs whatever the
 * others did, so one failure cannot keep the database open.
 */
async function closeAll(p: Parts, log: Logger): Promise<void> {
  const { adapters: a, c } = p;
  const steps: [string, () => unknown][] = [
    ['health', () => c && ['', ...SERVICES].forEach((s) => c.health.setStatus(s, 'NOT_SERVING'))],
    ['retention timer', () => p.gcTimer && clearInterval(p.gcTimer)],
    ['pipeline triggers', () => c?.triggers.stop()],
    ['scheduler', () => c?.scheduler.close()],
    ['closures', () => c?.closures.close()],
    ['dispatcher', () => c?.dispatcher.shutdown()],
    ['executor', () => a?.executor.shutdown()],
    [
      'gRPC server',
      () =>
        c &&
        new Promise<void>((res) => {
          const t = setTimeout(() => {
            c.server.forceShutdown();
            res();
          }, 2000);
          c.server.tryShutdown(() => {
            clearTimeout(t);
            res();
          });
        }),
    ],
    ['metrics server', () => p.metricsServer && new Promise<void>((res) => p.metricsServer!.close(() => res()))],
    ['webhooks', () => c?.webhooks.close(2000)],
    ['blob store', () => a?.blobs.close()],
    ['state store', () => a?.store.close()],
    ['schedule store', () => a?.scheduleStore.close()],
  ];
  for (const [name, step] of steps) {
    try {
      await step();
    } catch (err) {
      log.error(`shutdown step failed: ${name}`, { err });
    }
  }
}

/**
 * Starts a control plane with the adapters its config names (by default
 * SQLite, a blob directory and local processes, all under dataDir).
 */
export async function startControlPlane(config: ControlPlaneConfig): Promise<ControlPlane> {
  const log = config.log ?? createLogger({ component: 'control-plane' });
  const dataDir = resolve(config.dataDir);
  const parts: Parts = {};
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      log.info('control plane shutting down');
      await closeAll(parts, log);
      log.info('control plane stopped');
    })());

  // A refused setting fails here, before anything is open or logged: one line for the user.
  parts.adapters = await openAdapters(config, dataDir, log);
  try {
    const c = (parts.c = await compose(parts.adapters, config, dataDir, log));
    const port = await new Promise<number>((res, rej) =>
      c.server.bindAsync(`${config.host}:${config.port}`, ServerCredentials.createInsecure(), (err, p) =>
        err ? rej(err) : res(p),
      ),
    );
    c.setListening(config.host, port);
    c.dispatcher.start();
    let metricsPort: number | undefined;
    if (config.metricsPort >= 0) {
      const m = await serveMetrics(c, config.host, config.metricsPort);
      parts.metricsServer = m.server;
      metricsPort = m.port;
    }
    await registerAlgorithmDirs(config.registerDirs, c.algorithms, parts.adapters.blobs, log);
    for (const rec of await parts.adapters.store.listAlgorithms()) {
      if ((c.algorithms.get(rec.name)?.minHotWorkers ?? 0) > 0) c.dispatcher.ensureHot(rec.name);
    }
    const resumed = await c.engine.recover();
    // After the job engine: a pipeline workflow's running job must be back before the scheduler reattaches to it.
    const sched = await c.scheduler.start();
    const collect = (): void => {
      c.engine.collectGarbage().then(
        (n) =>
          (n.jobs || n.intermediates) &&
          log.info('retention', { deletedJobs: n.jobs, deletedIntermediates: n.intermediates }),
        (err: unknown) => log.warn('retention failed', { err }),
      );
    };
    collect();
    parts.gcTimer = setInterval(collect, config.retention.intervalMs);
    parts.gcTimer.unref();
    log.info('control plane serving', {
      address: `${config.host}:${port}`,
      dataDir,
      blobs: parts.adapters.blobs.url,
      metricsPort,
      resumedJobs: resumed,
      workflows: sched.workflows,
      caughtUpSlots: sched.caughtUp,
    });
    return { address: dialAddress(config.host, port), port, metricsPort, dataDir, close };
  } catch (err) {
    // Half-started is worse than not started: release the port, the workers
    // and the database so the caller sees the failure and the process can exit.
    await close();
    throw err;
  }
}
