import { describe, it, expect } from 'vitest';
import { Status, WeftError } from '@weft/common';
import { parseWorkflow, retryAllowed, substituteParameter, type RetryVars, type WorkflowSpec } from './workflow.js';

const base = { id: 'my-wf_1.v2', schedule: '@daily', command: ['echo', '{}'] };

/** Runs `fn`, expects a WeftError INVALID_ARGUMENT, returns it. */
function err(fn: () => unknown): WeftError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(WeftError);
    const w = e as WeftError;
    expect(w.code).toBe(Status.INVALID_ARGUMENT);
    return w;
  }
  throw new Error('expected an error');
}

function fails(doc: unknown, field: string, message: string | RegExp, opts = {}): void {
  const e = err(() => parseWorkflow(doc, opts));
  expect(e.field).toBe(field);
  if (typeof message === 'string') expect(e.message).toBe(`${field}: ${message}`);
  else expect(e.message).toMatch(message);
}

const vars = (v: Partial<RetryVars> = {}): RetryVars => ({
  exitCode: 1,
  tries: 1,
  consecutiveFailures: 1,
  triggerType: 'natural',
  ...v,
});

const withCondition = (c: string): WorkflowSpec => parseWorkflow({ ...base, retry_condition: c });

describe('parseWorkflow: valid documents and defaults', () => {
  it('minimal workflow', () => {
    const s = parseWorkflow(base);
    expect(s.id).toBe('my-wf_1.v2');
    expect(s.schedule.alias).toBe('daily');
    expect(s.schedule.offset).toBe('P1D');
    expect(s.schedule.timezone).toBe('UTC');
    expect(s.runnable).toBe('command');
    expect(s.command).toEqual(['echo', '{}']);
    expect(s.enabled).toBe(false);
    expect(s.catchUp).toBe('all');
    expect(s.spreadMs).toBe(0);
    expect(s.dockerImage).toBeUndefined();
    expect(s.dockerArgs).toEqual([]);
    expect(s.env).toEqual({});
    expect(s.resources).toEqual([]);
    expect(s.runningTimeoutMs).toBeUndefined();
    expect(s.retryCondition).toBeUndefined();
    expect(s.commitSha).toBeUndefined();
    expect(s.algorithm).toBeUndefined();
    expect(s.pipeline).toBeUndefined();
    expect(s.warnings).toEqual([]);
  });

  it.each([
    ['hourly', '0 * * * *', 'PT1H'],
    ['@hourly', '0 * * * *', 'PT1H'],
    ['daily', '0 0 * * *', 'P1D'],
    ['@weekly', '0 0 * * MON', 'P1W'],
    ['monthly', '0 0 1 * *', 'P1M'],
    ['@yearly', '0 0 1 1 *', 'P1Y'],
    ['annually', '0 0 1 1 *', 'P1Y'],
  ])('alias schedule %s', (schedule, cron, offset) => {
    const s = parseWorkflow({ ...base, schedule }).schedule;
    expect(s.cron).toBe(cron);
    expect(s.offset).toBe(offset);
  });

  it('cron schedule with offset and timezone', () => {
    const s = parseWorkflow({ ...base, schedule: '30 2 * * *', offset: 'PT1H', timezone: 'Europe/Stockholm' }).schedule;
    expect(s.alias).toBeUndefined();
    expect(s.offset).toBe('PT1H');
    expect(s.timezone).toBe('Europe/Stockholm');
  });

  it('all fields', () => {
    const s = parseWorkflow({
      ...base,
      docker_image: 'gcr.io/proj/img',
      docker_args: ['run', '{}'],
      env: { FOO: 'bar', _X1: '' },
      running_timeout: 'PT2H',
      retry_condition: 'tries < 3',
      resources: ['db', 'gpu.pool-1'],
      commit_sha: 'abc123',
      enabled: true,
      catch_up: 'latest',
      spread: 'PT10M',
    });
    expect(s.dockerImage).toBe('gcr.io/proj/img:latest');
    expect(s.dockerArgs).toEqual(['run', '{}']);
    expect(s.env).toEqual({ FOO: 'bar', _X1: '' });
    expect(s.runningTimeoutMs).toBe(2 * 3_600_000);
    expect(s.retryCondition).toBe('tries < 3');
    expect(s.resources).toEqual(['db', 'gpu.pool-1']);
    expect(s.commitSha).toBe('abc123');
    expect(s.enabled).toBe(true);
    expect(s.catchUp).toBe('latest');
    expect(s.spreadMs).toBe(600_000);
    expect(s.runnable).toBe('command');
  });

  it('null (empty YAML value) counts as absent', () => {
    const s = parseWorkflow({ ...base, enabled: null, catch_up: null, env: null, offset: null });
    expect(s.enabled).toBe(false);
    expect(s.catchUp).toBe('all');
    expect(s.schedule.offset).toBe('P1D');
  });

  it('docker_image keeps an explicit tag or digest', () => {
    expect(parseWorkflow({ ...base, docker_image: 'localhost:5000/img:1.2' }).dockerImage).toBe(
      'localhost:5000/img:1.2',
    );
    expect(parseWorkflow({ ...base, docker_image: 'localhost:5000/img' }).dockerImage).toBe(
      'localhost:5000/img:latest',
    );
    expect(parseWorkflow({ ...base, docker_image: 'img@sha256:abc' }).dockerImage).toBe('img@sha256:abc');
  });

  it('docker_image alone is valid but runnable image', () => {
    const s = parseWorkflow({ id: 'w', schedule: '@hourly', docker_image: 'busybox:1', docker_args: ['{}'] });
    expect(s.runnable).toBe('image');
    expect(s.command).toBeUndefined();
  });

  it('algorithm and pipeline runnables', () => {
    const a = parseWorkflow({ id: 'w', schedule: '@daily', algorithm: { name: 'sum', input: [1, '{}'] } });
    expect(a.runnable).toBe('algorithm');
    expect(a.algorithm).toEqual({ name: 'sum', input: [1, '{}'] });
    expect(parseWorkflow({ id: 'w', schedule: '@daily', algorithm: { name: 'sum' } }).algorithm?.input).toEqual([]);
    const p = parseWorkflow({ id: 'w', schedule: '@daily', pipeline: { name: 'etl', flowInput: { day: '{}' } } });
    expect(p.runnable).toBe('pipeline');
    expect(p.pipeline).toEqual({ name: 'etl', flowInput: { day: '{}' } });
    expect(parseWorkflow({ id: 'w', schedule: '@daily', pipeline: { name: 'etl' } }).pipeline?.flowInput).toEqual({});
  });

  it('copies algorithm input and pipeline flowInput', () => {
    const input = [{ a: 1 }];
    const s = parseWorkflow({ ...base, command: undefined, algorithm: { name: 'x', input } });
    input[0] = { a: 2 };
    expect(s.algorithm?.input).toEqual([{ a: 1 }]);
  });

  it('warnings for unknown fields, top level and nested', () => {
    const s = parseWorkflow({
      ...base,
      command: undefined,
      service_account: 'x@y',
      flyte_exec_conf: {},
      pipeline: { name: 'p', flowInput: {}, extra: 1 },
    });
    expect(s.warnings).toEqual([
      "unknown field 'service_account' ignored",
      "unknown field 'flyte_exec_conf' ignored",
      "unknown field 'pipeline.extra' ignored",
    ]);
  });

  it('knownResource accepts known resources', () => {
    const s = parseWorkflow({ ...base, resources: ['a', 'b'] }, { knownResource: (n) => n === 'a' || n === 'b' });
    expect(s.resources).toEqual(['a', 'b']);
  });
});

describe('parseWorkflow: errors name the field', () => {
  it('document, id and schedule', () => {
    fails(null, 'workflow', 'must be an object, got null');
    fails([base], 'workflow', 'must be an object, got an array');
    fails({ schedule: '@daily', command: ['x'] }, 'id', 'required');
    fails({ ...base, id: 7 }, 'id', 'must be a string, got number');
    fails({ ...base, id: 'a b' }, 'id', "'a b' may only contain letters, digits, '-', '_' and '.'");
    fails({ ...base, id: 'a/b' }, 'id', "'a/b' may only contain letters, digits, '-', '_' and '.'");
    fails({ ...base, id: 'x'.repeat(257) }, 'id', 'must be at most 256 characters');
    fails({ id: 'w', command: ['x'] }, 'schedule', 'required');
    fails({ ...base, schedule: '' }, 'schedule', 'must not be empty');
  });

  it('bad cron, alias, offset and timezone', () => {
    fails({ ...base, schedule: '61 * * * *' }, 'schedule', /^schedule: bad cron expression '61 \* \* \* \*'/);
    fails({ ...base, schedule: '* * *' }, 'schedule', /^schedule: '\* \* \*' is neither an alias/);
    fails({ ...base, schedule: '@minutely' }, 'schedule', /^schedule: unknown alias '@minutely'/);
    fails({ ...base, offset: 'bogus' }, 'offset', "'bogus' is not an ISO-8601 duration (e.g. PT1H, P1DT2H, -PT30M)");
    fails({ ...base, offset: 3 }, 'offset', 'must be a string, got number');
    fails(
      { ...base, timezone: 'Mars/Base' },
      'timezone',
      "unknown IANA time zone 'Mars/Base' (e.g. UTC, Europe/Stockholm)",
    );
  });

  it('running_timeout and spread', () => {
    fails(
      { ...base, running_timeout: '2h' },
      'running_timeout',
      "'2h' is not an ISO-8601 duration (e.g. PT30M, PT2H, P1D)",
    );
    fails(
      { ...base, running_timeout: 'PT' },
      'running_timeout',
      "'PT' is not an ISO-8601 duration (e.g. PT30M, PT2H, P1D)",
    );
    fails({ ...base, running_timeout: '-PT1H' }, 'running_timeout', "'-PT1H' must not be negative");
    fails({ ...base, running_timeout: 'PT30S' }, 'running_timeout', 'must be at least PT1M');
    fails({ ...base, running_timeout: 60 }, 'running_timeout', 'must be a string, got number');
    fails({ ...base, spread: 'soon' }, 'spread', "'soon' is not an ISO-8601 duration (e.g. PT30M, PT2H, P1D)");
  });

  it('docker_image, docker_args, env, commit_sha, enabled, catch_up', () => {
    fails({ ...base, docker_image: ' ' }, 'docker_image', 'must not be empty');
    fails({ ...base, docker_args: 'a b' }, 'docker_args', 'must be an array of strings, got string');
    fails({ ...base, docker_args: ['a', 1] }, 'docker_args[1]', 'must be a string, got number');
    fails({ ...base, env: ['A'] }, 'env', 'must be a map of strings, got an array');
    fails({ ...base, env: { A: 1 } }, 'env.A', 'must be a string, got number');
    fails({ ...base, env: { 'A-B': 'x' } }, 'env.A-B', 'is not a valid environment variable name');
    fails({ ...base, commit_sha: 'x'.repeat(257) }, 'commit_sha', 'must be at most 256 characters');
    fails({ ...base, enabled: 'yes' }, 'enabled', 'must be a boolean, got string');
    fails({ ...base, catch_up: 'some' }, 'catch_up', "'some' is not one of all, latest, none");
  });

  it('broken retry_condition is rejected at parse with the library message', () => {
    fails({ ...base, retry_condition: 'tries +' }, 'retry_condition', /^retry_condition: Unexpected token: EOF\n/);
    fails(
      { ...base, retry_condition: 'tries < "a"' },
      'retry_condition',
      /^retry_condition: no such overload: int < string/,
    );
    fails(
      { ...base, retry_condition: 'retries < 3' },
      'retry_condition',
      /^retry_condition: Unknown variable: retries/,
    );
    fails({ ...base, retry_condition: '' }, 'retry_condition', 'must not be empty');
    fails({ ...base, retry_condition: 'x'.repeat(257) }, 'retry_condition', 'must be at most 256 characters');
  });

  it('non-bool retry_condition is rejected', () => {
    fails({ ...base, retry_condition: 'tries + 1' }, 'retry_condition', 'must be a bool expression, but has type int');
    fails(
      { ...base, retry_condition: 'triggerType' },
      'retry_condition',
      'must be a bool expression, but has type string',
    );
  });

  it('resources', () => {
    fails({ ...base, resources: 'db' }, 'resources', 'must be an array of strings, got string');
    fails(
      { ...base, resources: ['db', 'bad name'] },
      'resources[1]',
      "'bad name' may only contain letters, digits, '-', '_' and '.'",
    );
    fails({ ...base, resources: ['db', 'db'] }, 'resources[1]', "duplicate resource 'db'");
    fails({ ...base, resources: ['db', 'gpu'] }, 'resources[1]', "unknown resource 'gpu'", {
      knownResource: (n: string) => n === 'db',
    });
  });

  it('none or more than one of command/algorithm/pipeline', () => {
    fails(
      { id: 'w', schedule: '@daily' },
      'command',
      'one of command, algorithm, pipeline or docker_image is required',
    );
    fails(
      { ...base, algorithm: { name: 'a' } },
      'algorithm',
      'only one of command, algorithm, pipeline may be given (got command, algorithm)',
    );
    fails(
      { id: 'w', schedule: '@daily', algorithm: { name: 'a' }, pipeline: { name: 'p' } },
      'pipeline',
      'only one of command, algorithm, pipeline may be given (got algorithm, pipeline)',
    );
    fails(
      { ...base, algorithm: { name: 'a' }, pipeline: { name: 'p' } },
      'algorithm',
      'only one of command, algorithm, pipeline may be given (got command, algorithm, pipeline)',
    );
  });

  it('malformed command, algorithm and pipeline', () => {
    fails({ ...base, command: [] }, 'command', 'must not be empty');
    fails({ ...base, command: 'echo hi' }, 'command', 'must be an array of strings, got string');
    fails({ ...base, command: ['echo', 2] }, 'command[1]', 'must be a string, got number');
    const b = { id: 'w', schedule: '@daily' };
    fails({ ...b, algorithm: 'sum' }, 'algorithm', 'must be an object, got string');
    fails({ ...b, algorithm: { input: [] } }, 'algorithm.name', 'must be a string, got undefined');
    fails({ ...b, algorithm: { name: 'sum', input: {} } }, 'algorithm.input', 'must be an array, got object');
    fails({ ...b, pipeline: { name: 'p', flowInput: [1] } }, 'pipeline.flowInput', 'must be an object, got an array');
    fails(
      { ...b, pipeline: { name: 'a b' } },
      'pipeline.name',
      "'a b' may only contain letters, digits, '-', '_' and '.'",
    );
  });
});

describe('substituteParameter', () => {
  const P = '2024-03-01';

  it('docker_args and command: only elements exactly {}', () => {
    const s = parseWorkflow({ ...base, docker_image: 'img', docker_args: ['--date', '{}', '--x={}', '{} ', '{{}}'] });
    expect(substituteParameter(s.dockerArgs, P)).toEqual(['--date', P, '--x={}', '{} ', '{{}}']);
    expect(substituteParameter(s.command, P)).toEqual(['echo', P]);
    expect(s.dockerArgs[1]).toBe('{}');
  });

  it('algorithm input, deeply', () => {
    const s = parseWorkflow({
      id: 'w',
      schedule: '@daily',
      algorithm: { name: 'a', input: ['{}', 'day {}', { d: '{}', n: [1, '{}'] }, null, 3] },
    });
    expect(substituteParameter(s.algorithm?.input, P)).toEqual([P, 'day {}', { d: P, n: [1, P] }, null, 3]);
  });

  it('pipeline flowInput, deeply, values not keys', () => {
    const s = parseWorkflow({
      id: 'w',
      schedule: '@daily',
      pipeline: { name: 'p', flowInput: { day: '{}', path: 'gs://b/{}/x', '{}': '{}', nested: { list: ['{}'] } } },
    });
    expect(substituteParameter(s.pipeline?.flowInput, P)).toEqual({
      day: P,
      path: 'gs://b/{}/x',
      '{}': P,
      nested: { list: [P] },
    });
  });

  it('scalars', () => {
    expect(substituteParameter('{}', P)).toBe(P);
    expect(substituteParameter('x{}', P)).toBe('x{}');
    expect(substituteParameter(5, P)).toBe(5);
    expect(substituteParameter(undefined, P)).toBeUndefined();
  });
});

describe('retryAllowed', () => {
  it('true without a condition', () => {
    expect(retryAllowed(parseWorkflow(base), vars())).toBe(true);
  });

  it('exitCode, including null', () => {
    const s = withCondition('exitCode != 3');
    expect(retryAllowed(s, vars({ exitCode: 1 }))).toBe(true);
    expect(retryAllowed(s, vars({ exitCode: 3 }))).toBe(false);
    expect(retryAllowed(s, vars({ exitCode: null }))).toBe(true);
    expect(retryAllowed(withCondition('exitCode == null'), vars({ exitCode: null }))).toBe(true);
    expect(retryAllowed(withCondition('exitCode == null'), vars({ exitCode: 0 }))).toBe(false);
  });

  it('tries', () => {
    const s = withCondition('tries < 3');
    expect(retryAllowed(s, vars({ tries: 2 }))).toBe(true);
    expect(retryAllowed(s, vars({ tries: 3 }))).toBe(false);
  });

  it('consecutiveFailures', () => {
    const s = withCondition('consecutiveFailures <= 2');
    expect(retryAllowed(s, vars({ consecutiveFailures: 2 }))).toBe(true);
    expect(retryAllowed(s, vars({ consecutiveFailures: 3 }))).toBe(false);
  });

  it('triggerType', () => {
    const s = withCondition('triggerType != "backfill"');
    expect(retryAllowed(s, vars({ triggerType: 'natural' }))).toBe(true);
    expect(retryAllowed(s, vars({ triggerType: 'adhoc' }))).toBe(true);
    expect(retryAllowed(s, vars({ triggerType: 'backfill' }))).toBe(false);
  });

  it('combined condition', () => {
    const s = withCondition('triggerType == "natural" && tries < 5 && (exitCode == null || exitCode != 2)');
    expect(retryAllowed(s, vars({ tries: 4, exitCode: null }))).toBe(true);
    expect(retryAllowed(s, vars({ tries: 4, exitCode: 2 }))).toBe(false);
    expect(retryAllowed(s, vars({ tries: 5 }))).toBe(false);
    expect(retryAllowed(s, vars({ triggerType: 'adhoc' }))).toBe(false);
  });

  it('evaluation error or non-bool dyn result means no retry (as Styx)', () => {
    expect(retryAllowed(withCondition('exitCode < 3'), vars({ exitCode: null }))).toBe(false);
    expect(retryAllowed(withCondition('exitCode < 3'), vars({ exitCode: 1 }))).toBe(true);
    expect(retryAllowed(withCondition('exitCode'), vars({ exitCode: 1 }))).toBe(false);
  });

  it('works on a copy of the spec (recompiles from source)', () => {
    const s = { ...withCondition('tries < 3') };
    expect(retryAllowed(s, vars({ tries: 1 }))).toBe(true);
    expect(retryAllowed(s, vars({ tries: 3 }))).toBe(false);
  });

  it('rejects bad variables', () => {
    const s = withCondition('tries < 3');
    expect(err(() => retryAllowed(s, vars({ tries: 1.5 }))).message).toBe('tries: must be an integer, got 1.5');
    expect(err(() => retryAllowed(s, vars({ triggerType: 'unknown' as 'natural' }))).message).toBe(
      "triggerType: 'unknown' is not one of natural, adhoc, backfill",
    );
  });
});
