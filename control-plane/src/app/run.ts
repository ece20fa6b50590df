import { configFromEnv, type ControlPlaneConfig } from './config.js';
import { startControlPlane } from './main.js';

/** What `weft server` flags may override; each has a WEFT_* equivalent. */
export interface ServerOptions {
  port?: number;
  host?: string;
  dataDir?: string;
  metricsPort?: number;
  register?: string[];
  /** WEFT_BLOBS */
  blobs?: string;
  /** WEFT_STATE */
  state?: string;
  /** WEFT_EXECUTOR */
  executor?: string;
}

/**
 * Runs a control plane in this process until SIGTERM or SIGINT, then shuts
 * it down gracefully. Options override the WEFT_* environment.
 */
export async function runServer(opts: ServerOptions): Promise<void> {
  const config: ControlPlaneConfig = configFromEnv();
  if (opts.port !== undefined) config.port = opts.port;
  if (opts.host !== undefined) config.host = opts.host;
  if (opts.dataDir !== undefined) config.dataDir = opts.dataDir;
  if (opts.metricsPort !== undefined) config.metricsPort = opts.metricsPort;
  if (opts.register) config.registerDirs.push(...opts.register);
  if (opts.blobs !== undefined) config.blobs = opts.blobs;
  if (opts.state !== undefined) config.state = opts.state;
  if (opts.executor !== undefined) config.executor = opts.executor;
  const cp = await startControlPlane(config);
  process.stderr.write(
    `weft control plane listening on ${cp.address} (data: ${cp.dataDir}` +
      (cp.metricsPort !== undefined ? `, metrics: http://${config.host}:${cp.metricsPort}/metrics` : '') +
      ')\n',
  );
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      cp.close().then(resolve, resolve);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
