#!/usr/bin/env node
/**
 * weft-sidecar: the program beside every algorithm. Started by the executor
 * with its settings in the environment, or by hand with flags to serve an
 * algorithm that runs in a debugger (`--attach`).
 */
import { parseArgs } from 'node:util';
import { createLogger } from '@weft/common';
import { Sidecar } from './sidecar.js';

const { values } = parseArgs({
  options: {
    server: { type: 'string' },
    algorithm: { type: 'string' },
    attach: { type: 'boolean', default: false },
    port: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write(`usage: weft-sidecar [--server HOST:PORT] [--algorithm NAME] [--attach] [--port N]

Normally started by the control plane's executor. By hand, --attach joins the
algorithm's worker pool without starting the algorithm: run your algorithm in
your IDE with WEFT_SOCKET_URL set to the URL this prints.
`);
  process.exit(0);
}

const env = process.env;
const algorithmName = values.algorithm ?? env['WEFT_ALGORITHM_NAME'] ?? '';
const log = createLogger({ component: 'sidecar', worker: env['WEFT_WORKER_ID'] ?? '', algorithm: algorithmName });
if (!algorithmName) {
  process.stderr.write('weft-sidecar: --algorithm (or WEFT_ALGORITHM_NAME) is required\n');
  process.exit(2);
}

const sidecar = new Sidecar({
  server: values.server ?? env['WEFT_SERVER'] ?? 'localhost:50051',
  workerId: env['WEFT_WORKER_ID'] ?? '',
  algorithmName,
  algorithmEnv: env['WEFT_ALGORITHM_ENV'] ?? 'nodejs',
  algorithmPath: env['WEFT_ALGORITHM_PATH'] ?? '',
  algorithmStage: env['WEFT_ALGORITHM_STAGE'] ?? '',
  cacheDir: env['WEFT_CACHE_DIR'] ?? '',
  entryPoint: env['WEFT_ALGORITHM_ENTRY'] ?? '',
  algorithmVars: JSON.parse(env['WEFT_ALGORITHM_ENV_JSON'] ?? '{}') as Record<string, string>,
  ...(env['WEFT_CACHE_BYTES'] ? { maxCacheBytes: Number(env['WEFT_CACHE_BYTES']) } : {}),
  attach: values.attach,
  socketPort: values.port ? Number(values.port) : 0,
  log,
});

process.on('SIGTERM', () => sidecar.shutdown(0, 'SIGTERM'));
process.on('SIGINT', () => sidecar.shutdown(0, 'SIGINT'));

sidecar.start().then(
  async () => {
    process.exit(await sidecar.done);
  },
  (err: unknown) => {
    log.error('sidecar failed to start', { err });
    process.exit(1);
  },
);
