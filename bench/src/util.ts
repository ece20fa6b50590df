import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, release, totalmem, availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** bench/ (this file is bench/dist/util.js). */
export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ALGORITHMS_DIR = join(BENCH_DIR, 'algorithms');

export const MiB = 1024 * 1024;

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** CPU time (user + system) a process has used so far, in ms; undefined when it is gone. */
export function procCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / ticksPerSecond();
  } catch {
    return undefined;
  }
}

/** The parent of a process (the sidecar of an algorithm process). */
export function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memGiB: number;
  os: string;
  node: string;
  grpcJs: string;
  msgpackr: string;
}

function pkgVersion(name: string): string {
  // From the control plane's point of view: that is what it runs with.
  const req = createRequire(join(BENCH_DIR, '..', 'control-plane', 'package.json'));
  let dir = dirname(req.resolve(name));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === name) return pkg.version ?? '?';
    } catch {
      // keep walking up
    }
    dir = dirname(dir);
  }
  return '?';
}

export function machine(): MachineInfo {
  return {
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cores: availableParallelism(),
    memGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    os: `${process.platform} ${release()}`,
    node: process.version,
    grpcJs: pkgVersion('@grpc/grpc-js'),
    msgpackr: pkgVersion('msgpackr'),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
