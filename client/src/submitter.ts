import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';
import {
  Metadata,
  credentials,
  type ChannelOptions,
  type ClientReadableStream,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import { Status, WeftError, decode, encode, invalid, isServiceError } from '@weft/common';
import {
  ClosuresClient,
  JobState,
  JobsClient,
  type ClosureEvent,
  type DataChunk,
  type JobEvent,
  type JobResult,
  type JobStatus,
  type LeafResult,
  type SessionInfo,
  type SubmitClosureRequest,
  type TaskFailure,
} from '@weft/proto';
import { ClosuresStageStore, HashCache, assertSerializable, decodeValue, encodeValue } from '@weft/stage';
import { RunEnvironment } from './environment.js';
import { locate, type LocatedFunction } from './locate.js';
import { planStage, uploadStage, type StagePlan } from './stage.js';

/**
 * A function the Submitter can run remotely. `never[]` parameters accept
 * every function type without `any`, and keep `Parameters<F>` and
 * `ReturnType<F>` of the actual function for typing arguments and results.
 */
export type RemoteFunction = (...args: never[]) => unknown;

/** Options of {@link Submitter}. */
export interface SubmitterOptions {
  /** `host:port` of the control plane; default `$WEFT_SERVER`, else `localhost:50051`. A bare host gets port 50051. */
  readonly server?: string;
  /** Copy the remote process's stdout and stderr to this process's stdout and stderr; default true. */
  readonly logs?: boolean;
  /** Where the Submitter's own lines go (staging, reconnecting); default stderr. */
  readonly log?: (line: string) => void;
  /** Hashes of unchanged files; default {@link HashCache.shared} (persistent, in `~/.cache/weft`). */
  readonly hashCache?: HashCache;
  /** How long past `timeoutMs` to wait for the server's own answer before giving up locally; default 10 s. */
  readonly timeoutGraceMs?: number;
}

/** Options of one {@link Submitter.submit}. */
export interface SubmitOptions {
  /**
   * The server stops the run after this long, and the call rejects with a
   * {@link RemoteError} named `TimeoutError`. Should the server not answer
   * by `timeoutMs` + {@link SubmitterOptions.timeoutGraceMs} after the
   * submit, the call cancels the run and rejects on its own. 0 or absent: no
   * timeout.
   */
  readonly timeoutMs?: number;
  /** Aborting cancels the run on the server and rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** Overrides {@link SubmitterOptions.logs} for this run. */
  readonly logs?: boolean;
  /** Receives the remote process's output as it arrives, whether or not it is also copied locally. */
  readonly onLog?: (stream: 'stdout' | 'stderr', data: Buffer) => void;
}

/** What a rejected submit tells about the run it was for, when known. */
export interface SubmissionInfo {
  /** The id this call was submitted under (one per call, kept across reconnections). */
  submissionId?: string;
  /** The run's `WEFT_EXECUTION_ID`, once the server accepted it. */
  executionId?: string;
}

/**
 * The submitted function threw (or its process died) on the remote side.
 * `name`, `message` and `stack` are the remote error's, the stack ending
 * with a line naming the execution, so it reads like a local error:
 *
 * ```text
 * TypeError: bad input
 *     at parse (/stages/3f…/src/lib.js:12:11)
 *     at <weft execution weft-closure-…>
 * ```
 */
export class RemoteError extends Error {
  /** Always true: the error happened in the remote process. */
  readonly remote = true;
  readonly executionId: string;
  readonly submissionId: string;
  /** The process died (killed, out of memory, exited) rather than the function throwing. */
  readonly crash: boolean;
  /** The exit code the failure stands for, when there is one. */
  readonly exitCode: number | undefined;

  constructor(failure: TaskFailure, submissionId: string, executionId: string) {
    super(failure.message);
    this.name = failure.type || 'Error';
    this.executionId = executionId;
    this.submissionId = submissionId;
    this.crash = failure.crash;
    this.exitCode = failure.exitCode;
    const remoteStack = failure.stack.trim() || `${this.name}: ${this.message}`;
    this.stack = `${remoteStack}\n    at <weft execution ${executionId || 'unknown'}>`;
  }
}

/** A pipeline job run by {@link Submitter.runPipeline} did not complete. */
export class JobError extends Error {
  constructor(
    readonly jobId: string,
    /** `failed` or `stopped`. */
    readonly state: string,
    /** The job's error as the server reports it. */
    readonly reason: string,
  ) {
    super(`job ${jobId} ${state}${reason ? `: ${reason}` : ''}`);
    this.name = 'JobError';
  }
}

/** One output of a pipeline's leaf task (HKube's result shape). */
export interface PipelineLeafResult {
  nodeName: string;
  algorithmName: string;
  /** Set for batch nodes only. */
  batchIndex?: number;
  /** The decoded output; a stored output too large to inline is downloaded. Undefined when the task gave none. */
  result: unknown;
}

/** Options of {@link Submitter.runPipeline}. */
export interface RunPipelineOptions {
  /** Aborting stops the job and rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

const DEFAULT_PORT = 50051;
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;
/** How long a call keeps trying to get through a lost connection. */
const RETRY_WINDOW_MS = 60_000;
/** Cancel, KeepAlive and CloseSession are best effort: bounded, so exiting is never held up for long. */
const SHORT_CALL_MS = 5_000;
/** KeepAlive interval when the server does not give a TTL. */
const DEFAULT_KEEPALIVE_MS = 10_000;

const CHANNEL_OPTIONS: ChannelOptions = {
  // Arguments and results travel inline; grpc-js's 4 MiB default would refuse large ones on this side.
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  // A Submit stream may be silent for hours while the run works. Pings find a
  // connection that died without a word (a host gone, a NAT that forgot us),
  // which would otherwise leave the call waiting forever.
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
};

function normaliseServer(raw: string): string {
  const server = raw.trim();
  // grpc-js would otherwise pick port 443 for a bare host name.
  return /:\d+$/.test(server) || server.includes('///') ? server : `${server}:${DEFAULT_PORT}`;
}

/**
 * True for failures of the connection rather than answers of the server.
 * grpc-js reports a dropped connection as UNAVAILABLE, and a stream reset by
 * the peer or a proxy as INTERNAL "Received RST_STREAM…". CANCELLED that we
 * did not ask for means the server or a proxy went away mid-call.
 */
function isTransportFailure(code: Status, details: string): boolean {
  return (
    code === Status.UNAVAILABLE ||
    code === Status.CANCELLED ||
    (code === Status.INTERNAL && details.startsWith('Received RST_STREAM'))
  );
}

function isTransportError(err: unknown): boolean {
  return isServiceError(err) && isTransportFailure(err.code, err.details);
}

/** A server's refusal as a WeftError: its details as the message (they name the field), and the field. */
function refusal(code: Status, details: string, metadata: Metadata | undefined, cause?: unknown): WeftError {
  const field = metadata?.get('weft-field')[0];
  return new WeftError(code, details || Status[code] || `gRPC status ${code}`, {
    ...(typeof field === 'string' ? { field } : {}),
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Anything a call failed with, as an Error fit to show: a ServiceError becomes a WeftError with the server's details. */
function asError(err: unknown): Error {
  if (err instanceof WeftError) return err;
  if (isServiceError(err)) return refusal(err.code, err.details, err.metadata, err);
  return err instanceof Error ? err : new Error(String(err));
}

function describe(err: unknown): string {
  if (isServiceError(err)) return err.details || err.message;
  return err instanceof Error ? err.message : String(err);
}

function unary<T>(start: (callback: (err: ServiceError | null, res: T) => void) => unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    start((err, res) => (err ? reject(err) : resolve(res)));
  });
}

function deadline(ms: number): { deadline: number } {
  return { deadline: Date.now() + ms };
}

/** An abort reason as the text Cancel and Stop carry. */
function reasonText(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  if (typeof reason === 'string') return reason;
  return reason === undefined ? 'aborted' : inspect(reason);
}

function isFinalJobState(state: JobState): boolean {
  return (
    state === JobState.JOB_STATE_COMPLETED ||
    state === JobState.JOB_STATE_FAILED ||
    state === JobState.JOB_STATE_STOPPED
  );
}

function jobStateName(state: JobState): string {
  return (JobState[state] ?? String(state)).replace(/^JOB_STATE_/, '').toLowerCase();
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A stage as a submit uses it: its id, and how to upload it again should the server have lost it. */
interface StagedFunction {
  readonly name: string;
  readonly plan: StagePlan;
}

/** Per run: the stream of the current attempt and what it has delivered so far. */
interface RunState {
  call: ClientReadableStream<ClosureEvent> | undefined;
  executionId: string | undefined;
  /** Whether a Submit went out, so the server may know the submission. */
  sent: boolean;
  /** Log bytes delivered per stream, to skip what the server replays after a reconnection. */
  delivered: { stdout: number; stderr: number };
}

type AttemptOutcome =
  | { kind: 'result'; value: Buffer }
  | { kind: 'failure'; failure: TaskFailure }
  | { kind: 'lost'; reason: string; accepted: boolean }
  | { kind: 'refused'; status: StatusObject };

/**
 * Runs functions remotely on a weft control plane (Hype's `Submitter`):
 *
 * ```ts
 * import { Submitter, RunEnvironment } from '@weft/client';
 * import { train } from './train.js';
 *
 * const weft = new Submitter();
 * const model = await weft.submit(train, [data, { epochs: 3 }], RunEnvironment.image('ml:3'));
 * const remoteTrain = weft.remote(train, env);   // called like train, runs remotely
 * await weft.close();
 * ```
 *
 * Each call locates the function (an export of its module, or a closure over
 * sendable values; see `locate`), stages the code it needs (uploading only
 * contents the server lacks; an unchanged project uploads nothing), and
 * submits a run with the arguments and environment. The promise resolves
 * with the function's return value, or rejects with a {@link RemoteError}
 * carrying the remote error's name, message and stack.
 *
 * Runs belong to a session, opened on the first submit and kept alive in
 * the background; {@link close} ends it (and the server deletes its
 * {@link TransientVolume}s). A script that just ends closes it too
 * (`beforeExit`); one that is killed leaves the server to notice the missing
 * KeepAlives. Submit is idempotent: a lost connection is retried with the
 * same submission id, and the server attaches to the run already going.
 */
export class Submitter {
  /** `host:port` this Submitter talks to. */
  readonly server: string;
  private readonly closures: ClosuresClient;
  private readonly jobs: JobsClient;
  private readonly store: ClosuresStageStore;
  private readonly logs: boolean;
  private readonly log: (line: string) => void;
  private readonly hashCache: HashCache;
  private readonly timeoutGraceMs: number;
  /** Exported functions, located once: their module and export do not change. */
  private readonly located = new WeakMap<RemoteFunction, LocatedFunction>();
  /** Stages the server has, or is being sent, by id. */
  private readonly stages = new Map<string, Promise<void>>();
  private sessionPromise: Promise<string> | undefined;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private exitHook: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: SubmitterOptions = {}) {
    this.server = normaliseServer(options.server ?? process.env['WEFT_SERVER'] ?? `localhost:${DEFAULT_PORT}`);
    this.closures = new ClosuresClient(this.server, credentials.createInsecure(), CHANNEL_OPTIONS);
    // One connection for both services.
    this.jobs = new JobsClient(this.server, credentials.createInsecure(), {
      ...CHANNEL_OPTIONS,
      channelOverride: this.closures.getChannel(),
    });
    this.store = new ClosuresStageStore(this.closures);
    this.logs = options.logs ?? true;
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.hashCache = options.hashCache ?? HashCache.shared();
    this.timeoutGraceMs = options.timeoutGraceMs ?? 10_000;
  }

  /**
   * Runs `fn(...args)` remotely in `env` (default: the server's default
   * image, no requests) and resolves with what it returns (awaited, decoded:
   * binary data as `Uint8Array`/`Buffer`, `Map`, `Set` and `Date` as
   * themselves).
   *
   * `fn` is an exported function of any module, or a closure whose captured
   * values are sendable and whose captured functions are imports or exports
   * of its module. Arguments must be sendable (see `assertSerializable`):
   * anything else is refused, naming the place (`args[1].cb: a function
   * cannot be sent`), before anything is sent.
   *
   * Rejects with a {@link RemoteError} when the function throws remotely,
   * with a `WeftError` when the server refuses the run (its message names
   * the field), with an error named `TimeoutError` when `timeoutMs` passes
   * and the server does not answer within the grace period, and with the
   * signal's reason when aborted. Errors carry `.submissionId` and, once the
   * server accepted the run, `.executionId`.
   */
  async submit<F extends RemoteFunction>(
    fn: F,
    args: Parameters<F>,
    env?: RunEnvironment,
    options: SubmitOptions = {},
  ): Promise<Awaited<ReturnType<F>>> {
    const { signal } = options;
    signal?.throwIfAborted();
    this.checkOpen();
    if (typeof fn !== 'function') throw invalid('fn', 'must be a function');
    if (!Array.isArray(args)) throw invalid('args', "must be an array of the function's arguments");
    args.forEach((arg, i) => assertSerializable(arg, `args[${i}]`));
    if (env !== undefined && typeof (env as Partial<RunEnvironment>).toSpec !== 'function') {
      throw invalid('env', 'must be a RunEnvironment');
    }
    const timeoutMs = options.timeoutMs ?? 0;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0) {
      throw invalid('timeoutMs', `must be a whole number of milliseconds, got ${String(timeoutMs)}`);
    }
    const environment = (env ?? RunEnvironment.defaults()).toSpec();
    const encodedArgs = encodeValue(args);

    const staged = await abortable(this.stageFunction(fn), signal);
    const sessionId = await abortable(this.session(), signal);
    const logs = options.logs ?? this.logs;
    const request: SubmitClosureRequest = {
      submissionId: randomUUID(),
      stageId: staged.plan.stageId,
      args: encodedArgs,
      environment,
      timeoutMs,
      sessionId,
      streamLogs: logs || options.onLog !== undefined,
      name: staged.name,
    };
    // The remote side returns what fn returns; the codec keeps the value's shape.
    return (await this.run(request, staged, { timeoutMs, signal, logs, onLog: options.onLog })) as Awaited<
      ReturnType<F>
    >;
  }

  /**
   * `fn` as a function that runs remotely: `weft.remote(add)(1, 2)` is
   * `weft.submit(add, [1, 2])`, with the same environment and options on
   * every call.
   */
  remote<F extends RemoteFunction>(
    fn: F,
    env?: RunEnvironment,
    options?: SubmitOptions,
  ): (...args: Parameters<F>) => Promise<Awaited<ReturnType<F>>> {
    return (...args) => this.submit(fn, args, env, options);
  }

  /**
   * Runs the stored pipeline `name` (Jobs.ExecStored) with `flowInput` (an
   * object, sent as msgpack so binary data stays binary; absent: the stored
   * one), waits for the job to end and resolves with its leaf results,
   * decoded. Rejects with a {@link JobError} when the job fails or is stopped.
   */
  async runPipeline(
    name: string,
    flowInput?: Record<string, unknown>,
    options: RunPipelineOptions = {},
  ): Promise<PipelineLeafResult[]> {
    const { signal } = options;
    signal?.throwIfAborted();
    this.checkOpen();
    if (flowInput !== undefined && !isPlainObject(flowInput)) throw invalid('flowInput', 'must be a plain object');
    const flowInputMsgpack = flowInput === undefined ? Buffer.alloc(0) : encode(flowInput);
    // Not retried: ExecStored is not idempotent, and a second job is worse than an error.
    let jobId: string;
    try {
      ({ jobId } = await unary<{ jobId: string }>((cb) => this.jobs.execStored({ name, flowInputMsgpack }, cb)));
    } catch (err) {
      throw asError(err);
    }
    const onAbort = (): void => {
      const reason = reasonText(signal?.reason);
      this.jobs.stop({ jobId, reason }, new Metadata(), deadline(SHORT_CALL_MS), (err) => {
        if (err) this.log(`weft: could not stop job ${jobId}: ${describe(err)}`);
      });
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    // Aborted while ExecStored was on its way: the job exists now, so stop it.
    if (signal?.aborted) onAbort();
    try {
      const status = await this.watchJob(jobId, signal);
      const result = await this.retrying('reading the job result', () =>
        unary<JobResult>((cb) => this.jobs.getResult({ jobId }, cb)),
      );
      const state = result.state || status.state;
      if (state !== JobState.JOB_STATE_COMPLETED) {
        throw new JobError(jobId, jobStateName(state), result.error || status.error);
      }
      return await Promise.all(result.results.map((leaf) => this.leafResult(jobId, leaf)));
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Ends the session (CloseSession: the server deletes this client's
   * transient volumes and cancels its runs still going) and closes the
   * connection. Later calls are refused. Safe to call more than once.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.stopKeepAlive();
    if (this.exitHook) process.off('beforeExit', this.exitHook);
    this.exitHook = undefined;
    const sessionId = await this.sessionPromise?.catch(() => undefined);
    this.sessionPromise = undefined;
    if (sessionId !== undefined) {
      try {
        await unary((cb) => this.closures.closeSession({ sessionId }, new Metadata(), deadline(SHORT_CALL_MS), cb));
      } catch (err) {
        this.log(
          `weft: could not close session ${sessionId} (${describe(err)}); the server ends it when its keep-alives stop`,
        );
      }
    }
    this.closures.close();
  }

  private checkOpen(): void {
    if (this.closing) throw new WeftError(Status.FAILED_PRECONDITION, 'this Submitter is closed');
  }

  // ---------------------------------------------------------------------------
  // Staging

  /**
   * Locates and plans `fn`, and uploads the stage unless this server already
   * has it. An exported function is located once. A closure is located on
   * every call, since its captured values may have changed; they are part of
   * the stage, so a change makes a new stage that uploads one small file.
   * Planning an unchanged project reads only file stats (the hash cache).
   */
  private async stageFunction(fn: RemoteFunction): Promise<StagedFunction> {
    let located = this.located.get(fn);
    if (located === undefined) {
      located = locate(fn);
      if (located.closure === undefined) this.located.set(fn, located);
    }
    const name = fn.name || `closure at ${basename(located.file)}:${located.line}`;
    const plan = await planStage(located, { hashCache: this.hashCache });
    const distinct = new Set(plan.manifest.files.map((f) => f.hash)).size;
    let uploaded = 0;
    let pending = this.stages.get(plan.stageId);
    // Only the call that uploads reports it: parallel submits of one function share the upload.
    const reporter = pending === undefined;
    if (pending === undefined) {
      pending = this.retrying(`staging ${name}`, () => uploadStage(plan, this.store)).then((r) => {
        uploaded = r.newlyUploaded;
      });
      this.stages.set(plan.stageId, pending);
      pending.catch(() => this.stages.delete(plan.stageId));
    }
    try {
      await pending;
    } catch (err) {
      throw asError(err);
    }
    if (reporter) {
      this.log(
        `weft: staged ${name}: ${uploaded} files newly uploaded, ${distinct - uploaded} cached (stage ${plan.stageId.slice(0, 12)})`,
      );
    }
    return { name, plan };
  }

  // ---------------------------------------------------------------------------
  // Session

  private session(): Promise<string> {
    this.checkOpen();
    if (this.sessionPromise === undefined) {
      const opening = this.openSession();
      this.sessionPromise = opening;
      opening.catch(() => {
        if (this.sessionPromise === opening) this.sessionPromise = undefined;
      });
    }
    return this.sessionPromise;
  }

  private async openSession(): Promise<string> {
    const script = basename(process.argv[1] ?? process.argv0);
    const client = `${script} (pid ${process.pid} on ${hostname()})`;
    const info = await this.retrying('opening a session', () =>
      unary<SessionInfo>((cb) => this.closures.openSession({ client }, cb)),
    ).catch((err: unknown) => {
      throw asError(err);
    });
    if (this.closing) {
      // close() was called while the session was opening: it is waiting for this promise and will close it.
      return info.sessionId;
    }
    this.stopKeepAlive();
    const every = info.ttlMs > 0 ? Math.max(10, Math.floor(info.ttlMs / 3)) : DEFAULT_KEEPALIVE_MS;
    this.keepAliveTimer = setInterval(() => this.keepAlive(info.sessionId, every), every);
    // The timer must not keep a finished script alive: beforeExit closes the session.
    this.keepAliveTimer.unref();
    if (this.exitHook === undefined) {
      this.exitHook = () => {
        this.exitHook = undefined;
        void this.close();
      };
      process.once('beforeExit', this.exitHook);
    }
    return info.sessionId;
  }

  private keepAlive(sessionId: string, timeoutMs: number): void {
    this.closures.keepAlive({ sessionId }, new Metadata(), deadline(timeoutMs), (err) => {
      if (!err) return;
      // A lost connection: the next tick tries again, well within the TTL.
      if (isTransportFailure(err.code, err.details) || err.code === Status.DEADLINE_EXCEEDED) return;
      void this.sessionLost(sessionId, describe(err));
    });
  }

  /** The server ended the session (no KeepAlive for too long, e.g. a laptop asleep); the next submit opens another. */
  private async sessionLost(sessionId: string, why: string): Promise<void> {
    const current = await this.sessionPromise?.catch(() => undefined);
    if (current !== sessionId || this.closing) return;
    this.stopKeepAlive();
    this.sessionPromise = undefined;
    this.log(
      `weft: session ${sessionId} ended on the server (${why}); its transient volumes are gone, and the next submit opens a new session`,
    );
  }

  private stopKeepAlive(): void {
    if (this.keepAliveTimer) clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
  }

  // ---------------------------------------------------------------------------
  // Runs

  private run(
    first: SubmitClosureRequest,
    staged: StagedFunction,
    opts: { timeoutMs: number; signal: AbortSignal | undefined; logs: boolean; onLog: SubmitOptions['onLog'] },
  ): Promise<unknown> {
    const { signal } = opts;
    const submissionId = first.submissionId;
    const state: RunState = {
      call: undefined,
      executionId: undefined,
      sent: false,
      delivered: { stdout: 0, stderr: 0 },
    };
    const stopped = new AbortController();
    const info = (): SubmissionInfo => ({
      submissionId,
      ...(state.executionId === undefined ? {} : { executionId: state.executionId }),
    });

    return new Promise<unknown>((resolve, reject) => {
      let settled = false;
      let guard: NodeJS.Timeout | undefined;
      const cleanup = (): void => {
        settled = true;
        if (guard) clearTimeout(guard);
        signal?.removeEventListener('abort', onAbort);
      };
      // Stops the run here and on the server, then rejects (once the server was told, or could not be).
      const stop = (reason: string, err: unknown): void => {
        if (settled) return;
        cleanup();
        stopped.abort();
        state.call?.cancel();
        const told = state.sent ? this.cancelRun(submissionId, reason, staged.name) : Promise.resolve();
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- an abort rejects with the signal's reason, whatever it is, as fetch does
        void told.then(() => reject(err));
      };
      const onAbort = (): void => stop(reasonText(signal?.reason), signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.timeoutMs > 0) {
        const waitMs = opts.timeoutMs + this.timeoutGraceMs;
        guard = setTimeout(() => {
          const err = Object.assign(
            new Error(
              `weft: ${staged.name} did not finish within its timeout of ${opts.timeoutMs} ms, and the server did not answer within ${this.timeoutGraceMs} ms more`,
            ),
            { name: 'TimeoutError' },
            info(),
          );
          stop(`no answer ${waitMs} ms after submitting (timeout ${opts.timeoutMs} ms)`, err);
        }, waitMs);
      }

      this.attempts(first, staged, state, stopped.signal, opts).then(
        (value) => {
          if (settled) return;
          cleanup();
          resolve(value);
        },
        (err: unknown) => {
          if (settled) return;
          cleanup();
          reject(err instanceof Error ? Object.assign(err, info()) : new Error(inspect(err)));
        },
      );
    });
  }

  /** Submits, and submits again with the same id while the connection fails, until the run ends. */
  private async attempts(
    first: SubmitClosureRequest,
    staged: StagedFunction,
    state: RunState,
    stopped: AbortSignal,
    opts: { logs: boolean; onLog: SubmitOptions['onLog'] },
  ): Promise<unknown> {
    let request = first;
    let delay = RETRY_FIRST_MS;
    let giveUpAt = Date.now() + RETRY_WINDOW_MS;
    let recovered = false;
    let reconnecting = false;
    for (;;) {
      state.sent = true;
      const outcome = await this.attempt(request, state, opts);
      if (stopped.aborted) return undefined; // run() has settled already
      switch (outcome.kind) {
        case 'result':
          try {
            return decodeValue(outcome.value);
          } catch (err) {
            throw new WeftError(
              Status.DATA_LOSS,
              `the result of ${staged.name} could not be decoded: ${describe(err)}`,
            );
          }
        case 'failure':
          throw new RemoteError(outcome.failure, request.submissionId, state.executionId ?? '');
        case 'refused': {
          const { code, details, metadata } = outcome.status;
          if (!recovered && (code === Status.FAILED_PRECONDITION || code === Status.NOT_FOUND)) {
            // Refused before it started: the server may have lost the stage (a new data
            // directory) or ended the session (no KeepAlive while this machine slept).
            // Put both right once and submit again under the same id.
            recovered = true;
            request = await this.recover(request, staged);
            continue;
          }
          throw refusal(code, details, metadata);
        }
        case 'lost': {
          if (this.closing) {
            throw new WeftError(Status.CANCELLED, `this Submitter was closed while ${staged.name} was running`);
          }
          if (outcome.accepted) {
            delay = RETRY_FIRST_MS;
            giveUpAt = Date.now() + RETRY_WINDOW_MS;
          }
          if (Date.now() + delay > giveUpAt) {
            throw new WeftError(
              Status.UNAVAILABLE,
              `lost the connection to ${this.server} while running ${staged.name} and could not get it back within ${RETRY_WINDOW_MS / 1000} s: ${outcome.reason}`,
            );
          }
          if (!reconnecting || outcome.accepted) {
            const execution = state.executionId === undefined ? '' : ` (execution ${state.executionId})`;
            this.log(`weft: lost the stream of ${staged.name}${execution}: ${outcome.reason}; reconnecting`);
          }
          reconnecting = true;
          try {
            await sleep(delay, undefined, { signal: stopped });
          } catch {
            return undefined;
          }
          delay = Math.min(delay * 2, RETRY_MAX_MS);
        }
      }
    }
  }

  /** One Submit call, until it gives a result, a failure, or breaks. */
  private attempt(
    request: SubmitClosureRequest,
    state: RunState,
    opts: { logs: boolean; onLog: SubmitOptions['onLog'] },
  ): Promise<AttemptOutcome> {
    return new Promise<AttemptOutcome>((resolve) => {
      const call = this.closures.submit(request);
      state.call = call;
      let accepted = false;
      let done = false;
      const finish = (outcome: AttemptOutcome): void => {
        if (done) return;
        done = true;
        resolve(outcome);
      };
      call.on('data', (ev: ClosureEvent) => {
        const event = ev.event;
        switch (event?.$case) {
          case 'accepted':
            accepted = true;
            state.executionId = event.value.executionId || state.executionId;
            break;
          case 'log': {
            const stream = event.value.stream === 'stderr' ? 'stderr' : 'stdout';
            // After a reconnection the server replays the output it kept: skip what was shown.
            const { data, offset } = event.value;
            const skipped = Math.max(0, Math.min(data.length, state.delivered[stream] - offset));
            if (skipped === data.length) break;
            state.delivered[stream] = offset + data.length;
            this.deliverLog(stream, data.subarray(skipped), opts);
            break;
          }
          case 'result':
            finish({ kind: 'result', value: event.value.value });
            break;
          case 'failure':
            finish({ kind: 'failure', failure: event.value });
            break;
          default:
            break;
        }
      });
      // Every end of the call is handled once, from 'status'; without a listener 'error' would throw.
      call.on('error', () => undefined);
      call.on('status', (status: StatusObject) => {
        if (status.code === Status.OK) {
          finish({ kind: 'lost', reason: 'the server ended the stream without a result', accepted });
        } else if (isTransportFailure(status.code, status.details)) {
          finish({ kind: 'lost', reason: status.details || Status[status.code] || 'connection lost', accepted });
        } else {
          finish({ kind: 'refused', status });
        }
      });
    });
  }

  private deliverLog(
    stream: 'stdout' | 'stderr',
    data: Buffer,
    opts: { logs: boolean; onLog: SubmitOptions['onLog'] },
  ): void {
    if (opts.logs) (stream === 'stderr' ? process.stderr : process.stdout).write(data);
    if (opts.onLog) {
      try {
        opts.onLog(stream, data);
      } catch (err) {
        this.log(`weft: onLog threw: ${describe(err)}`);
      }
    }
  }

  /** Uploads the stage again (the server says what it lacks) and makes sure the session is alive. */
  private async recover(request: SubmitClosureRequest, staged: StagedFunction): Promise<SubmitClosureRequest> {
    this.stages.delete(staged.plan.stageId);
    try {
      await this.retrying(`staging ${staged.name}`, () => uploadStage(staged.plan, this.store));
      this.stages.set(staged.plan.stageId, Promise.resolve());
      let sessionId = request.sessionId;
      const alive = await unary((cb) =>
        this.closures.keepAlive({ sessionId }, new Metadata(), deadline(SHORT_CALL_MS), cb),
      ).then(
        () => true,
        (err: unknown) => isTransportError(err),
      );
      if (!alive) {
        await this.sessionLost(sessionId, 'refused by the server');
        sessionId = await this.session();
      }
      return { ...request, sessionId };
    } catch {
      // Submitting again as it was gives the server's own refusal, which says more.
      return request;
    }
  }

  private async cancelRun(submissionId: string, reason: string, name: string): Promise<void> {
    try {
      await unary((cb) => this.closures.cancel({ submissionId, reason }, new Metadata(), deadline(SHORT_CALL_MS), cb));
    } catch (err) {
      // NOT_FOUND: the Submit never reached the server, so nothing runs.
      if (isServiceError(err) && err.code === Status.NOT_FOUND) return;
      this.log(`weft: could not cancel ${name} (submission ${submissionId}): ${describe(err)}`);
    }
  }

  // ---------------------------------------------------------------------------
  // Pipelines

  /** Follows Jobs.Watch until the job ends, watching again after a lost connection (it is read-only). */
  private async watchJob(jobId: string, signal: AbortSignal | undefined): Promise<JobStatus> {
    let delay = RETRY_FIRST_MS;
    let giveUpAt = Date.now() + RETRY_WINDOW_MS;
    for (;;) {
      signal?.throwIfAborted();
      const call = this.jobs.watch({ jobId });
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      call.on('error', () => undefined); // also seen by the iterator below
      let why: unknown;
      try {
        // grpc-js streams are object-mode Readables; their iterator is typed any.
        for await (const ev of call as AsyncIterable<JobEvent>) {
          delay = RETRY_FIRST_MS;
          giveUpAt = Date.now() + RETRY_WINDOW_MS;
          const event = ev.event;
          if (event?.$case === 'status' && isFinalJobState(event.value.state)) return event.value;
        }
        why = new Error('the server ended the watch before the job ended');
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (!isTransportError(err)) throw asError(err);
        why = err;
      } finally {
        signal?.removeEventListener('abort', onAbort);
        call.cancel();
      }
      signal?.throwIfAborted();
      if (Date.now() + delay > giveUpAt) {
        throw new WeftError(Status.UNAVAILABLE, `lost the watch of job ${jobId}: ${describe(why)}`);
      }
      await sleep(delay, undefined, signal ? { signal } : {});
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  private async leafResult(jobId: string, leaf: LeafResult): Promise<PipelineLeafResult> {
    const kind = leaf.result?.kind;
    let result: unknown;
    if (kind?.$case === 'inline') {
      result = kind.value.length > 0 ? decode(kind.value) : undefined;
    } else if (kind?.$case === 'ref') {
      const call = this.jobs.downloadResult({ jobId, nodeName: leaf.nodeName, batchIndex: leaf.batchIndex });
      const chunks: Buffer[] = [];
      try {
        for await (const chunk of call as AsyncIterable<DataChunk>) chunks.push(chunk.data);
      } catch (err) {
        throw asError(err);
      }
      result = decode(Buffer.concat(chunks));
    }
    return {
      nodeName: leaf.nodeName,
      algorithmName: leaf.algorithmName,
      ...(leaf.batchIndex >= 0 ? { batchIndex: leaf.batchIndex } : {}),
      result,
    };
  }

  // ---------------------------------------------------------------------------

  /**
   * Runs an idempotent step, again while the connection fails (100 ms
   * doubling to 2 s, for up to 60 s), saying so once.
   */
  private async retrying<T>(what: string, step: () => Promise<T>): Promise<T> {
    let delay = RETRY_FIRST_MS;
    const giveUpAt = Date.now() + RETRY_WINDOW_MS;
    let said = false;
    for (;;) {
      try {
        return await step();
      } catch (err) {
        if (!isTransportError(err) || Date.now() + delay > giveUpAt || this.closing) throw err;
        if (!said) this.log(`weft: cannot reach ${this.server} while ${what} (${describe(err)}); retrying`);
        said = true;
      }
      await sleep(delay);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }
}

/** The promise, or the signal's reason as soon as it aborts; the work itself goes on (it is harmless). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined); // its failure no longer matters to anyone
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's reason, whatever it is, as fetch does
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
