import { stringify } from 'yaml';
import { ListWorkflowsResponse, Workflow, type Instance } from '@weft/proto';
import { parseEnv } from '../args.js';
import { unary } from '../client.js';
import { arg, noneFound, printLines, warn, type Context } from '../context.js';
import { loadWorkflowDocuments } from '../files.js';
import { formatJson, formatTable, formatTime } from '../output.js';
import { printInstance } from './instance.js';
import { rejectedAs, required } from './shared.js';

/** `next 2024-05-02 at 2024-05-03 00:00:00`, or nothing when the server sent no next slot. */
function nextText(wf: Workflow): string {
  if (!wf.nextParameter) return '';
  return wf.nextDue ? `next ${wf.nextParameter} at ${formatTime(wf.nextDue)}` : `next ${wf.nextParameter}`;
}

/** The line `weft workflow apply` prints per workflow: `workflow ID applied (enabled, next P at T)`. */
export function appliedLine(wf: Workflow): string {
  const next = nextText(wf);
  return `workflow ${wf.id} applied (${wf.enabled ? 'enabled' : 'disabled'}${next ? `, ${next}` : ''})`;
}

/** The SCHEDULE cell: the schedule as written, with its time zone unless that is UTC. */
export function scheduleText(document: Workflow['document']): string {
  const schedule: unknown = document?.['schedule'];
  const timezone: unknown = document?.['timezone'];
  const text = typeof schedule === 'string' ? schedule : '-';
  return typeof timezone === 'string' && timezone !== '' && timezone !== 'UTC' ? `${text} (${timezone})` : text;
}

/** The table of `weft workflow ls`, header included. */
export function workflowTable(workflows: readonly Workflow[]): string[] {
  const rows = workflows.map((wf) => [
    wf.id,
    wf.enabled ? 'yes' : 'no',
    scheduleText(wf.document),
    wf.nextParameter || '-',
    formatTime(wf.nextDue),
    String(wf.activeInstances),
  ]);
  return formatTable([['ID', 'ENABLED', 'SCHEDULE', 'NEXT PARAMETER', 'NEXT DUE', 'ACTIVE'], ...rows]);
}

/**
 * The text of `weft workflow get`: the document as YAML, then the state as
 * YAML comments, so that the output can be edited and applied back.
 */
export function workflowText(wf: Workflow): string {
  const state = [
    `enabled:          ${wf.enabled ? 'yes' : 'no'}`,
    `next parameter:   ${wf.nextParameter || '-'}`,
    `next due:         ${formatTime(wf.nextDue)}`,
    `active instances: ${wf.activeInstances}`,
  ];
  if (wf.modified) state.push(`modified:         ${formatTime(wf.modified)}`);
  return stringify(wf.document ?? { id: wf.id }) + state.map((line) => `# ${line}\n`).join('');
}

/** `weft workflow apply -f FILE`: applies every document in the file, in order. */
export async function workflowApply(ctx: Context): Promise<number> {
  const file = required(ctx.flags.file, 'file');
  const { documents, names, many } = await loadWorkflowDocuments(file);
  const applied: Workflow[] = [];
  for (const [i, document] of documents.entries()) {
    let wf: Workflow;
    try {
      wf = await unary<Workflow>((cb) => ctx.clients.workflows.apply({ document }, cb));
    } catch (err) {
      throw rejectedAs(names[i] ?? file, err);
    }
    for (const w of wf.warnings) warn(ctx, `workflow "${wf.id}": ${w}`);
    applied.push(wf);
    // Report as we go in text mode, so a failure halfway shows what was applied.
    if (ctx.output === 'text') printLines(ctx, [appliedLine(wf)]);
  }
  if (ctx.output === 'json') {
    const docs = applied.map((wf) => Workflow.toJSON(wf));
    ctx.io.stdout.write(formatJson(many ? docs : docs[0]));
  }
  return 0;
}

/** `weft workflow get ID`. */
export async function workflowGet(ctx: Context): Promise<number> {
  const wf = await unary<Workflow>((cb) => ctx.clients.workflows.get({ id: arg(ctx, 0) }, cb));
  ctx.io.stdout.write(ctx.output === 'json' ? formatJson(Workflow.toJSON(wf)) : workflowText(wf));
  return 0;
}

/** `weft workflow ls`. */
export async function workflowList(ctx: Context): Promise<number> {
  const res = await unary<ListWorkflowsResponse>((cb) => ctx.clients.workflows.list({}, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(ListWorkflowsResponse.toJSON(res)));
    return 0;
  }
  if (res.workflows.length === 0) {
    noneFound(ctx, 'workflows');
    return 0;
  }
  printLines(ctx, workflowTable(res.workflows));
  return 0;
}

/** `weft workflow delete ID`. */
export async function workflowDelete(ctx: Context): Promise<number> {
  const wf = await unary<Workflow>((cb) => ctx.clients.workflows.delete({ id: arg(ctx, 0) }, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(Workflow.toJSON(wf)));
  } else {
    // The count was taken just before the server halted them.
    const n = wf.activeInstances;
    const halted = n > 0 ? `; ${n} active instance${n === 1 ? '' : 's'} halted` : '';
    printLines(ctx, [`workflow ${wf.id} deleted${halted}`]);
  }
  return 0;
}

async function setEnabled(ctx: Context, enabled: boolean): Promise<number> {
  const wf = await unary<Workflow>((cb) => ctx.clients.workflows.setEnabled({ id: arg(ctx, 0), enabled }, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(Workflow.toJSON(wf)));
  } else if (enabled) {
    const next = nextText(wf);
    printLines(ctx, [`workflow ${wf.id} enabled${next ? ` (${next})` : ''}`]);
  } else {
    printLines(ctx, [`workflow ${wf.id} disabled`]);
  }
  return 0;
}

/** `weft workflow enable ID`. */
export function workflowEnable(ctx: Context): Promise<number> {
  return setEnabled(ctx, true);
}

/** `weft workflow disable ID`. */
export function workflowDisable(ctx: Context): Promise<number> {
  return setEnabled(ctx, false);
}

/** `weft workflow trigger ID PARAMETER [--env K=V ...] [--allow-future]`: prints the new instance. */
export async function workflowTrigger(ctx: Context): Promise<number> {
  const env = parseEnv(ctx.flags.env);
  const request = {
    workflowId: arg(ctx, 0),
    parameter: arg(ctx, 1),
    env,
    allowFuture: ctx.flags['allow-future'] === true,
  };
  const inst = await unary<Instance>((cb) => ctx.clients.workflows.trigger(request, cb));
  printInstance(ctx, inst);
  return 0;
}
