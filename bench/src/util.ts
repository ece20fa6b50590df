import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, release, totalmem, availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** bench/ (this file is bench/dist/util.js). */
export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ALGORITHMS_DIR = join(BENCH_DIR, 'algorithms');
/** The repository root. */
export const ROOT = join(BENCH_DIR, '..');

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

interface ProcSample {
  ppid: number;
  cpuMs: number;
  comm: string;
}

function readProcs(): Map<number, ProcSample> {
  const out = new Map<number, ProcSample>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const rest = stat.slice(close + 2).split(' ');
      out.set(Number(e), {
        ppid: Number(rest[1]),
        cpuMs: ((Number(rest[11]) + Number(rest[12])) * 1000) / ticksPerSecond(),
        comm,
      });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function machineBusyMs(): { busy: number; steal: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    // cpu user nice system idle iowait irq softirq steal ...
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const tick = 1000 / ticksPerSecond();
    const busy = (v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0) + (v[5] ?? 0) + (v[6] ?? 0);
    return { busy: busy * tick, steal: (v[7] ?? 0) * tick };
  } catch {
    return { busy: NaN, steal: NaN };
  }
}

function cmdline(pid: number, comm: string): string {
  try {
    const c = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return (c || comm).slice(0, 90);
  } catch {
    return comm;
  }
}

export interface LoadReport {
  seconds: number;
  /** Cores' worth of CPU the whole machine used (excluding steal). */
  machineCores: number;
  /** Cores' worth used by this benchmark and the processes it started. */
  benchCores: number;
  /** Cores' worth used by other user processes that were alive at the end (short-lived ones are missed). */
  otherCores: number;
  stealCores: number;
  /** The busiest other processes. */
  others: { pid: number; cmd: string; cores: number }[];
}

/**
 * What else ran on the machine during a measurement: CPU used by this
 * process and its descendants, by other user processes (from /proc/<pid>/stat)
 * and by the whole machine (from /proc/stat). Other engineers' builds and
 * tests share these 2 cores; the report says when they did.
 */
export class LoadMonitor {
  private readonly t0 = performance.now();
  private readonly m0 = machineBusyMs();
  private readonly p0 = readProcs();
  private readonly self0 = process.cpuUsage();
  private readonly children0 = selfChildrenMs();

  stop(): LoadReport {
    const seconds = (performance.now() - this.t0) / 1000;
    const m1 = machineBusyMs();
    const p1 = readProcs();
    const self = process.cpuUsage(this.self0);
    const mine = new Set<number>([process.pid]);
    // Descendants: walk parents (processes listed in either snapshot).
    const parentOf = (pid: number): number | undefined => p1.get(pid)?.ppid ?? this.p0.get(pid)?.ppid;
    const isMine = (pid: number): boolean => {
      for (let p: number | undefined = pid, hops = 0; p && hops < 20; p = parentOf(p), hops++)
        if (mine.has(p)) return true;
      return false;
    };
    let benchMs = (self.user + self.system) / 1000 + (selfChildrenMs() - this.children0);
    const others: { pid: number; cmd: string; cores: number }[] = [];
    let otherMs = 0;
    for (const [pid, s] of p1) {
      if (pid === process.pid) continue;
      const before = this.p0.get(pid);
      const delta = before && before.comm === s.comm ? s.cpuMs - before.cpuMs : s.cpuMs;
      if (isMine(pid)) {
        benchMs += delta;
      } else if (pid === 2 || s.ppid === 2) {
        // Kernel threads: their share is partly the benchmark's own I/O.
      } else if (delta > 0) {
        otherMs += delta;
        others.push({ pid, cmd: cmdline(pid, s.comm), cores: delta / 1000 / seconds });
      }
    }
    const machineMs = m1.busy - this.m0.busy;
    others.sort((a, b) => b.cores - a.cores);
    const benchCores = benchMs / 1000 / seconds;
    const machineCores = machineMs / 1000 / seconds;
    return {
      seconds,
      machineCores,
      benchCores,
      otherCores: otherMs / 1000 / seconds,
      stealCores: (m1.steal - this.m0.steal) / 1000 / seconds,
      others: others.filter((o) => o.cores >= 0.02).slice(0, 3),
    };
  }
}

/** CPU of this process's reaped children (and theirs), ms. */
function selfChildrenMs(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(rest[13]) + Number(rest[14])) * 1000) / ticksPerSecond();
  } catch {
    return 0;
  }
}
