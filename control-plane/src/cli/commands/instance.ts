import { Instance, InstanceState, ListInstancesResponse, type Execution } from '@weft/proto';
import { parseDuration } from '../args.js';
import { unary } from '../client.js';
import { arg, noneFound, printLines, type Context } from '../context.js';
import {
  formatJson,
  formatTable,
  formatTime,
  instanceStateName,
  oneLine,
  parseInstanceStates,
  withStateNames,
} from '../output.js';

/** An exit code as printed, `-` when the run had none (it never started, or timed out). */
function exitText(code: number | undefined): string {
  return code === undefined ? '-' : String(code);
}

/** The text of `weft instance show` without its executions, also printed after trigger, halt and retry. */
export function instanceLines(inst: Instance): string[] {
  const lines = [
    `workflow:    ${inst.workflowId}`,
    `parameter:   ${inst.parameter}`,
    `state:       ${instanceStateName(inst.state)}`,
    `trigger:     ${inst.triggerId}${inst.triggerType ? ` (${inst.triggerType})` : ''}`,
    `tries:       ${inst.tries}`,
  ];
  if (inst.lastExitCode !== undefined) lines.push(`last exit:   ${inst.lastExitCode}`);
  // The retry budget is what ends a failing instance; show how much is spent once any is.
  if (inst.retryCost > 0) lines.push(`retry cost:  ${inst.retryCost}`);
  if (inst.message) lines.push(`message:     ${oneLine(inst.message)}`);
  if (inst.executionId) lines.push(`execution:   ${inst.executionId}`);
  // A queued instance waits for its next try only when that was put off (a retry delay, backoff).
  const waits = inst.nextAttempt && (!inst.updated || inst.nextAttempt.getTime() > inst.updated.getTime());
  if (inst.state === InstanceState.INSTANCE_STATE_QUEUED && waits) {
    lines.push(`next try:    ${formatTime(inst.nextAttempt)}`);
  }
  if (inst.created) lines.push(`created:     ${formatTime(inst.created)}`);
  if (inst.updated) lines.push(`updated:     ${formatTime(inst.updated)}`);
  return lines;
}

/** The table of `weft instance ls`, header included. */
export function instanceTable(instances: readonly Instance[]): string[] {
  const rows = instances.map((inst) => [
    inst.workflowId,
    inst.parameter,
    instanceStateName(inst.state),
    inst.triggerId || '-',
    String(inst.tries),
    exitText(inst.lastExitCode),
    oneLine(inst.message),
  ]);
  return formatTable([['WORKFLOW', 'PARAMETER', 'STATE', 'TRIGGER', 'TRIES', 'LAST EXIT', 'MESSAGE'], ...rows]);
}

/** The executions table of `weft instance show`, header included. */
export function executionTable(executions: readonly Execution[]): string[] {
  const rows = executions.map((e) => [
    e.executionId,
    String(e.try),
    formatTime(e.started),
    formatTime(e.ended),
    exitText(e.exitCode),
    e.log || '-',
    oneLine(e.error),
  ]);
  return formatTable([['EXECUTION', 'TRY', 'STARTED', 'ENDED', 'EXIT', 'LOG', 'ERROR'], ...rows]);
}

/** Prints one instance: its JSON, or its lines. */
export function printInstance(ctx: Context, inst: Instance): void {
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(withStateNames(Instance.toJSON(inst))));
  else printLines(ctx, instanceLines(inst));
}

/** `weft instance ls [--workflow ID] [--state STATE[,STATE...]] [--trigger ID]`. */
export async function instanceList(ctx: Context): Promise<number> {
  const states = ctx.flags.state === undefined ? [] : parseInstanceStates(ctx.flags.state);
  const res = await unary<ListInstancesResponse>((cb) =>
    ctx.clients.instances.list(
      { workflowId: ctx.flags.workflow ?? '', states, triggerId: ctx.flags.trigger ?? '', limit: 0 },
      cb,
    ),
  );
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(withStateNames(ListInstancesResponse.toJSON(res))));
    return 0;
  }
  if (res.instances.length === 0) {
    noneFound(ctx, 'instances');
    return 0;
  }
  printLines(ctx, instanceTable(res.instances));
  return 0;
}

/** `weft instance show WORKFLOW PARAMETER`: the instance and its executions. */
export async function instanceShow(ctx: Context): Promise<number> {
  const ref = { workflowId: arg(ctx, 0), parameter: arg(ctx, 1) };
  const inst = await unary<Instance>((cb) => ctx.clients.instances.get(ref, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(withStateNames(Instance.toJSON(inst))));
    return 0;
  }
  const lines = instanceLines(inst);
  if (inst.executions.length > 0) {
    lines.push('executions:', ...executionTable(inst.executions).map((line) => `  ${line}`));
  }
  printLines(ctx, lines);
  return 0;
}

/** `weft instance halt WORKFLOW PARAMETER`. */
export async function instanceHalt(ctx: Context): Promise<number> {
  const ref = { workflowId: arg(ctx, 0), parameter: arg(ctx, 1) };
  const inst = await unary<Instance>((cb) => ctx.clients.instances.halt(ref, cb));
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(withStateNames(Instance.toJSON(inst))));
  else printLines(ctx, [`instance ${inst.workflowId} ${inst.parameter} halted`]);
  return 0;
}

/** `weft instance retry WORKFLOW PARAMETER [--delay DURATION]`. */
export async function instanceRetry(ctx: Context): Promise<number> {
  const delayMs = parseDuration('delay', ctx.flags.delay) ?? 0;
  const workflowId = arg(ctx, 0);
  const parameter = arg(ctx, 1);
  const inst = await unary<Instance>((cb) => ctx.clients.instances.retry({ workflowId, parameter, delayMs }, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(withStateNames(Instance.toJSON(inst))));
  } else {
    const when = delayMs > 0 && inst.nextAttempt ? ` at ${formatTime(inst.nextAttempt)}` : '';
    printLines(ctx, [`instance ${inst.workflowId} ${inst.parameter} will be retried${when}`]);
  }
  return 0;
}
