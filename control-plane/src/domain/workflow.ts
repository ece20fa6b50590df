/**
 * Validation of Styx-style workflow documents (already parsed from YAML or
 * JSON) into a normalised {@link WorkflowSpec}. Pure: no I/O, no clock.
 *
 * Styx fields keep their Styx meaning (`id`, `schedule`, `offset`,
 * `docker_image`, `docker_args`, `env`, `running_timeout`, `retry_condition`,
 * `resources`, `commit_sha`); weft adds `timezone`, `enabled`, `catch_up`,
 * `spread` and the runnables `command`, `algorithm` and `pipeline`.
 *
 * `retry_condition` is CEL (Styx used SpEL, with `#` before variables) over
 * `exitCode` (int or null), `tries`, `consecutiveFailures` (int) and
 * `triggerType` (`natural`, `adhoc` or `backfill`). It is compiled and
 * type-checked once, here; {@link retryAllowed} evaluates it.
 * @packageDocumentation
 */
import { Environment, type ParseResult } from '@marcbachmann/cel-js';
import { invalid } from '@weft/common';
import { Duration } from 'luxon';
import { parseSchedule, type Schedule } from './schedule.js';

/** How missed natural slots are handled after downtime or re-enabling. */
export const CATCH_UP_MODES = ['all', 'latest', 'none'] as const;
export type CatchUp = (typeof CATCH_UP_MODES)[number];

/** What an instance runs: a weft runnable, or only a Docker image (needs a cluster backend). */
export type Runnable = 'command' | 'algorithm' | 'pipeline' | 'image';

/** Trigger types exposed to `retry_condition` (Styx's `TriggerUtil` names). */
export const TRIGGER_TYPES = ['natural', 'adhoc', 'backfill'] as const;
export type TriggerType = (typeof TRIGGER_TYPES)[number];

/** Longest `id`, resource name, `commit_sha` and `retry_condition` (Styx's limit). */
export const MAX_NAME_LENGTH = 256;
/** Shortest `running_timeout` (Styx: 1 minute). */
export const MIN_RUNNING_TIMEOUT_MS = 60_000;

/** A validated workflow. Parameter placeholders (`{}`) are kept; see {@link substituteParameter}. */
export interface WorkflowSpec {
  readonly id: string;
  /** Parsed `schedule` with `offset` and `timezone` applied. */
  readonly schedule: Schedule;
  /** `docker_image`, with `:latest` appended when it has neither tag nor digest (as Styx does). */
  readonly dockerImage: string | undefined;
  readonly dockerArgs: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** `running_timeout` in ms; undefined = the scheduler's default. */
  readonly runningTimeoutMs: number | undefined;
  /** Source of `retry_condition`; evaluate it with {@link retryAllowed}. */
  readonly retryCondition: string | undefined;
  readonly resources: readonly string[];
  readonly commitSha: string | undefined;
  /** Default false: new workflows start disabled, as in Styx. */
  readonly enabled: boolean;
  /** Default `all`. */
  readonly catchUp: CatchUp;
  /** Maximum start jitter (`spread`) in ms; 0 = none (default). */
  readonly spreadMs: number;
  /** `command`, `algorithm` or `pipeline` if one is given, else `image`. */
  readonly runnable: Runnable;
  readonly command: readonly string[] | undefined;
  readonly algorithm: { readonly name: string; readonly input: readonly unknown[] } | undefined;
  readonly pipeline: { readonly name: string; readonly flowInput: Readonly<Record<string, unknown>> } | undefined;
  /** One message per unknown field (ignored, not an error). */
  readonly warnings: readonly string[];
}

/** Variables of `retry_condition`. */
export interface RetryVars {
  /** Exit code of the run that just ended; null when there is none. */
  exitCode: number | null;
  tries: number;
  consecutiveFailures: number;
  triggerType: TriggerType;
}

export interface ParseWorkflowOptions {
  /** Whether a resource exists; when given, unknown ones are rejected (`resources[i]`). */
  knownResource?: (name: string) => boolean;
}

const KNOWN_FIELDS = new Set([
  'id',
  'schedule',
  'offset',
  'timezone',
  'docker_image',
  'docker_args',
  'env',
  'running_timeout',
  'retry_condition',
  'resources',
  'commit_sha',
  'enabled',
  'catch_up',
  'spread',
  'command',
  'algorithm',
  'pipeline',
]);

const NAME_RE = /^[A-Za-z0-9._-]+$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

let celEnv: Environment | undefined;
const compiled = new WeakMap<WorkflowSpec, ParseResult>();

function cel(): Environment {
  celEnv ??= new Environment()
    .registerVariable('exitCode', 'dyn')
    .registerVariable('tries', 'int')
    .registerVariable('consecutiveFailures', 'int')
    .registerVariable('triggerType', 'string');
  return celEnv;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function compileCondition(source: string): ParseResult {
  let parsed: ParseResult;
  try {
    parsed = cel().parse(source);
  } catch (e) {
    throw invalid('retry_condition', errorMessage(e));
  }
  const checked = parsed.check();
  if (!checked.valid) {
    throw invalid('retry_condition', checked.error?.message ?? 'does not type-check');
  }
  // `dyn` (e.g. a bare `exitCode`) cannot be decided here; evaluation then requires a bool.
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    throw invalid('retry_condition', `must be a bool expression, but has type ${checked.type ?? 'unknown'}`);
  }
  return parsed;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** null (an empty YAML value) counts as absent. */
function present(v: unknown): boolean {
  return v !== undefined && v !== null;
}

function str(field: string, v: unknown): string {
  if (typeof v !== 'string') throw invalid(field, `must be a string, got ${describeType(v)}`);
  return v;
}

function optStr(field: string, v: unknown): string | undefined {
  return present(v) ? str(field, v) : undefined;
}

function nonEmpty(field: string, v: unknown): string {
  const s = str(field, v);
  if (s.trim() === '') throw invalid(field, 'must not be empty');
  return s;
}

function name(field: string, v: unknown): string {
  const s = nonEmpty(field, v);
  if (s.length > MAX_NAME_LENGTH) throw invalid(field, `must be at most ${MAX_NAME_LENGTH} characters`);
  if (!NAME_RE.test(s)) throw invalid(field, `'${s}' may only contain letters, digits, '-', '_' and '.'`);
  return s;
}

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

function stringArray(field: string, v: unknown): string[] {
  if (!Array.isArray(v)) throw invalid(field, `must be an array of strings, got ${describeType(v)}`);
  return v.map((e, i) => str(`${field}[${i}]`, e));
}

function duration(field: string, v: unknown): number {
  const text = str(field, v).trim();
  // luxon accepts a bare "P"/"PT" as zero; ISO-8601 requires at least one component.
  const d = /^-?PT?$/i.test(text) ? undefined : Duration.fromISO(text);
  if (d === undefined || !d.isValid) {
    throw invalid(field, `'${str(field, v)}' is not an ISO-8601 duration (e.g. PT30M, PT2H, P1D)`);
  }
  const ms = d.toMillis();
  if (ms < 0) throw invalid(field, `'${text}' must not be negative`);
  return ms;
}

function withDefaultTag(image: string): string {
  if (image.includes('@')) return image;
  const last = image.slice(image.lastIndexOf('/') + 1);
  return last.includes(':') ? image : `${image}:latest`;
}

function object(field: string, v: unknown, known: readonly string[], warnings: string[]): Record<string, unknown> {
  if (!isPlainObject(v)) throw invalid(field, `must be an object, got ${describeType(v)}`);
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) warnings.push(`unknown field '${field}.${k}' ignored`);
  }
  return v;
}

/**
 * Validates a workflow document and returns the normalised spec.
 * Unknown fields do not fail; they are listed in `warnings`.
 * @throws WeftError INVALID_ARGUMENT naming the offending field (`schedule`, `resources[2]`, …).
 */
export function parseWorkflow(doc: unknown, opts: ParseWorkflowOptions = {}): WorkflowSpec {
  if (!isPlainObject(doc)) throw invalid('workflow', `must be an object, got ${describeType(doc)}`);
  const warnings: string[] = [];
  for (const k of Object.keys(doc)) {
    if (!KNOWN_FIELDS.has(k)) warnings.push(`unknown field '${k}' ignored`);
  }

  if (!present(doc.id)) throw invalid('id', 'required');
  const id = name('id', doc.id);
  if (!present(doc.schedule)) throw invalid('schedule', 'required');
  const schedule = parseSchedule(nonEmpty('schedule', doc.schedule), {
    offset: optStr('offset', doc.offset),
    timezone: optStr('timezone', doc.timezone),
  });

  const dockerImage = present(doc.docker_image)
    ? withDefaultTag(nonEmpty('docker_image', doc.docker_image).trim())
    : undefined;
  const dockerArgs = present(doc.docker_args) ? stringArray('docker_args', doc.docker_args) : [];

  const env: Record<string, string> = {};
  if (present(doc.env)) {
    if (!isPlainObject(doc.env)) throw invalid('env', `must be a map of strings, got ${describeType(doc.env)}`);
    for (const [k, v] of Object.entries(doc.env)) {
      if (!ENV_NAME_RE.test(k)) throw invalid(`env.${k}`, 'is not a valid environment variable name');
      env[k] = str(`env.${k}`, v);
    }
  }

  let runningTimeoutMs: number | undefined;
  if (present(doc.running_timeout)) {
    runningTimeoutMs = duration('running_timeout', doc.running_timeout);
    if (runningTimeoutMs < MIN_RUNNING_TIMEOUT_MS) throw invalid('running_timeout', 'must be at least PT1M');
  }

  let retryCondition: string | undefined;
  let condition: ParseResult | undefined;
  if (present(doc.retry_condition)) {
    retryCondition = nonEmpty('retry_condition', doc.retry_condition);
    if (retryCondition.length > MAX_NAME_LENGTH) {
      throw invalid('retry_condition', `must be at most ${MAX_NAME_LENGTH} characters`);
    }
    condition = compileCondition(retryCondition);
  }

  const resources = present(doc.resources) ? stringArray('resources', doc.resources) : [];
  resources.forEach((r, i) => {
    const field = `resources[${i}]`;
    name(field, r);
    if (resources.indexOf(r) !== i) throw invalid(field, `duplicate resource '${r}'`);
    if (opts.knownResource !== undefined && !opts.knownResource(r)) throw invalid(field, `unknown resource '${r}'`);
  });

  const commitSha = optStr('commit_sha', doc.commit_sha);
  if (commitSha !== undefined && commitSha.length > MAX_NAME_LENGTH) {
    throw invalid('commit_sha', `must be at most ${MAX_NAME_LENGTH} characters`);
  }

  let enabled = false;
  if (present(doc.enabled)) {
    if (typeof doc.enabled !== 'boolean')
      throw invalid('enabled', `must be a boolean, got ${describeType(doc.enabled)}`);
    enabled = doc.enabled;
  }

  let catchUp: CatchUp = 'all';
  if (present(doc.catch_up)) {
    const c = str('catch_up', doc.catch_up);
    if (!(CATCH_UP_MODES as readonly string[]).includes(c)) {
      throw invalid('catch_up', `'${c}' is not one of ${CATCH_UP_MODES.join(', ')}`);
    }
    catchUp = c as CatchUp;
  }

  const spreadMs = present(doc.spread) ? duration('spread', doc.spread) : 0;

  const given = (['command', 'algorithm', 'pipeline'] as const).filter((f) => present(doc[f]));
  if (given.length > 1) {
    throw invalid(
      given[1] ?? 'command',
      `only one of command, algorithm, pipeline may be given (got ${given.join(', ')})`,
    );
  }
  if (given.length === 0 && dockerImage === undefined) {
    throw invalid('command', 'one of command, algorithm, pipeline or docker_image is required');
  }

  let command: string[] | undefined;
  if (present(doc.command)) {
    command = stringArray('command', doc.command);
    if (command.length === 0) throw invalid('command', 'must not be empty');
  }

  let algorithm: WorkflowSpec['algorithm'];
  if (present(doc.algorithm)) {
    const a = object('algorithm', doc.algorithm, ['name', 'input'], warnings);
    const input = a.input ?? [];
    if (!Array.isArray(input)) throw invalid('algorithm.input', `must be an array, got ${describeType(input)}`);
    algorithm = { name: name('algorithm.name', a.name), input: structuredClone(input) as unknown[] };
  }

  let pipeline: WorkflowSpec['pipeline'];
  if (present(doc.pipeline)) {
    const p = object('pipeline', doc.pipeline, ['name', 'flowInput'], warnings);
    const flowInput = p.flowInput ?? {};
    if (!isPlainObject(flowInput)) {
      throw invalid('pipeline.flowInput', `must be an object, got ${describeType(flowInput)}`);
    }
    pipeline = { name: name('pipeline.name', p.name), flowInput: structuredClone(flowInput) };
  }

  const spec: WorkflowSpec = {
    id,
    schedule,
    dockerImage,
    dockerArgs,
    env,
    runningTimeoutMs,
    retryCondition,
    resources,
    commitSha,
    enabled,
    catchUp,
    spreadMs,
    runnable: given[0] ?? 'image',
    command,
    algorithm,
    pipeline,
    warnings,
  };
  if (condition !== undefined) compiled.set(spec, condition);
  return spec;
}

/**
 * Replaces the partition parameter placeholder, deeply, in arrays and plain
 * objects (values only, never keys). As Styx does for `docker_args`, only a
 * string that is exactly `{}` is replaced: `--date={}` is left as it is.
 * Returns a copy; `value` is not modified.
 */
export function substituteParameter<T>(value: T, parameter: string): T {
  const walk = (v: unknown): unknown => {
    if (v === '{}') return parameter;
    if (Array.isArray(v)) return v.map(walk);
    if (isPlainObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value) as T;
}

function int(field: string, n: number): bigint {
  if (!Number.isSafeInteger(n)) throw invalid(field, `must be an integer, got ${n}`);
  return BigInt(n);
}

/**
 * Whether `retry_condition` allows another try (true when there is none).
 * Like Styx, an evaluation error or a non-bool result counts as "not met",
 * so the instance stops retrying. The condition can only stop retries
 * earlier than the retry budget (`nextRetry` in schedule.ts).
 * @throws WeftError INVALID_ARGUMENT if a variable is not an integer or `triggerType` is unknown.
 */
export function retryAllowed(spec: WorkflowSpec, vars: RetryVars): boolean {
  if (spec.retryCondition === undefined) return true;
  let condition = compiled.get(spec);
  if (condition === undefined) {
    // A copy of the spec ({...spec}) loses the hidden entry: compile from the source.
    condition = compileCondition(spec.retryCondition);
    compiled.set(spec, condition);
  }
  if (!(TRIGGER_TYPES as readonly string[]).includes(vars.triggerType)) {
    throw invalid('triggerType', `'${vars.triggerType}' is not one of ${TRIGGER_TYPES.join(', ')}`);
  }
  const context = {
    exitCode: vars.exitCode === null ? null : int('exitCode', vars.exitCode),
    tries: int('tries', vars.tries),
    consecutiveFailures: int('consecutiveFailures', vars.consecutiveFailures),
    triggerType: vars.triggerType,
  };
  try {
    return condition(context) === true;
  } catch {
    return false;
  }
}
