import { parsePort } from '../args.js';
import type { Context } from '../context.js';
import { CliError } from '../errors.js';
import type { ServerOptions } from '../../app/run.js';

/**
 * The one-line reason a server could not run. grpc-js reports a busy port as
 * "No address added out of total 1 resolved errors: [listen EADDRINUSE: ...]".
 */
export function serverFailure(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const busy = /EADDRINUSE: address already in use ([^\]\s]+)/.exec(message);
  if (busy) return `cannot listen on ${busy[1]}: the address is in use (another \`weft server\`?)`;
  return `server: ${message}`;
}

/**
 * `weft server`: runs the control plane in this process until it shuts down.
 * Flags left out are left to the server, which reads WEFT_PORT, WEFT_HOST,
 * WEFT_DATA_DIR, WEFT_METRICS_PORT, WEFT_BLOBS, WEFT_STATE and WEFT_EXECUTOR
 * itself.
 */
export async function server(ctx: Context): Promise<number> {
  const opts: ServerOptions = {};
  const port = parsePort('port', ctx.flags.port);
  const metricsPort = parsePort('metrics-port', ctx.flags['metrics-port'], true);
  if (port !== undefined) opts.port = port;
  if (metricsPort !== undefined) opts.metricsPort = metricsPort;
  if (ctx.flags.host !== undefined) opts.host = ctx.flags.host;
  if (ctx.flags['data-dir'] !== undefined) opts.dataDir = ctx.flags['data-dir'];
  if (ctx.flags.register !== undefined) opts.register = [ctx.flags.register];
  if (ctx.flags.blobs !== undefined) opts.blobs = ctx.flags.blobs;
  if (ctx.flags.state !== undefined) opts.state = ctx.flags.state;
  if (ctx.flags.executor !== undefined) opts.executor = ctx.flags.executor;
  // Loaded on demand: the server pulls in SQLite and the executors, which the
  // client commands never need and should not pay for at start-up.
  const { runServer } = await import('../../app/run.js');
  try {
    await runServer(opts);
  } catch (err) {
    // Failures here are mostly the user's setup (busy port, unwritable data
    // directory): one line, with the original kept for WEFT_DEBUG.
    throw new CliError(serverFailure(err), 1, { cause: err });
  }
  return 0;
}
