/**
 * Pure domain logic for Styx-style scheduled workflows: schedules (cron or
 * Styx aliases) with ISO-8601 offsets and IANA time zones, partition
 * parameters, backfill ranges, the retry policy (exit codes and retry cost),
 * the workflow-instance state machine, and a deterministic start spread.
 *
 * Nothing here does I/O, starts timers or reads the clock: every instant is
 * passed in. Cron matching is croner's, durations and zones are luxon's.
 *
 * DST (non-UTC zones) follows croner:
 * - an instant in the skipped hour of a spring-forward day runs at the first
 *   valid instant after it (`30 2 * * *` in Europe/Stockholm runs at 03:00
 *   local on 2026-03-29); `@hourly` simply has no slot for the missing hour;
 * - on a fall-back day a pattern with a wildcard hour (`@hourly`) fires in
 *   both occurrences of the repeated hour, while a fixed hour fires once, in
 *   the first occurrence. Hourly parameters of such a repeated hour carry the
 *   UTC offset (`2026-10-25T02+02:00`, `2026-10-25T02+01:00`) so that
 *   parameters stay unique; every other hourly parameter is `yyyy-MM-ddTHH`.
 * @packageDocumentation
 */
import { invalid } from '@weft/common';
import { Cron } from 'croner';
import { DateTime, Duration, FixedOffsetZone, IANAZone, type Zone } from 'luxon';

/** Styx's schedule aliases (accepted with or without `@`, in any case). */
export const SCHEDULE_ALIASES = ['hourly', 'daily', 'weekly', 'monthly', 'yearly', 'annually'] as const;
export type ScheduleAlias = (typeof SCHEDULE_ALIASES)[number];

interface AliasSpec {
  cron: string;
  period: string;
  format: string;
}

const ALIASES: Record<ScheduleAlias, AliasSpec> = {
  hourly: { cron: '0 * * * *', period: 'PT1H', format: "yyyy-MM-dd'T'HH" },
  daily: { cron: '0 0 * * *', period: 'P1D', format: 'yyyy-MM-dd' },
  weekly: { cron: '0 0 * * MON', period: 'P1W', format: 'yyyy-MM-dd' },
  monthly: { cron: '0 0 1 * *', period: 'P1M', format: 'yyyy-MM' },
  yearly: { cron: '0 0 1 1 *', period: 'P1Y', format: 'yyyy' },
  annually: { cron: '0 0 1 1 *', period: 'P1Y', format: 'yyyy' },
};

/** Default time zone (Styx does all time math in UTC). */
export const DEFAULT_TIMEZONE = 'UTC';
/** Most slots {@link Schedule.slotsBetween} and {@link backfillSlots} return in one call. */
export const MAX_SLOTS = 100_000;

/** A parsed schedule. All instants are `Date`s; wall-clock rendering uses {@link Schedule.timezone}. */
export interface Schedule {
  /** The schedule string as given. */
  readonly schedule: string;
  /** The alias, normalised (no `@`, lower case), or undefined for a raw cron expression. */
  readonly alias: ScheduleAlias | undefined;
  /** The cron pattern actually matched (an alias's expansion, or the raw expression). */
  readonly cron: string;
  /** ISO-8601 period of an alias (`PT1H`, `P1D`, `P1W`, `P1M`, `P1Y`); undefined for raw cron. */
  readonly period: string | undefined;
  /** ISO-8601 offset in effect (explicit, else +1 period for aliases, `PT0S` for raw cron). */
  readonly offset: string;
  /** IANA time zone of the slots and parameters (default `UTC`). */
  readonly timezone: string;
  /** Slots `s` with `from <= s < to`, ascending. Throws `invalid('to', …)` if there are more than `limit` (default {@link MAX_SLOTS}). */
  slotsBetween(from: Date, to: Date, limit?: number): Date[];
  /** First slot strictly after `after` (exclusive: a slot equal to `after` is skipped). */
  nextSlot(after: Date): Date;
  /** True if `t` is exactly a slot (whole second, matched by the schedule). */
  isAligned(t: Date): boolean;
  /** Styx partition parameter of a slot, in the schedule's zone. Throws `invalid('slot', …)` if not aligned. */
  parameter(slot: Date): string;
  /** Inverse of {@link Schedule.parameter}; `invalid('parameter', …)` if it does not parse or is not a slot. */
  slotOfParameter(param: string): Date;
  /** When the instance for `slot` should run: `slot + offset`, calendar-correct in the schedule's zone. */
  dueAt(slot: Date): Date;
  /**
   * The earliest slot whose due time is after `now`: where natural triggering
   * starts for a new or re-enabled workflow (the slot whose data is being
   * produced now, not the next one to begin).
   */
  firstDueAfter(now: Date): Date;
}

function isAliasName(s: string): s is ScheduleAlias {
  return (SCHEDULE_ALIASES as readonly string[]).includes(s);
}

function parseOffset(offset: string): Duration {
  const text = offset.trim();
  // luxon accepts a bare "P"/"PT" as zero; ISO-8601 requires at least one component.
  const d = /^-?PT?$/i.test(text) ? undefined : Duration.fromISO(text);
  if (d === undefined || !d.isValid) {
    throw invalid('offset', `'${offset}' is not an ISO-8601 duration (e.g. PT1H, P1DT2H, -PT30M)`);
  }
  return d;
}

function describe(d: Date): string {
  return Number.isNaN(d.getTime()) ? 'Invalid Date' : d.toISOString();
}

/**
 * One croner object per (pattern, zone), shared: each holds ~80 KB of
 * precomputed tables, and ten thousand hourly workflows need only one.
 * Sharing is safe because only nextRun(date) is called on them, which
 * depends on its argument alone (they are created paused and never run).
 */
const CRONS = new Map<string, Cron>();

function sharedCron(pattern: string, timezone: string): Cron {
  const key = `${pattern}\u0000${timezone}`;
  let c = CRONS.get(key);
  if (!c) {
    c = new Cron(pattern, { timezone, paused: true });
    CRONS.set(key, c);
  }
  return c;
}

class ScheduleImpl implements Schedule {
  readonly alias: ScheduleAlias | undefined;
  readonly cron: string;
  readonly period: string | undefined;
  readonly offset: string;
  readonly timezone: string;
  private readonly zone: Zone;
  private readonly cronner: Cron;
  private readonly offsetDuration: Duration;

  constructor(
    readonly schedule: string,
    opts: { offset?: string; timezone?: string },
  ) {
    const timezone = opts.timezone ?? DEFAULT_TIMEZONE;
    if (timezone.trim() === '' || !IANAZone.isValidZone(timezone)) {
      throw invalid('timezone', `unknown IANA time zone '${timezone}' (e.g. UTC, Europe/Stockholm)`);
    }
    this.timezone = timezone;
    // A zone object, not its name: luxon re-validates a name (an Intl lookup) on every use.
    this.zone = timezone === 'UTC' ? FixedOffsetZone.utcInstance : IANAZone.create(timezone);

    const trimmed = schedule.trim();
    const name = trimmed.replace(/^@/, '').toLowerCase();
    if (isAliasName(name)) {
      this.alias = name;
      this.cron = ALIASES[name].cron;
      this.period = ALIASES[name].period;
    } else if (trimmed.startsWith('@')) {
      throw invalid('schedule', `unknown alias '${schedule}' (use one of ${SCHEDULE_ALIASES.join(', ')} or cron)`);
    } else {
      const fields = trimmed.split(/\s+/).filter((f) => f !== '');
      if (fields.length !== 5 && fields.length !== 6) {
        throw invalid(
          'schedule',
          `'${schedule}' is neither an alias (${SCHEDULE_ALIASES.join(', ')}) nor a cron expression with 5 fields (or 6 with seconds first)`,
        );
      }
      this.alias = undefined;
      this.cron = fields.join(' ');
      this.period = undefined;
    }

    try {
      this.cronner = sharedCron(this.cron, timezone);
    } catch (e) {
      throw invalid('schedule', `bad cron expression '${schedule}': ${e instanceof Error ? e.message : String(e)}`);
    }
    if (this.cronner.nextRun(new Date(0)) === null) {
      throw invalid('schedule', `cron expression '${schedule}' never fires`);
    }

    this.offsetDuration = parseOffset(opts.offset ?? this.period ?? 'PT0S');
    this.offset = opts.offset?.trim() ?? this.period ?? 'PT0S';
  }

  private next(after: Date): Date | null {
    return this.cronner.nextRun(after);
  }

  slotsBetween(from: Date, to: Date, limit: number = MAX_SLOTS): Date[] {
    if (Number.isNaN(from.getTime())) throw invalid('from', 'not a valid date');
    if (Number.isNaN(to.getTime())) throw invalid('to', 'not a valid date');
    const out: Date[] = [];
    let cursor = this.next(new Date(from.getTime() - 1));
    while (cursor !== null && cursor.getTime() < to.getTime()) {
      if (out.length >= limit) {
        throw invalid('to', `more than ${limit} slots between ${describe(from)} and ${describe(to)}`);
      }
      out.push(cursor);
      cursor = this.next(cursor);
    }
    return out;
  }

  nextSlot(after: Date): Date {
    if (Number.isNaN(after.getTime())) throw invalid('after', 'not a valid date');
    const n = this.next(after);
    if (n === null) throw invalid('schedule', `'${this.schedule}' has no slot after ${describe(after)}`);
    return n;
  }

  isAligned(t: Date): boolean {
    const ms = t.getTime();
    if (Number.isNaN(ms) || ms % 1000 !== 0) return false;
    return this.next(new Date(ms - 1))?.getTime() === ms;
  }

  private local(d: Date): DateTime {
    return DateTime.fromJSDate(d, { zone: this.zone });
  }

  parameter(slot: Date): string {
    if (!this.isAligned(slot)) {
      throw invalid('slot', `${describe(slot)} is not aligned to schedule '${this.schedule}'`);
    }
    const dt = this.local(slot);
    if (this.alias === undefined) {
      return dt.toISO({ suppressMilliseconds: true }) ?? '';
    }
    const text = dt.toFormat(ALIASES[this.alias].format);
    if (this.alias === 'hourly' && dt.getPossibleOffsets().length > 1) {
      return text + dt.toFormat('ZZ');
    }
    return text;
  }

  slotOfParameter(param: string): Date {
    let dt: DateTime;
    if (this.alias === undefined) {
      dt = DateTime.fromISO(param, { setZone: true });
    } else {
      const format = ALIASES[this.alias].format;
      dt =
        this.alias === 'hourly' && /[+-]\d\d:\d\d$/.test(param)
          ? DateTime.fromFormat(param, `${format}ZZ`, { setZone: true })
          : DateTime.fromFormat(param, format, { zone: this.zone });
    }
    if (!dt.isValid) {
      throw invalid('parameter', `'${param}' is not a parameter of schedule '${this.schedule}'`);
    }
    const slot = dt.toJSDate();
    if (!this.isAligned(slot) || this.parameter(slot) !== param) {
      throw invalid(
        'parameter',
        `'${param}' is not a slot of schedule '${this.schedule}' in ${this.timezone}` +
          (this.isAligned(slot) ? ` (expected '${this.parameter(slot)}')` : ''),
      );
    }
    return slot;
  }

  dueAt(slot: Date): Date {
    if (Number.isNaN(slot.getTime())) throw invalid('slot', 'not a valid date');
    return this.local(slot).plus(this.offsetDuration).toJSDate();
  }

  firstDueAfter(now: Date): Date {
    if (Number.isNaN(now.getTime())) throw invalid('now', 'not a valid date');
    // Subtracting a calendar offset is not the exact inverse of adding it
    // (months differ in length, DST days in hours), so start a little early
    // and walk forward: at most a few slots for such schedules.
    const calendar = ['years', 'quarters', 'months', 'weeks', 'days'].some(
      (u) => this.offsetDuration.get(u as 'days') !== 0,
    );
    let lower = this.local(now).minus(this.offsetDuration).minus({ seconds: 1 });
    if (calendar) lower = lower.minus({ days: 4 });
    let s = this.nextSlot(lower.toJSDate());
    for (let i = 0; this.dueAt(s).getTime() <= now.getTime(); i++) {
      if (i > MAX_SLOTS) throw invalid('schedule', `'${this.schedule}' has no slot due after ${describe(now)}`);
      s = this.nextSlot(s);
    }
    return s;
  }
}

/**
 * Parses a Styx schedule: an alias (`hourly daily weekly monthly yearly
 * annually`, optionally with `@`, any case) or a cron expression with 5
 * fields, or 6 with seconds first. `offset` is an ISO-8601 duration, may be
 * negative (`-PT1H`); it defaults to +1 period for aliases and `PT0S` for raw
 * cron. `timezone` is an IANA zone, default `UTC`.
 * @throws WeftError INVALID_ARGUMENT with field `schedule`, `offset` or `timezone`.
 */
export function parseSchedule(schedule: string, opts: { offset?: string; timezone?: string } = {}): Schedule {
  return new ScheduleImpl(schedule, opts);
}

/**
 * The slots of a backfill over `[start, end)`, ascending or (with `reverse`)
 * descending. Like Styx, both bounds must be aligned to the schedule.
 * @throws WeftError INVALID_ARGUMENT with field `start` or `end` (misaligned, invalid, or `end <= start`).
 */
export function backfillSlots(schedule: Schedule, start: Date, end: Date, opts: { reverse?: boolean } = {}): Date[] {
  if (Number.isNaN(start.getTime())) throw invalid('start', 'not a valid date');
  if (Number.isNaN(end.getTime())) throw invalid('end', 'not a valid date');
  if (!schedule.isAligned(start)) {
    throw invalid(
      'start',
      `${describe(start)} is not aligned to schedule '${schedule.schedule}' (next slot: ${describe(schedule.nextSlot(start))})`,
    );
  }
  if (!schedule.isAligned(end)) {
    throw invalid(
      'end',
      `${describe(end)} is not aligned to schedule '${schedule.schedule}' (next slot: ${describe(schedule.nextSlot(end))})`,
    );
  }
  if (end.getTime() <= start.getTime()) {
    throw invalid('end', `${describe(end)} must be after start ${describe(start)}`);
  }
  const slots = schedule.slotsBetween(start, end);
  return opts.reverse === true ? slots.reverse() : slots;
}

// ---------------------------------------------------------------------------
// Retry policy

/** Styx exit codes with a special meaning. */
export const EXIT_SUCCESS = 0;
export const EXIT_MISSING_DEPENDENCIES = 20;
export const EXIT_FAIL_FAST = 50;

/** Retry policy knobs; {@link DEFAULT_RETRY_CONFIG} holds Styx's values. */
export interface RetryConfig {
  /** Fixed delay after exit 20 (Styx: 10 min). */
  missingDependenciesDelayMs: number;
  /** Cost of an exit-20 run (Styx: 0.1). */
  missingDependenciesCost: number;
  /** Cost of any other failure (Styx: 1.0). */
  failureCost: number;
  /** Backoff unit (Styx: 3 min). */
  baseDelayMs: number;
  /** Backoff exponent cap (Styx: 4, so 3–45 min). */
  maxBackoffExponent: number;
  /** Retry budget: stop once the cost reaches it (Styx `MAX_RETRY_COST`: 50). */
  maxCost: number;
  /** Uniform random in [0, 1); injected for tests. */
  random: () => number;
}

/** Styx's retry defaults. */
export const DEFAULT_RETRY_CONFIG: Readonly<RetryConfig> = {
  missingDependenciesDelayMs: 10 * 60_000,
  missingDependenciesCost: 0.1,
  failureCost: 1,
  baseDelayMs: 3 * 60_000,
  maxBackoffExponent: 4,
  maxCost: 50,
  random: Math.random,
};

/** An instance's counters *before* the outcome being judged, plus that outcome's exit code. */
export interface RetryState {
  /** Exit code of the run that just ended; null = no exit code (unknown, run error, timeout). */
  exitCode: number | null;
  /** Executions submitted so far (informational; Styx exposes it to `retry_condition`). */
  tries: number;
  /** Consecutive real failures before this outcome. */
  consecutiveFailures: number;
  /** Retry cost accumulated before this outcome. */
  cost: number;
}

/** What to do after a run ends. `cost`/`consecutiveFailures` are the values to store. */
export type RetryDecision =
  | { action: 'done' }
  | { action: 'retry'; delayMs: number; cost: number; consecutiveFailures: number }
  | { action: 'fail'; reason: string };

function roundCost(c: number): number {
  return Math.round(c * 1e6) / 1e6;
}

/**
 * Styx's TerminationHandler: exit 0 → done; 50 → fail (fail fast); 20 →
 * retry after a fixed delay, cost +0.1, consecutive failures reset; any other
 * code or none → cost +1, consecutive failures +1, retry after
 * `base × max(1, floor(random × 2^min(failures, maxExponent)))` (3–45 min).
 * When the new cost reaches `maxCost` the instance fails instead.
 */
export function nextRetry(state: RetryState, cfg: Partial<RetryConfig> = {}): RetryDecision {
  const c: RetryConfig = { ...DEFAULT_RETRY_CONFIG, ...cfg };
  if (state.exitCode === EXIT_SUCCESS) return { action: 'done' };
  if (state.exitCode === EXIT_FAIL_FAST) {
    return { action: 'fail', reason: `exit code ${EXIT_FAIL_FAST}: permanent failure, not retried` };
  }
  const missing = state.exitCode === EXIT_MISSING_DEPENDENCIES;
  const cost = roundCost(state.cost + (missing ? c.missingDependenciesCost : c.failureCost));
  if (cost >= c.maxCost) {
    const what = state.exitCode === null ? 'no exit code' : `exit code ${state.exitCode}`;
    return { action: 'fail', reason: `retry budget of ${c.maxCost} exhausted (cost ${cost}, last: ${what})` };
  }
  if (missing) {
    return { action: 'retry', delayMs: c.missingDependenciesDelayMs, cost, consecutiveFailures: 0 };
  }
  const consecutiveFailures = state.consecutiveFailures + 1;
  const span = 2 ** Math.max(0, Math.min(consecutiveFailures, c.maxBackoffExponent));
  const draw = Math.min(span - 1, Math.max(0, Math.floor(c.random() * span)));
  return { action: 'retry', delayMs: c.baseDelayMs * Math.max(1, draw), cost, consecutiveFailures };
}

// ---------------------------------------------------------------------------
// Instance state machine

/** Styx RunState states; `done` and `error` are terminal. */
export const INSTANCE_STATES = [
  'new',
  'queued',
  'prepare',
  'submitting',
  'submitted',
  'running',
  'terminated',
  'failed',
  'done',
  'error',
] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];

/** Events accepted by {@link transition} (Styx's names, past tense where Styx uses a command). */
export type InstanceEvent =
  | { type: 'triggered' }
  | { type: 'info'; message: string }
  | { type: 'dequeued' }
  | { type: 'submit' }
  | { type: 'submitted' }
  | { type: 'started' }
  | { type: 'terminated'; exitCode: number | null }
  | { type: 'runError'; message: string }
  | { type: 'success' }
  | { type: 'retryAfter'; delayMs: number }
  | { type: 'stop' }
  | { type: 'timeout' }
  | { type: 'halt' };
export type InstanceEventType = InstanceEvent['type'];

/** True for `done` and `error`. */
export function isTerminal(state: InstanceState): boolean {
  return state === 'done' || state === 'error';
}

const NON_TERMINAL = INSTANCE_STATES.filter((s) => !isTerminal(s));

const TRANSITIONS: Record<InstanceEventType, { from: readonly InstanceState[]; to: InstanceState | 'same' }> = {
  triggered: { from: ['new'], to: 'queued' },
  info: { from: ['queued'], to: 'same' },
  dequeued: { from: ['queued'], to: 'prepare' },
  submit: { from: ['prepare'], to: 'submitting' },
  submitted: { from: ['submitting'], to: 'submitted' },
  started: { from: ['submitted', 'prepare'], to: 'running' },
  terminated: { from: ['running'], to: 'terminated' },
  runError: { from: ['queued', 'prepare', 'submitting', 'submitted', 'running'], to: 'failed' },
  success: { from: ['terminated'], to: 'done' },
  retryAfter: { from: ['terminated', 'failed', 'queued'], to: 'queued' },
  stop: { from: ['terminated', 'failed'], to: 'error' },
  timeout: { from: NON_TERMINAL, to: 'failed' },
  halt: { from: NON_TERMINAL, to: 'error' },
};

/**
 * Styx's RunState transition table (RunState.java). Pure: returns the next
 * state or throws `Error` naming the event, the state and the allowed states.
 * Counters (tries, cost, consecutive failures) are kept by the caller with
 * {@link nextRetry}.
 */
export function transition(state: InstanceState, event: InstanceEvent): InstanceState {
  const rule = TRANSITIONS[event.type];
  if (!rule.from.includes(state)) {
    throw new Error(
      `illegal transition: event '${event.type}' in state '${state}' (allowed in: ${rule.from.join(', ')})`,
    );
  }
  return rule.to === 'same' ? state : rule.to;
}

// ---------------------------------------------------------------------------
// Start spread

/**
 * A stable offset in `[0, maxSpreadMs)` for a workflow, from a 32-bit FNV-1a
 * hash of its id (UTF-8), so many workflows on one schedule start spread over
 * the window at the same place every time. Returns 0 when `maxSpreadMs <= 0`.
 * @throws WeftError INVALID_ARGUMENT (field `maxSpreadMs`) if not finite.
 */
export function spreadOffsetMs(workflowId: string, maxSpreadMs: number): number {
  if (!Number.isFinite(maxSpreadMs)) throw invalid('maxSpreadMs', `must be a finite number, got ${maxSpreadMs}`);
  const window = Math.floor(maxSpreadMs);
  if (window <= 0) return 0;
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(workflowId)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  // Murmur3 finaliser: FNV's low bits alone spread short, similar ids poorly.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return Math.floor(((h >>> 0) / 0x1_0000_0000) * window);
}
