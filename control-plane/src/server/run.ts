import { configFromEnv, startControlPlane } from './app.js';

/**
 * Runs a control plane in this process until SIGTERM or SIGINT, then shuts
 * it down gracefully. Options override the WEFT_* environment.
 */
export async function runServer(opts: {
  port?: number;
  host?: string;
  dataDir?: string;
  metricsPort?: number;
  register?: string[];
}): Promise<void> {
  const config = configFromEnv();
  if (opts.port !== undefined) config.port = opts.port;
  if (opts.host !== undefined) config.host = opts.host;
  if (opts.dataDir !== undefined) config.dataDir = opts.dataDir;
  if (opts.metricsPort !== undefined) config.metricsPort = opts.metricsPort;
  if (opts.register) config.registerDirs.push(...opts.register);
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
