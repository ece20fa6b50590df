import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { Status } from '@weft/common';
import { Instance, InstanceState, Workflow, type ApplyWorkflowRequest, type TriggerRequest } from '@weft/proto';
import type { Clients } from '../client.js';
import type { Context } from '../context.js';
import { CliError } from '../errors.js';
import { appliedLine, scheduleText, workflowApply, workflowTable, workflowText, workflowTrigger } from './workflow.js';

type Callback<T> = (err: ServiceError | null, res: T) => void;

function fakeContext(clients: object, args: string[] = [], flags: Partial<Context['flags']> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: Context = {
    io: { stdout: { write: (c: string) => out.push(c) }, stderr: { write: (c: string) => err.push(c) } },
    args,
    flags: { wait: false, ...flags },
    output: 'text',
    server: 'test:1',
    // Only the services a test calls are there; a call to another fails the test loudly.
    clients: clients as unknown as Clients,
  };
  return { ctx, out, err };
}

function rejection(code: Status, details: string): ServiceError {
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata: new Metadata() });
}

const daily = Workflow.fromPartial({
  id: 'daily-report',
  document: { id: 'daily-report', schedule: 'daily', command: ['report', '{}'], enabled: true },
  enabled: true,
  nextParameter: '2024-05-01',
  nextDue: new Date('2024-05-02T00:00:00Z'),
  modified: new Date('2024-04-30T10:00:00Z'),
  activeInstances: 2,
});

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-cli-wf-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('appliedLine', () => {
  it('says whether the workflow is enabled and what runs next', () => {
    expect(appliedLine(daily)).toBe('workflow daily-report applied (enabled, next 2024-05-01 at 2024-05-02 00:00:00)');
    expect(appliedLine({ ...daily, enabled: false, nextParameter: '' })).toBe(
      'workflow daily-report applied (disabled)',
    );
  });
});

describe('workflow ls', () => {
  it('shows the schedule with a time zone other than UTC', () => {
    expect(scheduleText({ schedule: '0 5 * * *' })).toBe('0 5 * * *');
    expect(scheduleText({ schedule: 'daily', timezone: 'UTC' })).toBe('daily');
    expect(scheduleText({ schedule: 'daily', timezone: 'Europe/Stockholm' })).toBe('daily (Europe/Stockholm)');
    expect(scheduleText(undefined)).toBe('-');
  });

  it('lists one workflow per row', () => {
    const hourly = Workflow.fromPartial({ id: 'sync', document: { schedule: 'hourly' } });
    expect(workflowTable([daily, hourly])).toEqual([
      'ID            ENABLED  SCHEDULE  NEXT PARAMETER  NEXT DUE             ACTIVE',
      'daily-report  yes      daily     2024-05-01      2024-05-02 00:00:00  2',
      'sync          no       hourly    -               -                    0',
    ]);
  });
});

describe('workflowText', () => {
  it('prints YAML that reads back as the document, the state as comments', () => {
    const text = workflowText(daily);
    expect(parse(text)).toEqual(daily.document);
    expect(text.split('\n').filter((l) => l.startsWith('#'))).toEqual([
      '# enabled:          yes',
      '# next parameter:   2024-05-01',
      '# next due:         2024-05-02 00:00:00',
      '# active instances: 2',
      '# modified:         2024-04-30 10:00:00',
    ]);
  });
});

describe('workflowApply', () => {
  it('applies each document, warns, and names the workflow the server rejects', async () => {
    const path = join(dir, 'two.yaml');
    await writeFile(path, 'id: a\nschedule: daily\ncommand: [x]\ncolour: red\n---\nid: b\nschedule: often\n');
    const sent: ApplyWorkflowRequest[] = [];
    const workflows = {
      apply(req: ApplyWorkflowRequest, cb: Callback<Workflow>) {
        sent.push(req);
        if (req.document?.['id'] === 'b')
          cb(rejection(Status.INVALID_ARGUMENT, "schedule: unknown alias 'often'"), Workflow.fromPartial({}));
        else cb(null, Workflow.fromPartial({ id: 'a', warnings: ["unknown field 'colour' ignored"] }));
      },
    };
    const { ctx, out, err } = fakeContext({ workflows }, [], { file: path });
    await expect(workflowApply(ctx)).rejects.toThrow(new CliError(`workflow "b": schedule: unknown alias 'often'`));
    expect(sent.map((r) => r.document)).toEqual([
      { id: 'a', schedule: 'daily', command: ['x'], colour: 'red' },
      { id: 'b', schedule: 'often' },
    ]);
    expect(out.join('')).toBe('workflow a applied (disabled)\n');
    expect(err.join('')).toBe(`weft: warning: workflow "a": unknown field 'colour' ignored\n`);
  });
});

describe('workflowTrigger', () => {
  it('sends the parameter, --env and --allow-future, and prints the instance', async () => {
    let sent: TriggerRequest | undefined;
    const workflows = {
      trigger(req: TriggerRequest, cb: Callback<Instance>) {
        sent = req;
        cb(
          null,
          Instance.fromPartial({
            workflowId: req.workflowId,
            parameter: req.parameter,
            state: InstanceState.INSTANCE_STATE_QUEUED,
          }),
        );
      },
    };
    const { ctx, out } = fakeContext({ workflows }, ['wf', '2024-01-01'], {
      env: ['A=1', 'B=2'],
      'allow-future': true,
    });
    expect(await workflowTrigger(ctx)).toBe(0);
    expect(sent).toEqual({ workflowId: 'wf', parameter: '2024-01-01', env: { A: '1', B: '2' }, allowFuture: true });
    expect(out.join('')).toContain('state:       queued');
  });

  it('checks --env before calling the server', async () => {
    const { ctx } = fakeContext({}, ['wf', '2024-01-01'], { env: ['A'] });
    await expect(workflowTrigger(ctx)).rejects.toThrow('--env must be NAME=VALUE, got "A"');
  });
});
