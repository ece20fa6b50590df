import { describe, expect, it } from 'vitest';
import {
  parseCommandLine,
  parseDuration,
  parseEnv,
  parseInstant,
  parsePort,
  parsePositiveInt,
  parseTime,
  resolveServer,
  suggest,
  type Invocation,
} from './args.js';
import { UsageError } from './errors.js';
import { helpText } from './help.js';
import { HANDLERS } from './run.js';
import { FLAGS, TREE, isGroup, type CommandSpec, type FlagSpec } from './spec.js';

const env = {};

function runInvocation(argv: string[], e: Record<string, string> = env): Extract<Invocation, { kind: 'run' }> {
  const inv = parseCommandLine(argv, e);
  if (inv.kind !== 'run') throw new Error(`expected a command, got help for ${inv.path.join(' ')}`);
  return inv;
}

function usageError(argv: string[]): UsageError {
  try {
    parseCommandLine(argv, env);
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error('expected a usage error');
}

const commands: CommandSpec[] = TREE.flatMap((entry) => (isGroup(entry) ? [...entry.commands] : [entry]));

describe('parseCommandLine', () => {
  it('parses a command with flags anywhere on the line', () => {
    const inv = runInvocation([
      '-o',
      'json',
      'exec',
      'raw',
      '--wait',
      '-f',
      'p.yaml',
      '--server',
      'h:1',
      '--input=i.yaml',
    ]);
    expect(inv.command.path).toEqual(['exec', 'raw']);
    expect(inv.flags).toEqual({ wait: true, file: 'p.yaml', input: 'i.yaml' });
    expect(inv.output).toBe('json');
    expect(inv.server).toBe('h:1');
    expect(inv.args).toEqual([]);
  });

  it('collects positional arguments', () => {
    const inv = runInvocation(['exec', 'stop', 'job-1', '--reason', 'no longer needed']);
    expect(inv.args).toEqual(['job-1']);
    expect(inv.flags.reason).toBe('no longer needed');
    expect(inv.output).toBe('text');
  });

  it('parses server flags, which take values that look like flags', () => {
    const inv = runInvocation(['server', '--port', '0', '--metrics-port', '-1', '--data-dir', '/tmp/w']);
    expect(inv.flags).toEqual({ wait: false, port: '0', 'metrics-port': '-1', 'data-dir': '/tmp/w' });
  });

  it('answers --help at every level with exit code 0', () => {
    expect(parseCommandLine(['--help'], env)).toEqual({ kind: 'help', path: [], exitCode: 0 });
    expect(parseCommandLine(['exec', '-h'], env)).toEqual({ kind: 'help', path: ['exec'], exitCode: 0 });
    expect(parseCommandLine(['exec', 'raw', '-h'], env)).toEqual({ kind: 'help', path: ['exec', 'raw'], exitCode: 0 });
    // Help wins over an otherwise incomplete command line.
    expect(parseCommandLine(['exec', 'status', '--help'], env)).toMatchObject({ kind: 'help', exitCode: 0 });
  });

  it('shows help with exit code 2 when a command is incomplete', () => {
    expect(parseCommandLine([], env)).toEqual({ kind: 'help', path: [], exitCode: 2 });
    expect(parseCommandLine(['pipeline'], env)).toEqual({ kind: 'help', path: ['pipeline'], exitCode: 2 });
  });

  it('rejects unknown commands with a hint', () => {
    expect(usageError(['algoritm', 'ls']).message).toBe(
      `unknown command "algoritm" (did you mean "algorithm"?); run 'weft --help'`,
    );
    expect(usageError(['exec', 'wach', 'j']).message).toContain('(did you mean "watch"?)');
    expect(usageError(['frobnicate']).message).toBe(`unknown command "frobnicate"; run 'weft --help'`);
    expect(usageError(['exec', 'wach']).exitCode).toBe(2);
  });

  it('rejects flags the command does not take', () => {
    expect(usageError(['algorithm', 'ls', '--wait']).message).toBe(
      "unknown flag --wait; run 'weft algorithm ls --help'",
    );
    expect(usageError(['exec', 'raw', '-f', 'x', '--wiat']).message).toContain('(did you mean --wait?)');
    expect(usageError(['server', '-o', 'json']).message).toContain('unknown flag -o');
    expect(usageError(['--bogus']).message).toContain('unknown flag --bogus');
  });

  it('checks arguments, values and required flags', () => {
    expect(usageError(['exec', 'status']).message).toBe('missing JOB; usage: weft exec status JOB [flags]');
    expect(usageError(['exec', 'status', 'a', 'b']).message).toContain('unexpected argument "b"');
    expect(usageError(['exec', 'raw']).message).toBe('missing -f FILE; usage: weft exec raw -f FILE [flags]');
    expect(usageError(['exec', 'raw', '-f']).message).toContain('-f needs a value');
    expect(usageError(['exec', 'raw', '-f', 'x', '--wait=yes']).message).toBe('--wait takes no value');
    expect(usageError(['algorithm', 'ls', '-o', 'yaml']).message).toContain('unknown output format "yaml"');
  });
});

describe('job control commands', () => {
  it('parses pause, resume, rerun and from-node', () => {
    expect(runInvocation(['exec', 'pause', 'j1']).args).toEqual(['j1']);
    expect(runInvocation(['exec', 'resume', 'j1']).command.path).toEqual(['exec', 'resume']);
    expect(runInvocation(['exec', 'rerun', 'j1', '--wait']).flags).toEqual({ wait: true });
    const fromNode = runInvocation(['exec', 'from-node', 'j1', 'Multiply', '-o', 'json']);
    expect(fromNode.command.path).toEqual(['exec', 'from-node']);
    expect(fromNode.args).toEqual(['j1', 'Multiply']);
    expect(fromNode.flags).toEqual({ wait: false });
    expect(fromNode.output).toBe('json');
  });

  it('checks their arguments and flags', () => {
    expect(usageError(['exec', 'from-node', 'j1']).message).toBe(
      'missing NODE; usage: weft exec from-node JOB NODE [flags]',
    );
    expect(usageError(['exec', 'pause', 'j1', '--wait']).message).toBe(
      "unknown flag --wait; run 'weft exec pause --help'",
    );
    expect(usageError(['exec', 'rerun']).message).toBe('missing JOB; usage: weft exec rerun JOB [flags]');
    expect(usageError(['exec', 'pase', 'j']).message).toContain('(did you mean "pause"?)');
  });

  it('parses result --download and graph', () => {
    expect(runInvocation(['exec', 'result', 'j1', '--download', 'out']).flags).toEqual({
      wait: false,
      download: 'out',
    });
    expect(usageError(['exec', 'result', 'j1', '--download']).message).toContain('--download needs a value');
    expect(runInvocation(['exec', 'graph', 'j1']).args).toEqual(['j1']);
    expect(usageError(['exec', 'graph', 'j1', '--download', 'x']).message).toContain('unknown flag --download');
  });

  it('parses the filters of exec ls', () => {
    const inv = runInvocation([
      'exec',
      'ls',
      '--tag',
      'nightly',
      '--from',
      '2h',
      '--to=2024-05-01',
      '--status',
      'paused',
    ]);
    expect(inv.flags).toEqual({ wait: false, tag: 'nightly', from: '2h', to: '2024-05-01', status: 'paused' });
  });
});

describe('schedule commands', () => {
  it('collects a repeated --env in order', () => {
    const inv = runInvocation([
      'workflow',
      'trigger',
      'wf',
      '2024-01-01',
      '--env',
      'A=1',
      '--env=B=x=y',
      '--allow-future',
    ]);
    expect(inv.args).toEqual(['wf', '2024-01-01']);
    expect(inv.flags).toEqual({ wait: false, env: ['A=1', 'B=x=y'], 'allow-future': true });
    expect(runInvocation(['workflow', 'trigger', 'wf', 'p']).flags).toEqual({ wait: false });
    expect(usageError(['workflow', 'trigger', 'wf', 'p', '--env']).message).toContain('--env needs a value');
  });

  it('keeps the last value of a flag that is not repeatable', () => {
    expect(runInvocation(['instance', 'ls', '--state', 'done', '--state', 'error']).flags.state).toBe('error');
  });

  it('parses backfill create in Styx order, with its flags', () => {
    const inv = runInvocation([
      'backfill',
      'create',
      'wf',
      '2024-01-01',
      '2024-02-01',
      '3',
      '--reverse',
      '--description',
      'January again',
    ]);
    expect(inv.args).toEqual(['wf', '2024-01-01', '2024-02-01', '3']);
    expect(inv.flags).toEqual({ wait: false, reverse: true, description: 'January again' });
    expect(usageError(['backfill', 'create', 'wf', '2024-01-01', '2024-02-01']).message).toBe(
      'missing CONCURRENCY; usage: weft backfill create WORKFLOW START END CONCURRENCY [flags]',
    );
  });

  it('parses the filters and options of instance, backfill and resource commands', () => {
    expect(runInvocation(['instance', 'ls', '--workflow', 'wf', '--trigger', 'natural-trigger']).flags).toEqual({
      wait: false,
      workflow: 'wf',
      trigger: 'natural-trigger',
    });
    expect(runInvocation(['instance', 'retry', 'wf', 'p', '--delay', '5m']).flags.delay).toBe('5m');
    expect(runInvocation(['backfill', 'ls', '--all']).flags).toEqual({ wait: false, all: true });
    expect(runInvocation(['backfill', 'halt', 'b1', '--graceful']).flags).toEqual({ wait: false, graceful: true });
    expect(runInvocation(['backfill', 'edit', 'b1', '--concurrency', '4']).flags.concurrency).toBe('4');
    expect(runInvocation(['resource', 'create', 'db', '2']).args).toEqual(['db', '2']);
    expect(usageError(['resource', 'edit', 'db']).message).toBe(
      'missing --concurrency N; usage: weft resource edit ID --concurrency N [flags]',
    );
    expect(usageError(['workflow', 'ls', '--all']).message).toBe("unknown flag --all; run 'weft workflow ls --help'");
  });
});

describe('weft help', () => {
  it('is --help for the words after it', () => {
    expect(parseCommandLine(['help'], env)).toEqual({ kind: 'help', path: [], exitCode: 0 });
    expect(parseCommandLine(['help', 'workflow'], env)).toEqual({ kind: 'help', path: ['workflow'], exitCode: 0 });
    expect(parseCommandLine(['help', 'backfill', 'create'], env)).toEqual({
      kind: 'help',
      path: ['backfill', 'create'],
      exitCode: 0,
    });
  });

  it('points out a mistyped word', () => {
    expect(usageError(['help', 'wrkflow']).message).toContain('(did you mean "workflow"?)');
    expect(usageError(['help', 'instance', 'sho']).message).toContain('(did you mean "show"?)');
  });

  it('describes the schedule groups', () => {
    const top = helpText([]);
    for (const group of ['workflow', 'instance', 'backfill', 'resource']) expect(top).toContain(`  ${group} `);
    expect(helpText(['workflow'])).toContain('trigger ID PARAMETER');
    expect(helpText(['resource'])).toContain('A resource named global, when it exists, limits every workflow.');
    expect(helpText(['workflow', 'trigger'])).toContain('--env K=V');
  });
});

describe('parsePositiveInt', () => {
  it('accepts whole numbers from 1', () => {
    expect(parsePositiveInt('CONCURRENCY', '1')).toBe(1);
    expect(parsePositiveInt('CONCURRENCY', '010')).toBe(10);
    expect(parsePositiveInt('CONCURRENCY', '4294967295')).toBe(4294967295);
  });

  it('names the argument when it rejects a value', () => {
    expect(() => parsePositiveInt('CONCURRENCY', '0')).toThrow('CONCURRENCY must be a positive integer, got "0"');
    expect(() => parsePositiveInt('--concurrency', 'two')).toThrow(
      '--concurrency must be a positive integer, got "two"',
    );
    expect(() => parsePositiveInt('N', '4294967296')).toThrow('N must be at most 4294967295');
    for (const bad of ['', '-1', '1.5', '1e3', '0x10', ' 5', '+5']) {
      expect(() => parsePositiveInt('N', bad), bad).toThrow(UsageError);
    }
  });
});

describe('parseDuration', () => {
  it('reads numbers with units', () => {
    expect(parseDuration('delay', '90s')).toBe(90_000);
    expect(parseDuration('delay', '5m')).toBe(300_000);
    expect(parseDuration('delay', '1h30m')).toBe(5_400_000);
    expect(parseDuration('delay', '0s')).toBe(0);
    expect(parseDuration('delay', undefined)).toBeUndefined();
  });

  it('rejects anything else', () => {
    for (const bad of ['', '5', '5x', '-5m', '1.5h', 'PT5M']) {
      expect(() => parseDuration('delay', bad), bad).toThrow(UsageError);
    }
    expect(() => parseDuration('delay', 'soon')).toThrow(
      '--delay must be a duration such as 90s, 5m or 1h30m, got "soon"',
    );
  });
});

describe('parseEnv', () => {
  it('splits at the first =, the last value of a name winning', () => {
    expect(parseEnv(['A=1', 'B=x=y', 'C=', 'A=2'])).toEqual({ A: '2', B: 'x=y', C: '' });
    expect(parseEnv(undefined)).toEqual({});
  });

  it('rejects a pair without = or with a bad name', () => {
    expect(() => parseEnv(['A'])).toThrow('--env must be NAME=VALUE, got "A"');
    expect(() => parseEnv(['1A=x'])).toThrow('"1A" is not a valid environment variable name');
    expect(() => parseEnv(['=x'])).toThrow(UsageError);
  });
});

describe('parseInstant', () => {
  it('reads times with Z or an offset', () => {
    expect(parseInstant('2024-01-01T00:00:00Z')?.toISOString()).toBe('2024-01-01T00:00:00.000Z');
    expect(parseInstant('2024-01-01T02:00+02:00')?.toISOString()).toBe('2024-01-01T00:00:00.000Z');
    expect(parseInstant('2024-01-01T05:00:00.000z')?.toISOString()).toBe('2024-01-01T05:00:00.000Z');
  });

  it('refuses what does not name one instant', () => {
    for (const text of ['2024-01-01', '2024-01-01T05:00', '2024-01-01T05', '2024-02-30T00:00Z', 'now']) {
      expect(parseInstant(text), text).toBeUndefined();
    }
  });
});

describe('parseTime', () => {
  const now = new Date('2024-05-10T12:00:00.000Z');
  const at = (value: string): string | undefined => parseTime('from', value, now)?.toISOString();

  it('reads ages as that long before now', () => {
    expect(at('30m')).toBe('2024-05-10T11:30:00.000Z');
    expect(at('1h')).toBe('2024-05-10T11:00:00.000Z');
    expect(at('2d')).toBe('2024-05-08T12:00:00.000Z');
    expect(at('1w')).toBe('2024-05-03T12:00:00.000Z');
    expect(at('90s')).toBe('2024-05-10T11:58:30.000Z');
    expect(at('1h30m')).toBe('2024-05-10T10:30:00.000Z');
    expect(at('0m')).toBe(now.toISOString());
  });

  it('reads ISO 8601 dates and times', () => {
    expect(at('2024-05-01')).toBe('2024-05-01T00:00:00.000Z');
    expect(at('2024-05-01T12:30:00Z')).toBe('2024-05-01T12:30:00.000Z');
    expect(at('2024-05-01T12:30:00.250+02:00')).toBe('2024-05-01T10:30:00.250Z');
    expect(at('2024-05-01T12:30+0200')).toBe('2024-05-01T10:30:00.000Z');
    expect(at('2024-05-01T12:30:00-05')).toBe('2024-05-01T17:30:00.000Z');
    // Without an offset, the time is local.
    expect(at('2024-05-01T12:30')).toBe(new Date(2024, 4, 1, 12, 30).toISOString());
    expect(parseTime('from', undefined, now)).toBeUndefined();
  });

  it('rejects anything else', () => {
    for (const bad of [
      '',
      'yesterday',
      '1',
      '-1h',
      '1y',
      '1.5h',
      'h',
      '2024-02-30',
      '2024-13-01',
      'May 1 2024',
      '1714560000',
    ]) {
      expect(() => parseTime('from', bad, now), bad).toThrow(UsageError);
    }
    expect(() => parseTime('to', 'soon', now)).toThrow(
      '--to must be an ISO 8601 time (2024-05-01T12:00:00Z) or an age such as 30m, 1h or 2d, got "soon"',
    );
  });
});

describe('resolveServer', () => {
  it('prefers the flag, then WEFT_SERVER, then localhost:50051', () => {
    expect(resolveServer('a:1', { WEFT_SERVER: 'b:2' })).toBe('a:1');
    expect(resolveServer(undefined, { WEFT_SERVER: 'b:2' })).toBe('b:2');
    expect(resolveServer(undefined, {})).toBe('localhost:50051');
    expect(runInvocation(['algorithm', 'ls'], { WEFT_SERVER: 'b:2' }).server).toBe('b:2');
  });

  it('adds the default port to a bare host', () => {
    expect(resolveServer('example.org', {})).toBe('example.org:50051');
  });
});

describe('parsePort', () => {
  it('accepts 0-65535 and, when allowed, -1', () => {
    expect(parsePort('port', undefined)).toBeUndefined();
    expect(parsePort('port', '50051')).toBe(50051);
    expect(parsePort('metrics-port', '-1', true)).toBe(-1);
    expect(() => parsePort('port', '-1')).toThrow(UsageError);
    expect(() => parsePort('port', '70000')).toThrow('--port must be a port number, got "70000"');
    expect(() => parsePort('port', '1.5')).toThrow(UsageError);
  });
});

describe('suggest', () => {
  it('finds near misses and prefixes only', () => {
    expect(suggest('pipline', ['pipeline', 'exec'])).toBe('pipeline');
    expect(suggest('del', ['delete', 'get'])).toBe('delete');
    expect(suggest('xyz', ['delete', 'get'])).toBeUndefined();
  });
});

describe('command tree', () => {
  it('has a handler for every command', () => {
    for (const cmd of commands) expect(HANDLERS[cmd.path.join(' ')], cmd.path.join(' ')).toBeTypeOf('function');
    expect(Object.keys(HANDLERS)).toHaveLength(commands.length);
  });

  it('lists every command and flag in the help', () => {
    const top = helpText([]);
    for (const entry of TREE) expect(top).toContain(isGroup(entry) ? entry.name : entry.path[0]);
    for (const cmd of commands) {
      const text = helpText(cmd.path);
      expect(text).toContain(`Usage: weft ${cmd.path.join(' ')}`);
      for (const [name] of cmd.flags) expect(text).toContain(`--${name}`);
      if (cmd.globals) expect(text).toContain('--server HOST:PORT');
      else expect(text).not.toContain('--server');
      if (cmd.path.length > 1) expect(helpText(cmd.path.slice(0, 1))).toContain(cmd.summary);
    }
  });

  it('gives every short flag to one flag only', () => {
    const shorts = Object.values(FLAGS).flatMap((f: FlagSpec) => (f.short ? [f.short] : []));
    expect(new Set(shorts).size).toBe(shorts.length);
  });
});
