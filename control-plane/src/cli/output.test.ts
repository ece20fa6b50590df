import { describe, expect, it } from 'vitest';
import { BlobRef, encode } from '@weft/common';
import {
  InstanceState,
  JobState,
  NodeState,
  type JobResult,
  type JobStatus,
  type LeafResult,
  type NodeStatus,
} from '@weft/proto';
import { UsageError } from './errors.js';
import {
  formatPercent,
  formatTable,
  formatTime,
  instanceStateName,
  jobResultJson,
  jobStateName,
  jobStatusJson,
  oneLine,
  parseInstanceStates,
  parseJobState,
  resultLines,
  statusLines,
  toJson,
  withStateNames,
} from './output.js';

function inline(value: unknown): LeafResult['result'] {
  return { kind: { $case: 'inline', value: encode(value) } };
}

function leaf(nodeName: string, batchIndex: number, result: LeafResult['result']): LeafResult {
  return { nodeName, algorithmName: nodeName.toLowerCase(), batchIndex, result };
}

function node(partial: Partial<NodeStatus> & { nodeName: string }): NodeStatus {
  return {
    algorithmName: partial.nodeName.toLowerCase(),
    state: NodeState.NODE_STATE_PENDING,
    total: 0,
    pending: 0,
    active: 0,
    succeeded: 0,
    failed: 0,
    batch: false,
    errors: [],
    skipped: 0,
    parents: [],
    ...partial,
  };
}

describe('toJson', () => {
  it('renders binary data as $base64', () => {
    expect(toJson(Buffer.from('hi'))).toEqual({ $base64: 'aGk=' });
    // A view into a larger buffer encodes only its own bytes.
    const big = Buffer.from('xxhixx');
    expect(toJson(new Uint8Array(big.buffer, big.byteOffset + 2, 2))).toEqual({ $base64: 'aGk=' });
  });

  it('renders bigints as numbers when safe, else as strings', () => {
    expect(toJson(42n)).toBe(42);
    expect(JSON.stringify(toJson(-(2n ** 53n) + 1n))).toBe('-9007199254740991');
    expect(toJson(2n ** 64n)).toBe('18446744073709551616');
  });

  it('walks nested values and maps what JSON lacks', () => {
    expect(
      toJson({
        a: [1, 'x', null, undefined, true],
        b: new Map<unknown, unknown>([[1, Buffer.from([255])]]),
        c: new Date('2024-01-02T03:04:05.000Z'),
        d: NaN,
        e: new BlobRef('jobs/j/t', ['items', 2]),
      }),
    ).toEqual({
      a: [1, 'x', null, null, true],
      b: { '1': { $base64: '/w==' } },
      c: '2024-01-02T03:04:05.000Z',
      d: null,
      e: { $blobRef: { key: 'jobs/j/t', path: ['items', 2] } },
    });
  });
});

describe('resultLines', () => {
  it('prints one compact JSON line per leaf', () => {
    expect(
      resultLines([
        leaf('Reduce', -1, inline(30)),
        leaf('Multiply', 2, inline({ v: [6, 'six'] })),
        leaf('Big', -1, { kind: { $case: 'ref', value: { key: 'jobs/j/t1', size: 2048 } } }),
        leaf('Empty', -1, undefined),
      ]),
    ).toEqual([
      'Reduce: 30',
      'Multiply#2: {"v":[6,"six"]}',
      'Big: <stored result, 2048 bytes, key jobs/j/t1>',
      'Empty: null',
    ]);
  });

  it('survives a payload that is not msgpack', () => {
    const [line] = resultLines([leaf('Bad', -1, { kind: { $case: 'inline', value: Buffer.from([0x92, 0x01]) } })]);
    expect(line).toMatch(/^Bad: <undecodable result, 2 bytes: /);
  });
});

describe('jobResultJson', () => {
  const base: JobResult = { jobId: 'j1', state: JobState.JOB_STATE_COMPLETED, results: [], error: '' };

  it('describes a completed job', () => {
    const doc = jobResultJson(
      {
        ...base,
        results: [leaf('Reduce', -1, inline(Buffer.from('ok'))), leaf('Multiply', 0, inline(2n ** 60n))],
      },
      'ignored',
    );
    expect(JSON.parse(JSON.stringify(doc))).toEqual({
      jobId: 'j1',
      status: 'completed',
      result: [
        { nodeName: 'Reduce', algorithmName: 'reduce', result: { $base64: 'b2s=' } },
        { nodeName: 'Multiply', algorithmName: 'multiply', batchIndex: 0, result: '1152921504606846976' },
      ],
      error: null,
    });
  });

  it('has a null result and the error for a failed job without results', () => {
    expect(jobResultJson({ ...base, jobId: '', state: JobState.JOB_STATE_FAILED, error: 'boom' }, 'j2')).toEqual({
      jobId: 'j2',
      status: 'failed',
      result: null,
      error: 'boom',
    });
  });

  it('has a null result while the job runs', () => {
    expect(jobResultJson({ ...base, state: JobState.JOB_STATE_ACTIVE }, 'j1')).toMatchObject({
      status: 'active',
      result: null,
    });
  });

  it('renders a stored result as $ref', () => {
    const doc = jobResultJson(
      { ...base, results: [leaf('R', -1, { kind: { $case: 'ref', value: { key: 'k', size: 9 } } })] },
      'j1',
    );
    expect(doc).toMatchObject({ result: [{ result: { $ref: { key: 'k', size: 9 } } }] });
  });
});

describe('states', () => {
  it('names and parses job states', () => {
    expect(jobStateName(JobState.JOB_STATE_COMPLETED)).toBe('completed');
    expect(jobStateName(JobState.JOB_STATE_UNSPECIFIED)).toBe('unknown');
    expect(parseJobState('Failed')).toBe(JobState.JOB_STATE_FAILED);
    expect(parseJobState('JOB_STATE_STOPPED')).toBe(JobState.JOB_STATE_STOPPED);
    expect(parseJobState('done')).toBeUndefined();
  });

  it('names the paused state', () => {
    expect(jobStateName(JobState.JOB_STATE_PAUSED)).toBe('paused');
    expect(parseJobState('paused')).toBe(JobState.JOB_STATE_PAUSED);
    expect(parseJobState('JOB_STATE_PAUSED')).toBe(JobState.JOB_STATE_PAUSED);
    expect(jobResultJson({ jobId: 'j', state: JobState.JOB_STATE_PAUSED, results: [], error: '' }, 'j')).toMatchObject({
      status: 'paused',
    });
  });
});

describe('formatting helpers', () => {
  it('aligns table columns without trailing blanks', () => {
    expect(
      formatTable([
        ['NAME', 'NODES', 'DESCRIPTION'],
        ['a', '3', ''],
        ['longer', '12', 'text'],
      ]),
    ).toEqual(['NAME    NODES  DESCRIPTION', 'a       3', 'longer  12     text']);
  });

  it('formats times and percentages', () => {
    expect(formatTime(new Date('2024-05-01T12:00:03.456Z'))).toBe('2024-05-01 12:00:03');
    expect(formatTime(undefined)).toBe('-');
    expect(formatPercent(99.99)).toBe('99%');
    expect(formatPercent(100)).toBe('100%');
    expect(formatPercent(NaN)).toBe('0%');
  });
});

const pausedJob: JobStatus = {
  jobId: 'j2',
  pipelineName: 'sum',
  state: JobState.JOB_STATE_PAUSED,
  progress: 50,
  nodes: [
    node({
      nodeName: 'Multiply',
      state: NodeState.NODE_STATE_ACTIVE,
      total: 6,
      succeeded: 2,
      failed: 1,
      skipped: 2,
      pending: 1,
      batch: true,
      parents: ['Range'],
    }),
  ],
  error: '',
  priority: 3,
  tags: [],
  childJobIds: ['c1', 'c2'],
  parentJobId: 'j1',
};

describe('jobStatusJson', () => {
  it('names the state as the text output does', () => {
    expect(jobStatusJson(pausedJob)).toMatchObject({
      jobId: 'j2',
      state: 'paused',
      childJobIds: ['c1', 'c2'],
      parentJobId: 'j1',
      nodes: [{ nodeName: 'Multiply', skipped: 2, parents: ['Range'] }],
    });
  });
});

describe('statusLines', () => {
  it('shows paused state, skipped counts and related jobs', () => {
    expect(statusLines(pausedJob)).toEqual([
      'job:       j2',
      'pipeline:  sum',
      'state:     paused',
      'progress:  50%',
      'parent:    j1',
      'children:  c1, c2',
      'nodes:',
      '  Multiply  multiply  active  2/6  1 pending, 1 failed, 2 skipped, batch',
    ]);
  });

  it('shows the job, each node and the errors', () => {
    const status: JobStatus = {
      jobId: 'j1',
      pipelineName: 'sum',
      state: JobState.JOB_STATE_FAILED,
      progress: 40,
      nodes: [
        node({ nodeName: 'Range', state: NodeState.NODE_STATE_SUCCEEDED, total: 1, succeeded: 1 }),
        node({
          nodeName: 'Multiply',
          state: NodeState.NODE_STATE_FAILED,
          total: 5,
          succeeded: 2,
          failed: 1,
          batch: true,
          errors: [
            {
              taskId: 't3',
              nodeName: 'Multiply',
              batchIndex: 3,
              attempts: 3,
              failure: { type: 'TypeError', message: 'boom', stack: '', crash: false },
            },
          ],
        }),
        node({ nodeName: 'Reduce' }),
      ],
      error: 'node Multiply failed',
      priority: 3,
      tags: [],
      childJobIds: [],
      parentJobId: '',
    };
    expect(statusLines(status)).toEqual([
      'job:       j1',
      'pipeline:  sum',
      'state:     failed',
      'progress:  40%',
      'nodes:',
      '  Range     range     succeeded  1/1',
      '  Multiply  multiply  failed     2/5  1 failed, batch',
      '  Reduce    reduce    pending    0/?',
      'task errors:',
      '  Multiply#3: TypeError: boom (after 3 attempts)',
      'error:     node Multiply failed',
    ]);
  });

  it('shows the first errors’ stacks or tracebacks, and summarises beyond twenty errors', () => {
    const traceback =
      'Traceback (most recent call last):\n  File "main.py", line 3, in start\n    raise ValueError("bad")\nValueError: bad\n';
    const errors = Array.from({ length: 22 }, (_, i) => ({
      taskId: `t${i}`,
      nodeName: 'P',
      batchIndex: i,
      attempts: 1,
      failure: { type: 'ValueError', message: 'bad', stack: traceback, crash: false },
    }));
    const status: JobStatus = {
      jobId: 'j2',
      pipelineName: 'py',
      state: JobState.JOB_STATE_FAILED,
      progress: 0,
      nodes: [node({ nodeName: 'P', state: NodeState.NODE_STATE_FAILED, total: 22, failed: 22, batch: true, errors })],
      error: '',
      priority: 3,
      tags: [],
      childJobIds: [],
      parentJobId: '',
    };
    const lines = statusLines(status);
    const from = lines.indexOf('task errors:');
    expect(lines.slice(from + 1, from + 5)).toEqual([
      '  P#0: ValueError: bad',
      '      Traceback (most recent call last):',
      '        File "main.py", line 3, in start',
      '          raise ValueError("bad")',
    ]);
    expect(lines.filter((l) => l.includes('Traceback'))).toHaveLength(3);
    expect(lines.filter((l) => /^ {2}P#\d+: ValueError: bad$/.test(l))).toHaveLength(20);
    expect(lines.at(-1)).toBe('  … and 2 more (-o json lists them all)');
  });
});

describe('instance states', () => {
  it('are named in lower case', () => {
    expect(instanceStateName(InstanceState.INSTANCE_STATE_QUEUED)).toBe('queued');
    expect(instanceStateName(InstanceState.INSTANCE_STATE_SUBMITTING)).toBe('submitting');
    expect(instanceStateName(InstanceState.INSTANCE_STATE_ERROR)).toBe('error');
    expect(instanceStateName(InstanceState.INSTANCE_STATE_UNSPECIFIED)).toBe('unknown');
  });

  it('parse one or several names, as printed or as in the contract', () => {
    expect(parseInstanceStates('running')).toEqual([InstanceState.INSTANCE_STATE_RUNNING]);
    expect(parseInstanceStates(' Failed, error ,failed')).toEqual([
      InstanceState.INSTANCE_STATE_FAILED,
      InstanceState.INSTANCE_STATE_ERROR,
    ]);
    expect(parseInstanceStates('INSTANCE_STATE_DONE')).toEqual([InstanceState.INSTANCE_STATE_DONE]);
  });

  it('reject unknown names, listing the valid ones', () => {
    expect(() => parseInstanceStates('done,finished')).toThrow(UsageError);
    expect(() => parseInstanceStates('active')).toThrow(
      'unknown instance state "active"; use queued, prepare, submitting, submitted, running, terminated, failed, done, error',
    );
    expect(() => parseInstanceStates('')).toThrow(UsageError);
  });
});

describe('oneLine', () => {
  it('folds line breaks and runs of blanks', () => {
    expect(oneLine('  exit code 1:\n  boom\t here ')).toBe('exit code 1: boom here');
  });
});

describe('withStateNames', () => {
  it('prints instance states by their lower-case names, deep inside lists and objects', () => {
    expect(
      withStateNames({
        state: 'INSTANCE_STATE_RUNNING',
        slotStates: [
          { parameter: '2024-01-01', state: 'INSTANCE_STATE_DONE' },
          { parameter: '2024-01-02', state: 'INSTANCE_STATE_UNSPECIFIED' },
        ],
        message: 'not a state',
        tries: 2,
      }),
    ).toEqual({
      state: 'running',
      slotStates: [
        { parameter: '2024-01-01', state: 'done' },
        { parameter: '2024-01-02', state: null },
      ],
      message: 'not a state',
      tries: 2,
    });
  });
});
