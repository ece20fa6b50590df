import { describe, expect, it } from 'vitest';
import { Execution, Instance, InstanceState } from '@weft/proto';
import { executionTable, instanceLines, instanceTable } from './instance.js';

const failing = Instance.fromPartial({
  workflowId: 'daily-report',
  parameter: '2024-05-01',
  state: InstanceState.INSTANCE_STATE_QUEUED,
  triggerId: 'natural-trigger',
  triggerType: 'natural',
  tries: 2,
  consecutiveFailures: 2,
  retryCost: 2,
  lastExitCode: 1,
  message: 'exit code 1;\nretry 3 in 360 s',
  executionId: 'weft-run-2',
  nextAttempt: new Date('2024-05-02T00:09:00Z'),
  created: new Date('2024-05-02T00:00:00Z'),
  updated: new Date('2024-05-02T00:03:00Z'),
});

describe('instanceLines', () => {
  it('shows where an instance is and why', () => {
    expect(instanceLines(failing)).toEqual([
      'workflow:    daily-report',
      'parameter:   2024-05-01',
      'state:       queued',
      'trigger:     natural-trigger (natural)',
      'tries:       2',
      'last exit:   1',
      'retry cost:  2',
      'message:     exit code 1; retry 3 in 360 s',
      'execution:   weft-run-2',
      'next try:    2024-05-02 00:09:00',
      'created:     2024-05-02 00:00:00',
      'updated:     2024-05-02 00:03:00',
    ]);
  });

  it('leaves out what a fresh instance does not have yet', () => {
    const fresh = Instance.fromPartial({
      workflowId: 'w',
      parameter: 'p',
      state: InstanceState.INSTANCE_STATE_QUEUED,
      triggerId: 'adhoc-1',
      triggerType: 'adhoc',
      nextAttempt: new Date('2024-05-02T00:00:00Z'),
      updated: new Date('2024-05-02T00:00:00Z'),
    });
    expect(instanceLines(fresh)).toEqual([
      'workflow:    w',
      'parameter:   p',
      'state:       queued',
      'trigger:     adhoc-1 (adhoc)',
      'tries:       0',
      'updated:     2024-05-02 00:00:00',
    ]);
  });
});

describe('instanceTable', () => {
  it('lists one instance per row, "-" for a missing exit code', () => {
    const done = Instance.fromPartial({
      workflowId: 'daily-report',
      parameter: '2024-04-30',
      state: InstanceState.INSTANCE_STATE_DONE,
      triggerId: 'backfill-1',
      tries: 1,
      lastExitCode: 0,
    });
    const halted = Instance.fromPartial({
      workflowId: 'sync',
      parameter: '2024-05-01T10',
      state: InstanceState.INSTANCE_STATE_ERROR,
      triggerId: 'adhoc-1',
      message: 'halted: by request',
    });
    expect(instanceTable([done, failing, halted])).toEqual([
      'WORKFLOW      PARAMETER      STATE   TRIGGER          TRIES  LAST EXIT  MESSAGE',
      'daily-report  2024-04-30     done    backfill-1       1      0',
      'daily-report  2024-05-01     queued  natural-trigger  2      1          exit code 1; retry 3 in 360 s',
      'sync          2024-05-01T10  error   adhoc-1          0      -          halted: by request',
    ]);
  });
});

describe('executionTable', () => {
  it('lists the tries of an instance', () => {
    const first = Execution.fromPartial({
      executionId: 'weft-run-1',
      try: 1,
      started: new Date('2024-05-02T00:00:01Z'),
      ended: new Date('2024-05-02T00:00:05Z'),
      exitCode: 1,
      log: '/data/logs/workflows/daily-report/2024-05-01/weft-run-1.log',
    });
    const second = Execution.fromPartial({ executionId: 'weft-run-2', try: 2, error: 'worker lost\n(restart)' });
    expect(executionTable([first, second])).toEqual([
      'EXECUTION   TRY  STARTED              ENDED                EXIT  LOG                                                          ERROR',
      'weft-run-1  1    2024-05-02 00:00:01  2024-05-02 00:00:05  1     /data/logs/workflows/daily-report/2024-05-01/weft-run-1.log',
      'weft-run-2  2    -                    -                    -     -                                                            worker lost (restart)',
    ]);
  });
});
