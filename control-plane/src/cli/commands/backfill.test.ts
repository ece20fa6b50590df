import type { ServiceError } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import {
  Backfill,
  InstanceState,
  Workflow,
  type CreateBackfillRequest,
  type EditBackfillRequest,
  type WorkflowRef,
} from '@weft/proto';
import { parseSchedule } from '../../domain/schedule.js';
import type { Clients } from '../client.js';
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';
import {
  backfillBound,
  backfillCreate,
  backfillEdit,
  backfillLines,
  backfillState,
  backfillTable,
  formatBound,
  formatRange,
} from './backfill.js';

type Callback<T> = (err: ServiceError | null, res: T) => void;

function fakeContext(clients: object, args: string[], flags: Partial<Context['flags']> = {}) {
  const out: string[] = [];
  const ctx: Context = {
    io: { stdout: { write: (c: string) => out.push(c) }, stderr: { write: () => true } },
    args,
    flags: { wait: false, ...flags },
    output: 'text',
    server: 'test:1',
    // Only the services a test calls are there; a call to another fails the test loudly.
    clients: clients as unknown as Clients,
  };
  return { ctx, out };
}

const utc = (iso: string): Date => new Date(iso);

describe('backfillBound', () => {
  const daily = parseSchedule('daily');
  const hourly = parseSchedule('hourly');

  it('reads parameters of the schedule', () => {
    expect(backfillBound('START', '2024-01-01', daily)).toEqual(utc('2024-01-01T00:00:00Z'));
    expect(backfillBound('END', '2024-01-01T05', hourly)).toEqual(utc('2024-01-01T05:00:00Z'));
    expect(backfillBound('START', '2024-01', parseSchedule('monthly'))).toEqual(utc('2024-01-01T00:00:00Z'));
    // A parameter is wall-clock time in the workflow's zone.
    const stockholm = parseSchedule('daily', { timezone: 'Europe/Stockholm' });
    expect(backfillBound('START', '2024-01-01', stockholm)).toEqual(utc('2023-12-31T23:00:00Z'));
    const cron = parseSchedule('30 5 * * *');
    const slot = utc('2024-03-04T05:30:00Z');
    expect(backfillBound('START', cron.parameter(slot), cron)).toEqual(slot);
  });

  it('reads ISO 8601 times with an offset that fall on a slot', () => {
    expect(backfillBound('START', '2024-01-01T00:00:00Z', daily)).toEqual(utc('2024-01-01T00:00:00Z'));
    expect(backfillBound('END', '2024-01-01T07:00+02:00', hourly)).toEqual(utc('2024-01-01T05:00:00Z'));
  });

  it('names START or END when the value is neither', () => {
    expect(() => backfillBound('START', '2024-01-01', hourly, '2024-05-01T10')).toThrow(
      new UsageError(
        `START "2024-01-01" is neither a parameter of schedule 'hourly' (such as 2024-05-01T10) ` +
          'nor an ISO 8601 time with an offset (such as 2024-01-01T00:00:00Z)',
      ),
    );
    // Without an offset the instant would depend on the machine's zone.
    expect(() => backfillBound('END', '2024-01-01T00:00', daily)).toThrow(/^END "2024-01-01T00:00" is neither/);
    expect(() => backfillBound('END', 'yesterday', daily)).toThrow(UsageError);
  });

  it('says where the next slot is when a time falls between slots', () => {
    expect(() => backfillBound('END', '2024-01-01T05:00Z', daily)).toThrow(
      `END 2024-01-01T05:00:00.000Z is not a slot of schedule 'daily' (the next one is 2024-01-02, 2024-01-02T00:00:00.000Z)`,
    );
  });
});

describe('formatting', () => {
  const bf = Backfill.fromPartial({
    id: 'backfill-1',
    workflowId: 'daily-report',
    start: utc('2024-01-01T00:00:00Z'),
    end: utc('2024-01-04T00:00:00Z'),
    concurrency: 2,
    slots: 3,
    triggered: 2,
    active: 1,
    done: 1,
    created: utc('2024-05-01T12:00:00Z'),
  });

  it('shortens bounds at midnight and whole minutes', () => {
    expect(formatBound(utc('2024-01-01T00:00:00Z'))).toBe('2024-01-01');
    expect(formatBound(utc('2024-01-01T05:00:00Z'))).toBe('2024-01-01T05:00Z');
    expect(formatBound(utc('2024-01-01T05:00:30Z'))).toBe('2024-01-01T05:00:30Z');
    expect(formatBound(undefined)).toBe('-');
    expect(formatRange(bf)).toBe('[2024-01-01, 2024-01-04)');
  });

  it('tells running, halted and finished backfills apart', () => {
    expect(backfillState(bf)).toBe('running');
    expect(backfillState({ ...bf, allTriggered: true })).toBe('running');
    expect(backfillState({ ...bf, allTriggered: true, active: 0 })).toBe('finished');
    expect(backfillState({ ...bf, halted: true })).toBe('halted');
  });

  it('lists backfills with their progress', () => {
    expect(backfillTable([bf])).toEqual([
      'ID          WORKFLOW      RANGE                     CONCURRENCY  PROGRESS  ACTIVE  DONE  ERRORS  STATE',
      'backfill-1  daily-report  [2024-01-01, 2024-01-04)  2            2/3       1       1     0       running',
    ]);
  });

  it('shows every slot, "-" for those not triggered yet', () => {
    const shown = backfillLines({
      ...bf,
      reverse: true,
      description: 'rerun\nafter the fix',
      slotStates: [
        { parameter: '2024-01-03', state: InstanceState.INSTANCE_STATE_DONE, tries: 1 },
        { parameter: '2024-01-02', state: InstanceState.INSTANCE_STATE_RUNNING, tries: 2 },
        { parameter: '2024-01-01', state: InstanceState.INSTANCE_STATE_UNSPECIFIED, tries: 0 },
      ],
    });
    expect(shown).toEqual([
      'backfill:     backfill-1',
      'workflow:     daily-report',
      'range:        [2024-01-01, 2024-01-04)',
      'slots:        3 (2024-01-03 to 2024-01-01, newest first)',
      'concurrency:  2',
      'state:        running',
      'progress:     2/3 triggered, 1 active, 1 done, 0 errors',
      'description:  rerun after the fix',
      'created:      2024-05-01 12:00:00',
      'slot states:',
      '  PARAMETER   STATE    TRIES',
      '  2024-01-03  done     1',
      '  2024-01-02  running  2',
      '  2024-01-01  -        -',
    ]);
  });
});

describe('backfillCreate', () => {
  const hourly = Workflow.fromPartial({
    id: 'sync',
    document: { id: 'sync', schedule: 'hourly', command: ['sync', '{}'] },
    nextParameter: '2024-05-01T10',
  });

  it('turns START and END into the slots of the workflow and sends them', async () => {
    let sent: CreateBackfillRequest | undefined;
    const clients = {
      workflows: {
        get(req: WorkflowRef, cb: Callback<Workflow>) {
          expect(req.id).toBe('sync');
          cb(null, hourly);
        },
      },
      backfills: {
        create(req: CreateBackfillRequest, cb: Callback<Backfill>) {
          sent = req;
          cb(null, Backfill.fromPartial({ id: 'backfill-1', workflowId: 'sync', slots: 3, concurrency: 2 }));
        },
      },
    };
    const { ctx, out } = fakeContext(clients, ['sync', '2024-01-01T05', '2024-01-01T08:00:00Z', '2'], {
      reverse: true,
      env: ['DRY_RUN=1'],
    });
    expect(await backfillCreate(ctx)).toBe(0);
    expect(sent).toEqual({
      workflowId: 'sync',
      start: utc('2024-01-01T05:00:00Z'),
      end: utc('2024-01-01T08:00:00Z'),
      concurrency: 2,
      reverse: true,
      description: '',
      allowFuture: false,
      env: { DRY_RUN: '1' },
    });
    expect(out.join('')).toBe('backfill backfill-1 created (3 slots of sync, at most 2 active)\n');
  });

  it('checks CONCURRENCY before calling the server, and END after START', async () => {
    await expect(backfillCreate(fakeContext({}, ['sync', 'a', 'b', '0']).ctx)).rejects.toThrow(
      'CONCURRENCY must be a positive integer, got "0"',
    );
    const clients = { workflows: { get: (_: WorkflowRef, cb: Callback<Workflow>) => cb(null, hourly) } };
    await expect(
      backfillCreate(fakeContext(clients, ['sync', '2024-01-01T05', '2024-01-01T05', '1']).ctx),
    ).rejects.toThrow('END (2024-01-01T05:00:00.000Z) must be after START (2024-01-01T05:00:00.000Z)');
  });
});

describe('backfillEdit', () => {
  it('needs something to change and sends only what is given', async () => {
    await expect(backfillEdit(fakeContext({}, ['b1']).ctx)).rejects.toThrow(UsageError);
    await expect(backfillEdit(fakeContext({}, ['b1'], { concurrency: '-2' }).ctx)).rejects.toThrow(
      '--concurrency must be a positive integer',
    );
    let sent: EditBackfillRequest | undefined;
    const clients = {
      backfills: {
        edit(req: EditBackfillRequest, cb: Callback<Backfill>) {
          sent = req;
          cb(null, Backfill.fromPartial({ id: 'b1', concurrency: 1 }));
        },
      },
    };
    await backfillEdit(fakeContext(clients, ['b1'], { description: 'slower' }).ctx);
    expect(sent).toEqual({ id: 'b1', concurrency: undefined, description: 'slower' });
  });
});
