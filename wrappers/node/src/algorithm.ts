import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { BlobRef, decode, encodeParts, getPath, shapeOf, writeFileAtomic } from '@weft/common';
import {
  LOCAL_PROTOCOL_VERSION,
  decodeFrame,
  encodeFrame,
  type AlgorithmFrame,
  type InitializeData,
  type SidecarFrame,
  type WireFailure,
} from './protocol.js';

/** What `start` and `init` receive about the task. */
export interface TaskArgs {
  /** The node's input array, references resolved. */
  input: unknown[];
  jobId: string;
  taskId: string;
  nodeName: string;
  algorithmName: string;
  pipelineName: string;
  /** Position in the node's batch; -1 when the node is not a batch. */
  batchIndex: number;
  /** 1 for the first run; higher when the task is retried. */
  attempt: number;
  /** What produced the task: "pipeline", "schedule" or "closure". */
  kind: string;
  /** Environment given to this task only; also set in `process.env` while it runs. */
  env: Record<string, string>;
}

/** What algorithm code can do while a task runs. */
export interface Api {
  /** Reports progress (0-100) to `weft exec watch`, the job's watchers and its progress webhook. */
  progress(percent: number, message?: string): void;
  /** Aborted when the task is asked to stop; long loops should check it. */
  readonly signal: AbortSignal;
  /**
   * Runs an algorithm as a child job and resolves with its result (null
   * with includeResult false). Rejects when the child job fails.
   * The third argument is HKube's includeResult boolean or `{ includeResult }`.
   */
  startAlgorithm(name: string, input?: unknown[], options?: boolean | { includeResult?: boolean }): Promise<unknown>;
  /** Runs a stored pipeline as a child job; resolves with its results (HKube's list of `{nodeName, result}`). */
  startStoredSubpipeline(
    name: string,
    flowInput?: Record<string, unknown>,
    options?: boolean | { includeResult?: boolean },
  ): Promise<SubpipelineResult[] | undefined>;
  /**
   * Runs a pipeline given in full as a child job: `(descriptor, options?)`, or
   * HKube's `(name, nodes, flowInput, options, webhooks, includeResult)`.
   */
  startRawSubpipeline(
    descriptorOrName: Record<string, unknown> | string,
    ...rest: unknown[]
  ): Promise<SubpipelineResult[] | undefined>;
}

/** One result of a child pipeline (HKube's shape). */
export interface SubpipelineResult {
  nodeName: string;
  algorithmName: string;
  batchIndex?: number;
  result: unknown;
}

function includeResultOf(options: unknown): boolean {
  if (typeof options === 'boolean') return options;
  if (options && typeof options === 'object' && 'includeResult' in options) {
    return (options as { includeResult?: boolean }).includeResult !== false;
  }
  return true;
}

/** An algorithm: `start` is required, `init` and `stop` are optional. */
export interface Algorithm {
  /** Runs once per task; its return value (or resolved value) is the task's result. */
  start(args: TaskArgs, api: Api): unknown;
  /** Runs before each task's start; a failure fails the task without running start. */
  init?(args: TaskArgs): unknown;
  /** Called when the running task is asked to stop. */
  stop?(args: TaskArgs): unknown;
}

export interface RunOptions {
  /** The sidecar's socket; default: WEFT_SOCKET_URL. */
  url?: string;
  /** Bytes of decoded input blobs kept for reuse across tasks (default 256 MiB). */
  cacheBytes?: number;
}

interface TaskState {
  data: InitializeData;
  args: TaskArgs;
  abort: AbortController;
  init: Promise<boolean>;
  start: Promise<void> | undefined;
  stopping: boolean;
}

/**
 * Throw from `start` when the inputs the task needs do not exist yet. A
 * scheduled workflow retries it later (Styx's exit code 20) without spending
 * its retry budget; in a pipeline it is an ordinary failure.
 */
export class MissingDependencies extends Error {
  readonly exitCode = 20;
  constructor(message = 'missing dependencies') {
    super(message);
    this.name = 'MissingDependencies';
  }
}

/** Throw from `start` for a failure that retrying cannot fix (Styx's exit code 50): not retried. */
export class PermanentFailure extends Error {
  readonly exitCode = 50;
  constructor(message = 'permanent failure') {
    super(message);
    this.name = 'PermanentFailure';
  }
}

function toFailure(err: unknown): WireFailure {
  if (err instanceof Error) {
    const f: WireFailure = { type: err.name || 'Error', message: err.message, stack: err.stack ?? '' };
    // Any error may carry an exit code, not only the two classes above (e.g. a child process's).
    const code = (err as { exitCode?: unknown }).exitCode;
    if (typeof code === 'number' && Number.isInteger(code)) f.exitCode = code;
    return f;
  }
  return { type: 'Error', message: typeof err === 'string' ? err : JSON.stringify(err), stack: '' };
}

/** Variables the previous task set and their values before it, to restore. */
let taskEnvBackup: Record<string, string | undefined> = {};

/** Gives the task's own environment to process.env, undoing the previous task's. */
function applyTaskEnv(env: Record<string, string>): void {
  for (const [k, v] of Object.entries(taskEnvBackup)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  taskEnvBackup = {};
  for (const [k, v] of Object.entries(env)) {
    taskEnvBackup[k] = process.env[k];
    process.env[k] = v;
  }
}

/** A small LRU of decoded blobs: blobs are immutable, and batch items often read the same one. */
class BlobCache {
  private readonly map = new Map<string, { value: unknown; size: number }>();
  private bytes = 0;
  constructor(private readonly limit: number) {}

  load(key: string, path: string): unknown {
    const hit = this.map.get(key);
    if (hit) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit.value;
    }
    const raw = readFileSync(path);
    const value = decode(raw);
    if (raw.byteLength <= this.limit) {
      this.map.set(key, { value, size: raw.byteLength });
      this.bytes += raw.byteLength;
      for (const [k, v] of this.map) {
        if (this.bytes <= this.limit) break;
        this.map.delete(k);
        this.bytes -= v.size;
      }
    }
    return value;
  }
}

/** Replaces every BlobRef inside value with the staged blob's content at its path. */
function resolveRefs(value: unknown, storage: InitializeData['storage'], cache: BlobCache): unknown {
  if (value instanceof BlobRef) {
    const staged = storage[value.key];
    if (!staged) throw new Error(`input references blob "${value.key}" that the sidecar did not stage`);
    return getPath(cache.load(value.key, staged.path), value.path);
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const r = resolveRefs(value[i], storage, cache);
      if (r !== value[i]) (out ??= [...(value as unknown[])])[i] = r;
    }
    return out ?? value;
  }
  if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    let out: Record<string, unknown> | undefined;
    for (const [k, v] of Object.entries(value)) {
      const r = resolveRefs(v, storage, cache);
      if (r !== v) (out ??= { ...(value as Record<string, unknown>) })[k] = r;
    }
    return out ?? value;
  }
  return value;
}

/**
 * Runs an algorithm inside a weft worker: connects to the sidecar and serves
 * tasks one after another until the sidecar says exit. Resolves then; the
 * process should end.
 */
export function run(algorithm: Algorithm, options: RunOptions = {}): Promise<void> {
  if (typeof algorithm?.start !== 'function') {
    return Promise.reject(new TypeError('run(): the algorithm must have a start(args, api) function'));
  }
  const url = options.url ?? process.env['WEFT_SOCKET_URL'];
  if (!url) {
    return Promise.reject(
      new Error('run(): no sidecar to talk to; WEFT_SOCKET_URL is not set (algorithms are started by weft-sidecar)'),
    );
  }
  const cache = new BlobCache(options.cacheBytes ?? 256 * 1024 * 1024);
  const sep = url.includes('?') ? '&' : '?';
  const ws = new WebSocket(`${url}${sep}protocol=${LOCAL_PROTOCOL_VERSION}&encoding=msgpack`, {
    perMessageDeflate: false,
    maxPayload: 0,
  });
  ws.binaryType = 'nodebuffer';
  const tasks = new Map<string, TaskState>();
  /** Code API calls waiting for their child job, by request id. */
  const calls = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let callSeq = 0;
  const request = (taskId: string, frame: (id: string) => AlgorithmFrame): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = `${taskId}/${++callSeq}`;
      calls.set(id, { resolve, reject });
      send(frame(id));
    });
  const answer = (
    id: string,
    response: unknown,
    storage: InitializeData['storage'] | undefined,
    error?: string,
  ): void => {
    const call = calls.get(id);
    if (!call) return;
    calls.delete(id);
    if (error !== undefined) call.reject(new Error(error));
    else {
      try {
        call.resolve(resolveRefs(response, storage ?? {}, cache));
      } catch (err) {
        call.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
  };

  const send = (frame: AlgorithmFrame): void => {
    if (ws.readyState === WebSocket.OPEN) ws.send(encodeFrame(frame));
  };

  // A task started with streamLogs has its stdout/stderr writes teed to the
  // sidecar as log frames (they still reach the worker's log file too).
  let logTaskId: string | undefined;
  const tee = (stream: 'stdout' | 'stderr'): void => {
    const target = process[stream];
    const original = target.write.bind(target) as (...a: unknown[]) => boolean;
    target.write = (chunk: unknown, ...rest: unknown[]): boolean => {
      if (logTaskId !== undefined && (typeof chunk === 'string' || chunk instanceof Uint8Array)) {
        const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        if (data.byteLength > 0) send({ command: 'log', data: { taskId: logTaskId, stream, data } });
      }
      return original(chunk, ...rest);
    };
  };
  tee('stdout');
  tee('stderr');

  const onInitialize = (data: InitializeData): void => {
    const abort = new AbortController();
    const args: TaskArgs = {
      input: [],
      jobId: data.jobId,
      taskId: data.taskId,
      nodeName: data.nodeName,
      algorithmName: data.algorithmName,
      pipelineName: data.pipelineName,
      batchIndex: data.batchIndex,
      attempt: data.attempt,
      kind: data.kind,
      env: data.env ?? {},
    };
    applyTaskEnv(args.env);
    logTaskId = data.streamLogs === true ? data.taskId : undefined;
    const state: TaskState = { data, args, abort, init: Promise.resolve(false), start: undefined, stopping: false };
    // Registered before init runs: a synchronous failure inside must find it to remove it.
    tasks.set(data.taskId, state);
    state.init = (async () => {
      try {
        args.input = resolveRefs(data.input, data.storage, cache) as unknown[];
        await algorithm.init?.(args);
        send({ command: 'initialized', data: { taskId: data.taskId } });
        return true;
      } catch (err) {
        tasks.delete(data.taskId);
        send({ command: 'errorMessage', data: { taskId: data.taskId, error: toFailure(err) } });
        return false;
      }
    })();
  };

  const onStart = (taskId: string): void => {
    const state = tasks.get(taskId);
    if (!state) return;
    state.start = (async () => {
      // start may arrive before init finished: it runs only after a successful init.
      if (!(await state.init) || state.stopping) return;
      send({ command: 'started', data: { taskId } });
      const api: Api = {
        progress: (percent, message = '') => {
          if (!state.stopping)
            send({ command: 'progress', data: { taskId, percent: Number(percent), message: String(message) } });
        },
        signal: state.abort.signal,
        startAlgorithm: (name, input = [], options) =>
          request(taskId, (execId) => ({
            command: 'startAlgorithmExecution',
            data: { execId, algorithmName: name, input, includeResult: includeResultOf(options) },
          })),
        startStoredSubpipeline: (name, flowInput, options) =>
          request(taskId, (subPipelineId) => ({
            command: 'startStoredSubPipeline',
            data: {
              subPipelineId,
              subPipeline: flowInput ? { name, flowInput } : { name },
              includeResult: includeResultOf(options),
            },
          })) as Promise<SubpipelineResult[] | undefined>,
        startRawSubpipeline: (descriptorOrName, ...rest) => {
          let subPipeline: Record<string, unknown>;
          let includeResult: boolean;
          if (typeof descriptorOrName === 'string') {
            const [nodes, flowInput, options, webhooks, include] = rest;
            subPipeline = { name: descriptorOrName, nodes, flowInput, options, webhooks };
            includeResult = include !== false;
          } else {
            subPipeline = descriptorOrName;
            includeResult = includeResultOf(rest[0]);
          }
          return request(taskId, (subPipelineId) => ({
            command: 'startRawSubPipeline',
            data: { subPipelineId, subPipeline, includeResult },
          })) as Promise<SubpipelineResult[] | undefined>;
        },
      };
      let result: unknown;
      try {
        result = await algorithm.start(state.args, api);
      } catch (err) {
        tasks.delete(taskId);
        if (!state.stopping) send({ command: 'errorMessage', data: { taskId, error: toFailure(err) } });
        return;
      }
      // The task stays registered while its result is written, so a stop
      // arriving meanwhile waits for this rather than answering at once.
      try {
        if (!state.stopping) await sendResult(state.data, result);
      } catch (err) {
        if (!state.stopping) send({ command: 'errorMessage', data: { taskId, error: toFailure(err) } });
      } finally {
        tasks.delete(taskId);
      }
    })();
  };

  const sendResult = async (data: InitializeData, result: unknown): Promise<void> => {
    const parts = encodeParts(result === undefined ? null : result);
    const size = parts.reduce((n, p) => n + p.byteLength, 0);
    if (data.output.path && size > data.output.threshold) {
      // Large results go straight to the shared volume; only their shape travels.
      await writeFileAtomic(data.output.path, parts);
      const metadata: Record<string, { type: string; size: number }> = {};
      for (const p of data.savePaths) metadata[p] = shapeOf(getPath(result, p === '' ? [] : p.split('.')));
      send({ command: 'done', data: { taskId: data.taskId, stored: { size }, metadata } });
    } else {
      send({ command: 'done', data: { taskId: data.taskId, value: result === undefined ? null : result } });
    }
  };

  const onStop = (taskId: string): void => {
    const state = tasks.get(taskId);
    if (!state) {
      send({ command: 'stopped', data: { taskId } });
      return;
    }
    state.stopping = true;
    state.abort.abort(new Error('task stopped'));
    void (async () => {
      try {
        await algorithm.stop?.(state.args);
      } catch (err) {
        process.stderr.write(`weft: stop() failed: ${toFailure(err).message}\n`);
      }
      // The worker is reusable only once start has returned.
      await state.start?.catch(() => undefined);
      tasks.delete(taskId);
      send({ command: 'stopped', data: { taskId } });
    })();
  };

  return new Promise<void>((resolve, reject) => {
    let opened = false;
    ws.on('open', () => {
      opened = true;
    });
    ws.on('message', (raw: Buffer) => {
      let frame: SidecarFrame;
      try {
        frame = decodeFrame<SidecarFrame>(raw);
      } catch (err) {
        process.stderr.write(`weft: dropped a malformed frame from the sidecar: ${toFailure(err).message}\n`);
        return;
      }
      switch (frame.command) {
        case 'initialize':
          onInitialize(frame.data);
          break;
        case 'start':
          onStart(frame.data.taskId);
          break;
        case 'stop':
          onStop(frame.data.taskId);
          break;
        case 'exit':
          ws.close();
          break;
        case 'algorithmExecutionDone':
          answer(frame.data.execId, frame.data.response, frame.data.storage);
          break;
        case 'algorithmExecutionError':
          answer(frame.data.execId, undefined, undefined, frame.data.error);
          break;
        case 'subPipelineDone':
          answer(frame.data.subPipelineId, frame.data.response, frame.data.storage);
          break;
        case 'subPipelineError':
          answer(frame.data.subPipelineId, undefined, undefined, frame.data.error);
          break;
      }
    });
    ws.on('close', () => {
      for (const call of calls.values()) call.reject(new Error('the sidecar went away before the child job ended'));
      calls.clear();
      resolve();
    });
    ws.on('error', (err) => {
      if (!opened) reject(new Error(`run(): cannot connect to the sidecar at ${url}: ${err.message}`));
    });
  });
}
