/**
 * The built-in `weft-command` algorithm: runs one command line per task, the
 * way a scheduled workflow's `command` runs on the embedded default. The
 * worker stays warm; each task is a new process, as each Styx execution is a
 * new container. Its exit code is the task's result, not a failure: the
 * scheduler decides what an exit code means (retry, give up, done).
 * @packageDocumentation
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { TaskArgs } from '../algorithm.js';

/** The task's single input. */
export interface CommandSpec {
  /** Program and arguments; no shell unless argv[0] is one. */
  argv: string[];
  /** stdout and stderr are appended here. */
  logPath: string;
  cwd?: string;
}

/** The task's result. */
export interface CommandResult {
  /** null when the process was ended by a signal. */
  exitCode: number | null;
  signal: string | null;
  /** When the process was started and when it ended, epoch ms. */
  started: number;
  ended: number;
  pid: number;
}

/** How long a stopped command gets after SIGTERM before SIGKILL. */
const KILL_AFTER_MS = 3000;

let child: ChildProcess | undefined;

function parseSpec(input: unknown[]): CommandSpec {
  const spec = input[0] as Partial<CommandSpec> | undefined;
  if (!spec || !Array.isArray(spec.argv) || spec.argv.length === 0 || !spec.argv.every((a) => typeof a === 'string')) {
    throw new TypeError('weft-command: input[0].argv must be a non-empty array of strings');
  }
  if (typeof spec.logPath !== 'string' || spec.logPath === '') {
    throw new TypeError('weft-command: input[0].logPath must be a path');
  }
  return { argv: spec.argv, logPath: spec.logPath, ...(spec.cwd ? { cwd: spec.cwd } : {}) };
}

export async function start(args: TaskArgs): Promise<CommandResult> {
  const spec = parseSpec(args.input);
  mkdirSync(dirname(spec.logPath), { recursive: true });
  const fd = openSync(spec.logPath, 'a');
  try {
    return await new Promise<CommandResult>((resolve, reject) => {
      let started = 0;
      // Same process group as the worker: if the worker is killed, so is the command.
      const p = spawn(spec.argv[0]!, spec.argv.slice(1), {
        cwd: spec.cwd,
        env: process.env,
        stdio: ['ignore', fd, fd],
      });
      child = p;
      p.once('spawn', () => {
        started = Date.now();
      });
      p.once('error', (err) => {
        child = undefined;
        reject(new Error(`cannot run ${JSON.stringify(spec.argv[0])}: ${err.message}`));
      });
      p.once('exit', (code, signal) => {
        child = undefined;
        resolve({ exitCode: code, signal, started, ended: Date.now(), pid: p.pid ?? 0 });
      });
    });
  } finally {
    closeSync(fd);
  }
}

export function stop(): void {
  const p = child;
  if (!p || p.exitCode !== null) return;
  p.kill('SIGTERM');
  const t = setTimeout(() => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }, KILL_AFTER_MS);
  t.unref();
}
