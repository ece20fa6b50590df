import type { Flags, OutputFormat } from './args.js';
import type { Clients } from './client.js';
import type { ProgressSink } from './progress.js';

/** The process's standard streams, or fakes in tests. */
export interface Io {
  stdout: ProgressSink;
  stderr: ProgressSink;
}

/** Everything a command handler needs. */
export interface Context {
  io: Io;
  /** Positional arguments, one per the command's `args`. */
  args: string[];
  flags: Flags;
  output: OutputFormat;
  /** HOST:PORT of the control plane. */
  server: string;
  clients: Clients;
}

/** Runs one command; resolves to the process exit code. */
export type Handler = (ctx: Context) => Promise<number>;

/** Writes lines to stdout. */
export function printLines(ctx: Context, lines: readonly string[]): void {
  if (lines.length > 0) ctx.io.stdout.write(lines.join('\n') + '\n');
}

/** Writes a `weft: warning: ...` line to stderr. */
export function warn(ctx: Context, message: string): void {
  ctx.io.stderr.write(`weft: warning: ${message}\n`);
}

/** Tells the user on stderr that a listing is empty, keeping stdout parseable. */
export function noneFound(ctx: Context, what: string): void {
  ctx.io.stderr.write(`no ${what}\n`);
}

/** The positional argument at `index`; the parser has checked it is there. */
export function arg(ctx: Context, index: number): string {
  const value = ctx.args[index];
  if (value === undefined) throw new Error(`missing argument ${index}`);
  return value;
}
