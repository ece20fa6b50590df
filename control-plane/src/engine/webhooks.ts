/**
 * Webhook delivery for job progress and results, in HKube's payload shapes so
 * receivers written for HKube work unchanged. HKube tries 3 times, 5 s apart;
 * here results are retried with exponential backoff and jitter, and progress
 * reports are throttled per job (the latest status wins).
 */
import type { Logger } from '@weft/common';
import { NodeState, type JobStatus, type NodeStatus } from '@weft/proto';
// The CLI's JSON output and HKube's payloads use the same value encoding and state names.
import { jobStateName, toJson } from '../cli/output.js';

/** Progress verbosity, least severe first (HKube's progressVerbosityLevel). */
export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'critical';

const LEVEL_RANK: Record<Level, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5 };

/**
 * Reads a pipeline's progressVerbosityLevel. HKube's spellings `warning` and
 * `silly` are accepted; anything else (including empty) means `info`.
 */
export function parseLevel(text: string | undefined): Level {
  const t = (text ?? '').trim().toLowerCase();
  if (t === 'warning') return 'warn';
  if (t === 'silly') return 'trace';
  return t in LEVEL_RANK ? (t as Level) : 'info';
}

/** One leaf task's output, as the result webhook reports it. */
export interface ResultEntry {
  nodeName: string;
  algorithmName: string;
  /** -1 (or below) when the node is not a batch; the field is then left out. */
  batchIndex: number;
  /** The decoded value; binary data is sent as `{"$base64": "..."}`. */
  result?: unknown;
  /** Instead of `result`, where a large result is stored (HKube's big-data info). */
  info?: { path: string; size: number; isBigData: true; message: string };
}

export interface WebhookOptions {
  /** Attempts per result delivery, the first included. Default 5. */
  attempts?: number;
  /** Delay before the first retry; it doubles each time, capped at 30 s, with ±20% jitter. Default 500. */
  backoffMs?: number;
  /** Timeout of one attempt. Default 10 s. */
  timeoutMs?: number;
  /** At most one progress POST per job this often. Default 1000. */
  progressIntervalMs?: number;
  log: Logger;
  fetch?: typeof fetch;
}

const MAX_BACKOFF_MS = 30_000;

interface Counts {
  succeed: number;
  failed: number;
  active: number;
  pending: number;
  skipped: number;
}

/** Task counts over all nodes; a node whose tasks are not known yet counts as one task in its state. */
function countTasks(nodes: readonly NodeStatus[]): Counts {
  const c: Counts = { succeed: 0, failed: 0, active: 0, pending: 0, skipped: 0 };
  for (const n of nodes) {
    if (n.total > 0) {
      c.succeed += n.succeeded;
      c.failed += n.failed;
      c.active += n.active;
      c.pending += n.pending;
      c.skipped += n.skipped;
      continue;
    }
    switch (n.state) {
      case NodeState.NODE_STATE_SUCCEEDED:
        c.succeed += 1;
        break;
      case NodeState.NODE_STATE_FAILED:
        c.failed += 1;
        break;
      case NodeState.NODE_STATE_ACTIVE:
        c.active += 1;
        break;
      case NodeState.NODE_STATE_SKIPPED:
        c.skipped += 1;
        break;
      case NodeState.NODE_STATE_STOPPED:
        break;
      default:
        c.pending += 1;
    }
  }
  return c;
}

/** A percentage with two decimals, as HKube sends it: `"33.33"`. */
function progressText(progress: number): string {
  const p = Number.isFinite(progress) ? Math.min(100, Math.max(0, progress)) : 0;
  return p.toFixed(2);
}

/**
 * HKube's progress webhook body:
 * `{jobId, timestamp, pipeline, level, status, data: {progress, details, activeNodes?}, error?}`.
 */
/** The latest api.progress report of a job's algorithms. */
export interface AlgorithmProgressReport {
  nodeName: string;
  batchIndex: number;
  percent: number;
  message: string;
}

export function progressPayload(status: JobStatus, level: Level): Record<string, unknown> {
  const progress = progressText(status.progress);
  const c = countTasks(status.nodes);
  const details =
    `${progress}% completed, ${c.succeed} succeed, ${c.failed} failed, ` +
    `${c.active} active, ${c.pending} pending, ${c.skipped} skipped`;
  const data: Record<string, unknown> = { progress, details };
  const active = status.nodes.filter((n) => n.state === NodeState.NODE_STATE_ACTIVE || n.active > 0);
  if (active.length > 0) {
    data['activeNodes'] = active.map((n) => ({ nodeName: n.nodeName, algorithmName: n.algorithmName }));
  }
  const out: Record<string, unknown> = {
    jobId: status.jobId,
    timestamp: Date.now(),
    pipeline: status.pipelineName,
    level,
    status: jobStateName(status.state),
    data,
  };
  if (status.error) out['error'] = status.error;
  return out;
}

/**
 * HKube's result webhook body: `{jobId, timestamp, pipeline, status, data: [...], error?}`
 * with one `{nodeName, algorithmName, batchIndex?, result | info}` per leaf task.
 */
export function resultPayload(status: JobStatus, results: ResultEntry[]): Record<string, unknown> {
  const data = results.map((r) => {
    const entry: Record<string, unknown> = { nodeName: r.nodeName, algorithmName: r.algorithmName };
    if (r.batchIndex >= 0) entry['batchIndex'] = r.batchIndex;
    if (r.info) entry['info'] = { ...r.info };
    else entry['result'] = toJson(r.result);
    return entry;
  });
  const out: Record<string, unknown> = {
    jobId: status.jobId,
    timestamp: Date.now(),
    pipeline: status.pipelineName,
    status: jobStateName(status.state),
    data,
  };
  if (status.error) out['error'] = status.error;
  return out;
}

/** The URL without query and credentials, for logs (tokens often sit in the query). */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '<invalid url>';
  }
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? `${err.message}: ${cause.message}` : err.message;
}

/** An abort signal that fires when any of the given ones does; `dispose` drops the listeners. */
function anySignal(signals: AbortSignal[]): { signal: AbortSignal; dispose: () => void } {
  const any = (AbortSignal as { any?: (s: AbortSignal[]) => AbortSignal }).any;
  if (any) return { signal: any.call(AbortSignal, signals), dispose: () => {} };
  const ctl = new AbortController();
  const undo: (() => void)[] = [];
  for (const s of signals) {
    if (s.aborted) {
      ctl.abort(s.reason);
      break;
    }
    const onAbort = (): void => ctl.abort(s.reason);
    s.addEventListener('abort', onAbort, { once: true });
    undo.push(() => s.removeEventListener('abort', onAbort));
  }
  return { signal: ctl.signal, dispose: () => undo.forEach((f) => f()) };
}

/** Waits `ms`, or less when the signal aborts. Never rejects. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Per-job throttling state of progress reports. */
interface ProgressSlot {
  url: string;
  jobId: string;
  /** The latest report not sent yet. */
  pending?: Record<string, unknown>;
  /** When the last POST started. */
  lastSentAt: number;
  timer?: NodeJS.Timeout;
  sending: boolean;
}

export class Webhooks {
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly timeoutMs: number;
  private readonly intervalMs: number;
  private readonly log: Logger;
  private readonly fetchFn: typeof fetch;
  private readonly slots = new Map<string, ProgressSlot>();
  private readonly inflight = new Set<Promise<unknown>>();
  /** Aborts every request and backoff wait; fired when close() runs out of time. */
  private readonly stop = new AbortController();
  private closing?: Promise<void>;

  constructor(opts: WebhookOptions) {
    this.attempts = Math.max(1, Math.floor(opts.attempts ?? 5));
    this.backoffMs = Math.max(0, opts.backoffMs ?? 500);
    this.timeoutMs = Math.max(1, opts.timeoutMs ?? 10_000);
    this.intervalMs = Math.max(0, opts.progressIntervalMs ?? 1000);
    this.log = opts.log;
    this.fetchFn = opts.fetch ?? ((input, init) => fetch(input, init));
  }

  /**
   * Queues a progress report; at most one POST per job per progressIntervalMs
   * (the latest status wins; the first goes out at once). Reports less severe
   * than `minLevel` (the pipeline's progressVerbosityLevel) are dropped.
   * Status changes are 'info', failures 'error'.
   */
  progress(
    url: string,
    status: JobStatus,
    opts: { level: Level; minLevel: Level; algorithmProgress?: AlgorithmProgressReport },
  ): void {
    if (this.closing) return;
    if (LEVEL_RANK[opts.level] < LEVEL_RANK[parseLevel(opts.minLevel)]) return;
    const body = progressPayload(status, opts.level);
    // Beyond HKube: the algorithm's own latest report (api.progress), which HKube only logs.
    if (opts.algorithmProgress) (body['data'] as Record<string, unknown>)['algorithmProgress'] = opts.algorithmProgress;
    const key = `${status.jobId}\n${url}`;
    let slot = this.slots.get(key);
    if (!slot) {
      slot = { url, jobId: status.jobId, lastSentAt: -Infinity, sending: false };
      this.slots.set(key, slot);
    }
    slot.pending = body;
    if (slot.timer) slot.timer.ref(); // it now guards a report to send
    if (slot.sending || slot.timer) return; // picked up when the POST ends or the timer fires
    this.sendProgress(key, slot);
  }

  /**
   * POSTs the result of an ended job; retries on network errors and non-2xx
   * answers with backoff. Resolves true when delivered, false after the last
   * attempt. Never rejects.
   */
  result(url: string, status: JobStatus, results: ResultEntry[]): Promise<boolean> {
    if (this.closing) {
      this.log.warn('webhook result not sent: webhooks are closed', { jobId: status.jobId, url: safeUrl(url) });
      return Promise.resolve(false);
    }
    let body: Record<string, unknown>;
    try {
      body = resultPayload(status, results);
    } catch (err) {
      this.log.error('webhook result not sent: cannot encode it', { jobId: status.jobId, error: errorText(err) });
      return Promise.resolve(false);
    }
    return this.track(this.deliver(url, body, 'result', status.jobId));
  }

  /**
   * Sends what is pending (a last progress report per job), waits for
   * in-flight deliveries up to `timeoutMs` (then aborts them), stops timers.
   */
  close(timeoutMs = this.timeoutMs): Promise<void> {
    this.closing ??= this.shutdown(timeoutMs);
    return this.closing;
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    for (const [key, slot] of this.slots) {
      if (slot.timer) clearTimeout(slot.timer);
      slot.timer = undefined;
      if (slot.sending) continue; // its follow-up goes out when it ends
      if (slot.pending) this.sendProgress(key, slot);
      else this.slots.delete(key);
    }
    let deadline: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      deadline = setTimeout(() => resolve('expired'), Math.max(0, timeoutMs));
    });
    try {
      while (this.inflight.size > 0) {
        const r = await Promise.race([Promise.allSettled([...this.inflight]), expired]);
        if (r === 'expired') {
          this.log.warn('webhooks: closing before all deliveries ended', { inflight: this.inflight.size });
          this.stop.abort(new Error('webhooks closed'));
          await Promise.allSettled([...this.inflight]);
          break;
        }
      }
    } finally {
      clearTimeout(deadline);
      for (const slot of this.slots.values()) if (slot.timer) clearTimeout(slot.timer);
      this.slots.clear();
    }
  }

  private sendProgress(key: string, slot: ProgressSlot): void {
    const body = slot.pending;
    slot.pending = undefined;
    if (!body) return;
    slot.sending = true;
    slot.lastSentAt = Date.now();
    // A report that a newer one replaces is not retried.
    const superseded = (): boolean => slot.pending !== undefined;
    void this.track(this.deliver(slot.url, body, 'progress', slot.jobId, superseded)).then(() => {
      slot.sending = false;
      this.afterProgress(key, slot);
    });
  }

  /** After a progress POST: send the next report when the interval allows, or forget the job. */
  private afterProgress(key: string, slot: ProgressSlot): void {
    if (this.slots.get(key) !== slot) return;
    if (this.stop.signal.aborted) {
      this.slots.delete(key);
      return;
    }
    if (this.closing) {
      if (slot.pending) this.sendProgress(key, slot);
      else this.slots.delete(key);
      return;
    }
    const wait = slot.lastSentAt + this.intervalMs - Date.now();
    if (wait <= 0 && slot.pending) {
      this.sendProgress(key, slot);
      return;
    }
    slot.timer = setTimeout(
      () => {
        slot.timer = undefined;
        if (slot.sending) return;
        if (slot.pending) this.sendProgress(key, slot);
        else if (this.slots.get(key) === slot) this.slots.delete(key);
      },
      Math.max(0, wait),
    );
    // Nothing to send yet: the timer only ends the throttle window and must not hold the process.
    if (!slot.pending) slot.timer.unref();
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p)).catch(() => {});
    return p;
  }

  private backoff(retry: number): number {
    const base = Math.min(this.backoffMs * 2 ** (retry - 1), MAX_BACKOFF_MS);
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  /** POSTs `body` with retries. Never rejects. */
  private async deliver(
    url: string,
    body: Record<string, unknown>,
    kind: 'progress' | 'result',
    jobId: string,
    superseded?: () => boolean,
  ): Promise<boolean> {
    const where = safeUrl(url);
    let text: string;
    try {
      const u = new URL(url);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`unsupported protocol ${u.protocol}`);
      text = JSON.stringify(body);
    } catch (err) {
      this.log.warn(`webhook ${kind} not sent`, { jobId, url: where, error: errorText(err) });
      return false;
    }
    let lastError = '';
    let attempt = 0;
    while (attempt < this.attempts && !this.stop.signal.aborted) {
      attempt += 1;
      const { signal, dispose } = anySignal([AbortSignal.timeout(this.timeoutMs), this.stop.signal]);
      try {
        const res = await this.fetchFn(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: text,
          signal,
        });
        // Read the answer so the connection is freed; its content does not matter.
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          this.log.debug(`webhook ${kind} delivered`, { jobId, url: where, status: res.status, attempt });
          return true;
        }
        lastError = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
      } catch (err) {
        lastError = errorText(err);
      } finally {
        dispose();
      }
      if (attempt >= this.attempts || this.stop.signal.aborted || superseded?.()) break;
      const delay = this.backoff(attempt);
      this.log.debug(`webhook ${kind} attempt failed, retrying`, {
        jobId,
        url: where,
        attempt,
        error: lastError,
        delay,
      });
      await sleep(delay, this.stop.signal);
    }
    if (superseded?.()) {
      this.log.debug(`webhook ${kind} superseded by a newer report`, { jobId, url: where, error: lastError });
    } else {
      this.log.warn(`webhook ${kind} not delivered`, { jobId, url: where, attempts: attempt, error: lastError });
    }
    return false;
  }
}
