import { BlobRef, decode } from '@weft/common';
import {
  InstanceState,
  JobState,
  JobStatus,
  NodeState,
  type JobResult,
  type LeafResult,
  type NodeStatus,
  type Payload,
} from '@weft/proto';
import { UsageError } from './errors.js';

/** A value JSON.stringify prints as it is. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * Converts a decoded msgpack value into plain JSON. Binary data becomes
 * `{"$base64": "..."}`, a bigint a number when it is a safe integer and a
 * decimal string otherwise (a JSON number would lose digits in most readers),
 * a reference into blob storage `{"$blobRef": {"key", "path"}}`.
 */
/** Task errors listed by `exec status` before it summarises the rest. */
const MAX_ERRORS_SHOWN = 20;
/** Of those, how many show their stack or traceback. */
const MAX_STACKS_SHOWN = 3;
const MAX_STACK_LINES = 15;

/** A failure's stack, indented, without the line that repeats "Type: message". */
function stackLines(stack: string, what: string): string[] {
  const lines = stack
    .replace(/\s+$/, '')
    .split('\n')
    .filter((l) => l.trim() !== '' && l.trim() !== what);
  const shown = lines.slice(0, MAX_STACK_LINES).map((l) => `      ${l.trimEnd()}`);
  if (lines.length > MAX_STACK_LINES) shown.push(`      … ${lines.length - MAX_STACK_LINES} more lines`);
  return shown;
}

export function toJson(value: unknown): Json {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      // JSON has no NaN or Infinity; JSON.stringify would print null anyway.
      return Number.isFinite(value) ? value : null;
    case 'bigint':
      return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(value)
        : value.toString();
    case 'undefined':
    case 'function':
    case 'symbol':
      return null;
    default:
      break;
  }
  if (value === null) return null;
  if (value instanceof Uint8Array)
    return { $base64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  if (Array.isArray(value)) return value.map(toJson);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (value instanceof BlobRef) return { $blobRef: { key: value.key, path: [...value.path] } };
  if (value instanceof Map) {
    const out: Record<string, Json> = {};
    for (const [k, v] of value as Map<unknown, unknown>) out[String(k)] = toJson(v);
    return out;
  }
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(value as object)) out[k] = toJson(v);
  return out;
}

/** The lowercase name of a job state as the CLI prints it, e.g. `completed`. */
export function jobStateName(state: JobState): string {
  switch (state) {
    case JobState.JOB_STATE_PENDING:
      return 'pending';
    case JobState.JOB_STATE_ACTIVE:
      return 'active';
    case JobState.JOB_STATE_PAUSED:
      return 'paused';
    case JobState.JOB_STATE_COMPLETED:
      return 'completed';
    case JobState.JOB_STATE_FAILED:
      return 'failed';
    case JobState.JOB_STATE_STOPPED:
      return 'stopped';
    default:
      return 'unknown';
  }
}

/** Parses a state name given on the command line (`completed`, `JOB_STATE_COMPLETED`). */
export function parseJobState(text: string): JobState | undefined {
  const name = text
    .trim()
    .toLowerCase()
    .replace(/^job_state_/, '');
  const states = [
    JobState.JOB_STATE_PENDING,
    JobState.JOB_STATE_ACTIVE,
    JobState.JOB_STATE_PAUSED,
    JobState.JOB_STATE_COMPLETED,
    JobState.JOB_STATE_FAILED,
    JobState.JOB_STATE_STOPPED,
  ];
  return states.find((s) => jobStateName(s) === name);
}

/** True once a job can no longer change. */
export function isFinalState(state: JobState): boolean {
  return (
    state === JobState.JOB_STATE_COMPLETED ||
    state === JobState.JOB_STATE_FAILED ||
    state === JobState.JOB_STATE_STOPPED
  );
}

/** The lowercase name of a node state, e.g. `succeeded`. */
export function nodeStateName(state: NodeState): string {
  switch (state) {
    case NodeState.NODE_STATE_PENDING:
      return 'pending';
    case NodeState.NODE_STATE_ACTIVE:
      return 'active';
    case NodeState.NODE_STATE_SUCCEEDED:
      return 'succeeded';
    case NodeState.NODE_STATE_FAILED:
      return 'failed';
    case NodeState.NODE_STATE_SKIPPED:
      return 'skipped';
    case NodeState.NODE_STATE_STOPPED:
      return 'stopped';
    default:
      return 'unknown';
  }
}

/** Instance states in the order of their lifecycle, as the CLI names them. */
const INSTANCE_STATE_NAMES: readonly [InstanceState, string][] = [
  [InstanceState.INSTANCE_STATE_QUEUED, 'queued'],
  [InstanceState.INSTANCE_STATE_PREPARE, 'prepare'],
  [InstanceState.INSTANCE_STATE_SUBMITTING, 'submitting'],
  [InstanceState.INSTANCE_STATE_SUBMITTED, 'submitted'],
  [InstanceState.INSTANCE_STATE_RUNNING, 'running'],
  [InstanceState.INSTANCE_STATE_TERMINATED, 'terminated'],
  [InstanceState.INSTANCE_STATE_FAILED, 'failed'],
  [InstanceState.INSTANCE_STATE_DONE, 'done'],
  [InstanceState.INSTANCE_STATE_ERROR, 'error'],
];

/** The lowercase name of a workflow instance state (Styx's), e.g. `running`. */
export function instanceStateName(state: InstanceState): string {
  return INSTANCE_STATE_NAMES.find(([s]) => s === state)?.[1] ?? 'unknown';
}

/**
 * A schedule message's JSON form as the CLI prints it: instance states by
 * their lower-case names (`"running"`, as job states are printed), and
 * `null` for a backfill slot not triggered yet.
 */
export function withStateNames(json: unknown): unknown {
  if (typeof json === 'string' && json.startsWith('INSTANCE_STATE_')) {
    return json === 'INSTANCE_STATE_UNSPECIFIED' ? null : json.slice('INSTANCE_STATE_'.length).toLowerCase();
  }
  if (Array.isArray(json)) return json.map(withStateNames);
  if (json !== null && typeof json === 'object') {
    return Object.fromEntries(Object.entries(json).map(([k, v]) => [k, withStateNames(v)]));
  }
  return json;
}

/**
 * Parses the instance states given to `--state`: one name or several
 * separated by commas (`failed,error`), as printed or as in the contract
 * (`INSTANCE_STATE_FAILED`). Throws a UsageError naming the valid states.
 */
export function parseInstanceStates(text: string): InstanceState[] {
  const states: InstanceState[] = [];
  for (const word of text.split(',')) {
    const name = word
      .trim()
      .toLowerCase()
      .replace(/^instance_state_/, '');
    const found = INSTANCE_STATE_NAMES.find(([, n]) => n === name)?.[0];
    if (found === undefined) {
      const all = INSTANCE_STATE_NAMES.map(([, n]) => n).join(', ');
      throw new UsageError(`unknown instance state "${word.trim()}"; use ${all} (several separated by commas)`);
    }
    if (!states.includes(found)) states.push(found);
  }
  return states;
}

/** What a payload holds, ready for printing: a decoded value, or where the value is stored. */
export type PayloadView =
  | { kind: 'value'; value: unknown }
  | { kind: 'ref'; key: string; size: number }
  | { kind: 'undecodable'; size: number; error: string }
  | { kind: 'none' };

/** Decodes a payload's inline msgpack; references into blob storage are not fetched. */
export function viewPayload(payload: Payload | undefined): PayloadView {
  const kind = payload?.kind;
  if (!kind) return { kind: 'none' };
  if (kind.$case === 'ref') return { kind: 'ref', key: kind.value.key, size: kind.value.size };
  try {
    return { kind: 'value', value: decode(kind.value) };
  } catch (err) {
    return { kind: 'undecodable', size: kind.value.length, error: err instanceof Error ? err.message : String(err) };
  }
}

/** `Reduce` or, for one item of a batch node, `Multiply#2`. */
export function leafLabel(leaf: { nodeName: string; batchIndex: number }): string {
  return leaf.batchIndex >= 0 ? `${leaf.nodeName}#${leaf.batchIndex}` : leaf.nodeName;
}

/** One text line per leaf result, e.g. `Reduce: 30`. */
export function resultLines(results: readonly LeafResult[]): string[] {
  return results.map((leaf) => {
    const view = viewPayload(leaf.result);
    let text: string;
    switch (view.kind) {
      case 'value':
        text = JSON.stringify(toJson(view.value));
        break;
      case 'ref':
        text = `<stored result, ${view.size} bytes, key ${view.key}>`;
        break;
      case 'undecodable':
        text = `<undecodable result, ${view.size} bytes: ${view.error}>`;
        break;
      case 'none':
        text = 'null';
        break;
    }
    return `${leafLabel(leaf)}: ${text}`;
  });
}

function leafJson(leaf: LeafResult): Json {
  const view = viewPayload(leaf.result);
  let result: Json;
  switch (view.kind) {
    case 'value':
      result = toJson(view.value);
      break;
    case 'ref':
      result = { $ref: { key: view.key, size: view.size } };
      break;
    case 'undecodable':
      result = { $undecodable: { size: view.size, error: view.error } };
      break;
    case 'none':
      result = null;
      break;
  }
  const out: { [key: string]: Json } = { nodeName: leaf.nodeName, algorithmName: leaf.algorithmName };
  if (leaf.batchIndex >= 0) out['batchIndex'] = leaf.batchIndex;
  out['result'] = result;
  return out;
}

/**
 * The `-o json` document for a job's result. `result` is null while the job
 * has not ended, and for a failed or stopped job that produced no results.
 */
export function jobResultJson(result: JobResult, jobId: string): Json {
  const ended = result.state === JobState.JOB_STATE_COMPLETED || result.results.length > 0;
  return {
    jobId: result.jobId || jobId,
    status: jobStateName(result.state),
    result: ended ? result.results.map(leafJson) : null,
    error: result.error || null,
  };
}

/**
 * The `-o json` document for a job's status: the message's JSON form, with the
 * state named as everywhere else in the CLI (`paused`, not `JOB_STATE_PAUSED`).
 */
export function jobStatusJson(status: JobStatus): Json {
  const doc = JobStatus.toJSON(status) as { [key: string]: Json };
  doc['state'] = jobStateName(status.state);
  return doc;
}

/** Prints a JSON document the way every `-o json` output looks. */
export function formatJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

/** Left-aligned columns separated by two spaces, no trailing blanks. */
export function formatTable(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

/** Text for one table cell or line: line breaks and runs of blanks become one space. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** A timestamp to the second, in UTC: `2024-05-01 12:00:03`. */
export function formatTime(date: Date | undefined): string {
  if (!date || Number.isNaN(date.getTime())) return '-';
  return date
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, '');
}

/** A progress percentage as printed: whole percent, rounded down so 100% means done. */
export function formatPercent(percent: number): string {
  const p = Number.isFinite(percent) ? Math.min(100, Math.max(0, percent)) : 0;
  return `${Math.floor(p)}%`;
}

/** Task counts of a node, e.g. `2/5`, with `?` while the total is unknown. */
export function nodeCounts(node: NodeStatus): string {
  return `${node.succeeded}/${node.total > 0 ? node.total : '?'}`;
}

function nodeDetail(node: NodeStatus): string {
  const parts: string[] = [];
  if (node.active > 0) parts.push(`${node.active} active`);
  if (node.pending > 0) parts.push(`${node.pending} pending`);
  if (node.failed > 0) parts.push(`${node.failed} failed`);
  if (node.skipped > 0) parts.push(`${node.skipped} skipped`);
  if (node.batch) parts.push('batch');
  return parts.join(', ');
}

/** The text of `weft exec status`. */
export function statusLines(status: JobStatus): string[] {
  const lines = [
    `job:       ${status.jobId}`,
    `pipeline:  ${status.pipelineName}`,
    `state:     ${jobStateName(status.state)}`,
    `progress:  ${formatPercent(status.progress)}`,
  ];
  if (status.started) lines.push(`started:   ${formatTime(status.started)}`);
  if (status.ended) lines.push(`ended:     ${formatTime(status.ended)}`);
  if (status.parentJobId) lines.push(`parent:    ${status.parentJobId}`);
  if (status.childJobIds.length > 0) lines.push(`children:  ${status.childJobIds.join(', ')}`);
  if (status.nodes.length > 0) {
    lines.push('nodes:');
    const rows = status.nodes.map((node) => [
      node.nodeName,
      node.algorithmName,
      nodeStateName(node.state),
      nodeCounts(node),
      nodeDetail(node),
    ]);
    lines.push(...formatTable(rows).map((line) => `  ${line}`));
    const all = status.nodes.flatMap((node) => node.errors.map((e) => ({ node, e })));
    const errors = all.slice(0, MAX_ERRORS_SHOWN).flatMap(({ node, e }, i) => {
      const failure = e.failure;
      const what = failure ? [failure.type, failure.message].filter(Boolean).join(': ') : 'failed';
      const attempts = e.attempts > 1 ? ` (after ${e.attempts} attempts)` : '';
      const line = `  ${leafLabel({ nodeName: e.nodeName || node.nodeName, batchIndex: e.batchIndex })}: ${what}${attempts}`;
      // The first few errors carry their stack or traceback: where the algorithm failed is what one needs.
      const stack = i < MAX_STACKS_SHOWN && failure?.stack ? stackLines(failure.stack, what) : [];
      return [line, ...stack];
    });
    if (all.length > MAX_ERRORS_SHOWN)
      errors.push(`  … and ${all.length - MAX_ERRORS_SHOWN} more (-o json lists them all)`);
    if (errors.length > 0) lines.push('task errors:', ...errors);
  }
  if (status.error) lines.push(`error:     ${status.error}`);
  return lines;
}
