import { Backfill, InstanceState, ListBackfillsResponse, type Workflow } from '@weft/proto';
import type { Schedule } from '../../domain/schedule.js';
import { parseEnv, parseInstant, parsePositiveInt } from '../args.js';
import { unary } from '../client.js';
import { arg, noneFound, printLines, type Context } from '../context.js';
import { CliError, UsageError } from '../errors.js';
import { formatJson, formatTable, formatTime, instanceStateName, oneLine, withStateNames } from '../output.js';

/** A backfill as `ls` and `show` name its state. */
export type BackfillState = 'running' | 'halted' | 'finished';

/**
 * Where a backfill is: halted by request, finished once every slot has been
 * triggered and none is active any more (the server's own test for hiding it
 * from `ls`), else running.
 */
export function backfillState(bf: Backfill): BackfillState {
  if (bf.halted) return 'halted';
  return bf.allTriggered && bf.active === 0 ? 'finished' : 'running';
}

/**
 * A bound of a backfill, short: `2024-01-01` at midnight UTC, else
 * `2024-01-01T05:00Z` (with seconds when it has any). Always UTC: the
 * backfill message carries instants, not the workflow's time zone.
 */
export function formatBound(date: Date | undefined): string {
  if (!date || Number.isNaN(date.getTime())) return '-';
  const iso = date.toISOString();
  if (iso.endsWith('T00:00:00.000Z')) return iso.slice(0, 10);
  return iso.replace(/\.\d+Z$/, 'Z').replace(/:00Z$/, 'Z');
}

/** The RANGE of a backfill, half-open as the server reads it: `[2024-01-01, 2024-02-01)`. */
export function formatRange(bf: Backfill): string {
  return `[${formatBound(bf.start)}, ${formatBound(bf.end)})`;
}

/**
 * Reads START or END of `weft backfill create`: a parameter of the
 * workflow's schedule (`2024-01-01` daily, `2024-01-01T05` hourly), else an
 * ISO 8601 time with an offset that falls on a slot. `example` is a
 * parameter of the schedule to show in the error (the workflow's next one).
 * Throws a UsageError naming `name` otherwise.
 */
export function backfillBound(name: 'START' | 'END', value: string, schedule: Schedule, example?: string): Date {
  const text = value.trim();
  try {
    return schedule.slotOfParameter(text);
  } catch {
    // Not a parameter; it may still be an instant.
  }
  const instant = parseInstant(text);
  if (instant === undefined) {
    const such = example ? ` (such as ${example})` : '';
    throw new UsageError(
      `${name} "${value}" is neither a parameter of schedule '${schedule.schedule}'${such} ` +
        'nor an ISO 8601 time with an offset (such as 2024-01-01T00:00:00Z)',
    );
  }
  if (!schedule.isAligned(instant)) {
    const next = schedule.nextSlot(instant);
    throw new UsageError(
      `${name} ${instant.toISOString()} is not a slot of schedule '${schedule.schedule}' ` +
        `(the next one is ${schedule.parameter(next)}, ${next.toISOString()})`,
    );
  }
  return instant;
}

/** The table of `weft backfill ls`, header included. */
export function backfillTable(backfills: readonly Backfill[]): string[] {
  const rows = backfills.map((bf) => [
    bf.id,
    bf.workflowId,
    formatRange(bf),
    String(bf.concurrency),
    `${bf.triggered}/${bf.slots}`,
    String(bf.active),
    String(bf.done),
    String(bf.errored),
    backfillState(bf),
  ]);
  return formatTable([
    ['ID', 'WORKFLOW', 'RANGE', 'CONCURRENCY', 'PROGRESS', 'ACTIVE', 'DONE', 'ERRORS', 'STATE'],
    ...rows,
  ]);
}

/** The text of `weft backfill show`: a summary, then one row per slot in the order they run. */
export function backfillLines(bf: Backfill): string[] {
  const first = bf.slotStates[0]?.parameter;
  const last = bf.slotStates[bf.slotStates.length - 1]?.parameter;
  const about = [first && last ? `${first} to ${last}` : '', bf.reverse ? 'newest first' : ''].filter(Boolean);
  const lines = [
    `backfill:     ${bf.id}`,
    `workflow:     ${bf.workflowId}`,
    `range:        ${formatRange(bf)}`,
    `slots:        ${bf.slots}${about.length > 0 ? ` (${about.join(', ')})` : ''}`,
    `concurrency:  ${bf.concurrency}`,
    `state:        ${backfillState(bf)}`,
    `progress:     ${bf.triggered}/${bf.slots} triggered, ${bf.active} active, ${bf.done} done, ${bf.errored} errors`,
  ];
  if (bf.description) lines.push(`description:  ${oneLine(bf.description)}`);
  if (bf.created) lines.push(`created:      ${formatTime(bf.created)}`);
  if (bf.slotStates.length > 0) {
    const rows = bf.slotStates.map((slot) =>
      // The server leaves the state unspecified for a slot it has not triggered yet.
      slot.state === InstanceState.INSTANCE_STATE_UNSPECIFIED
        ? [slot.parameter, '-', '-']
        : [slot.parameter, instanceStateName(slot.state), String(slot.tries)],
    );
    lines.push('slot states:', ...formatTable([['PARAMETER', 'STATE', 'TRIES'], ...rows]).map((line) => `  ${line}`));
  }
  return lines;
}

function printBackfill(ctx: Context, bf: Backfill, line: string): void {
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(withStateNames(Backfill.toJSON(bf))));
  else printLines(ctx, [line]);
}

/** The schedule of a workflow as the server reads it, for turning START and END into slots. */
async function scheduleOf(wf: Workflow): Promise<Schedule> {
  // Loaded on demand: the domain pulls in a CEL compiler, luxon and croner,
  // which no other command needs and every start-up would pay for.
  const { parseWorkflow } = await import('../../domain/workflow.js');
  try {
    return parseWorkflow(wf.document).schedule;
  } catch (err) {
    throw new CliError(
      `workflow "${wf.id}": cannot read its schedule: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/**
 * `weft backfill create WORKFLOW START END CONCURRENCY [--reverse]
 * [--description TEXT] [--allow-future] [--env K=V ...]` (Styx's order).
 */
export async function backfillCreate(ctx: Context): Promise<number> {
  const workflowId = arg(ctx, 0);
  const concurrency = parsePositiveInt('CONCURRENCY', arg(ctx, 3));
  const env = parseEnv(ctx.flags.env);
  const wf = await unary<Workflow>((cb) => ctx.clients.workflows.get({ id: workflowId }, cb));
  const schedule = await scheduleOf(wf);
  const start = backfillBound('START', arg(ctx, 1), schedule, wf.nextParameter);
  const end = backfillBound('END', arg(ctx, 2), schedule, wf.nextParameter);
  if (end.getTime() <= start.getTime()) {
    throw new UsageError(`END (${end.toISOString()}) must be after START (${start.toISOString()}); END is excluded`);
  }
  const bf = await unary<Backfill>((cb) =>
    ctx.clients.backfills.create(
      {
        workflowId,
        start,
        end,
        concurrency,
        reverse: ctx.flags.reverse === true,
        description: ctx.flags.description ?? '',
        allowFuture: ctx.flags['allow-future'] === true,
        env,
      },
      cb,
    ),
  );
  const slots = `${bf.slots} slot${bf.slots === 1 ? '' : 's'}`;
  printBackfill(ctx, bf, `backfill ${bf.id} created (${slots} of ${bf.workflowId}, at most ${bf.concurrency} active)`);
  return 0;
}

/** `weft backfill ls [--workflow ID] [--all]`. */
export async function backfillList(ctx: Context): Promise<number> {
  const res = await unary<ListBackfillsResponse>((cb) =>
    ctx.clients.backfills.list({ workflowId: ctx.flags.workflow ?? '', showAll: ctx.flags.all === true }, cb),
  );
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(withStateNames(ListBackfillsResponse.toJSON(res))));
    return 0;
  }
  if (res.backfills.length === 0) {
    noneFound(ctx, ctx.flags.all === true ? 'backfills' : 'running backfills (--all lists every one)');
    return 0;
  }
  printLines(ctx, backfillTable(res.backfills));
  return 0;
}

/** `weft backfill show ID`. */
export async function backfillShow(ctx: Context): Promise<number> {
  const bf = await unary<Backfill>((cb) => ctx.clients.backfills.get({ id: arg(ctx, 0) }, cb));
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(withStateNames(Backfill.toJSON(bf))));
  else printLines(ctx, backfillLines(bf));
  return 0;
}

/** `weft backfill edit ID [--concurrency N] [--description TEXT]`, at least one of them. */
export async function backfillEdit(ctx: Context): Promise<number> {
  const id = arg(ctx, 0);
  const { description } = ctx.flags;
  if (ctx.flags.concurrency === undefined && description === undefined) {
    throw new UsageError('nothing to change; give --concurrency N, --description TEXT or both');
  }
  const concurrency =
    ctx.flags.concurrency === undefined ? undefined : parsePositiveInt('--concurrency', ctx.flags.concurrency);
  const bf = await unary<Backfill>((cb) => ctx.clients.backfills.edit({ id, concurrency, description }, cb));
  printBackfill(ctx, bf, `backfill ${bf.id} edited (at most ${bf.concurrency} active)`);
  return 0;
}

/** `weft backfill halt ID [--graceful]`. */
export async function backfillHalt(ctx: Context): Promise<number> {
  const graceful = ctx.flags.graceful === true;
  const bf = await unary<Backfill>((cb) => ctx.clients.backfills.halt({ id: arg(ctx, 0), graceful }, cb));
  const n = bf.active;
  const finishing = graceful && n > 0 ? `; ${n} active instance${n === 1 ? '' : 's'} will finish` : '';
  printBackfill(ctx, bf, `backfill ${bf.id} halted${finishing}`);
  return 0;
}
