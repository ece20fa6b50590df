import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, type ClientDuplexStream } from '@grpc/grpc-js';
import { WebSocketServer, type WebSocket } from 'ws';
import { BlobRef, decode, encode, openBlobStore, type BlobStore, type Logger } from '@weft/common';
import { BlobStageStore, materialize, packageDirs, provideRoot } from '@weft/stage';
import {
  JobState,
  PipelineDescriptor,
  WorkersClient,
  type JobDone,
  type SubmitJob,
  type Task,
  type WorkerCommand,
  type WorkerEvent,
  type Welcome,
} from '@weft/proto';
import { decodeFrame, encodeFrame, type AlgorithmFrame, type SidecarFrame, type WireFailure } from '../protocol.js';
import { createStager, type Stager } from './stager.js';

/** Version of the worker stream protocol this sidecar speaks (Hello.protocol_version). */
export const WORKER_PROTOCOL_VERSION = 1;

const RUNNER = fileURLToPath(new URL('../runner.js', import.meta.url));

export interface SidecarOptions {
  /** host:port of the control plane. */
  server: string;
  workerId: string;
  algorithmName: string;
  /** 'nodejs' or 'python'. */
  algorithmEnv: string;
  /** Directory of the code on this machine; replaced by the laid-out stage when algorithmStage is set. */
  algorithmPath: string;
  /** Stage id of the algorithm's code in the blob store, laid out before the algorithm starts; '' for none. */
  algorithmStage?: string;
  entryPoint: string;
  /** Extra environment for the algorithm process. */
  algorithmVars: Record<string, string>;
  /** Don't start the algorithm: wait for one to connect (debugging from an IDE). */
  attach: boolean;
  /** Port of the local socket; 0 picks a free one. */
  socketPort: number;
  /**
   * The worker's local cache (WEFT_CACHE_DIR); default `<tmp>/weft-cache`.
   * Code is laid out under `code/`, a remote store's payloads are staged
   * under `blobs/<worker>`.
   */
  cacheDir?: string;
  /** Most bytes of downloaded inputs kept between tasks (WEFT_CACHE_BYTES). @default 1 GiB */
  maxCacheBytes?: number;
  log: Logger;
}

/**
 * The sidecar of one worker. Keeps the stream to the control plane, starts
 * the algorithm's process and relays commands and events between the two,
 * staging payloads from blob storage on the way in and out.
 */
export class Sidecar {
  private call: ClientDuplexStream<WorkerEvent, WorkerCommand> | undefined;
  private algo: WebSocket | undefined;
  private child: ChildProcess | undefined;
  private readonly wss: WebSocketServer;
  private store: BlobStore | undefined;
  private stager: Stager | undefined;
  private inlineThreshold = 64 * 1024;
  private heartbeat: NodeJS.Timeout | undefined;
  private welcomed = false;
  private readySent = false;
  /**
   * The task this worker holds, with where its large result goes. `staging`
   * is set while its inputs are being downloaded: the algorithm has not seen
   * the task yet, so Start waits for it and Stop is answered here.
   */
  private current:
    { taskId: string; outputKey: string; staging?: Promise<boolean>; stopRequested?: boolean } | undefined;
  private ending = false;
  private resolveDone!: (code: number) => void;
  /** Resolves with the exit code when the sidecar is finished. */
  readonly done: Promise<number>;

  constructor(private readonly opts: SidecarOptions) {
    this.done = new Promise((r) => (this.resolveDone = r));
    this.wss = new WebSocketServer({
      host: '127.0.0.1',
      port: opts.socketPort,
      perMessageDeflate: false,
      maxPayload: 0,
    });
  }

  /** The URL the algorithm connects to. */
  async socketUrl(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      if (this.wss.address()) return resolve();
      this.wss.once('listening', () => resolve());
      this.wss.once('error', reject);
    });
    const addr = this.wss.address();
    if (typeof addr !== 'object' || addr === null) throw new Error('local socket has no address');
    return `ws://127.0.0.1:${addr.port}/`;
  }

  async start(): Promise<void> {
    const url = await this.socketUrl();
    this.wss.on('connection', (ws) => this.onAlgorithm(ws));
    this.wss.on('error', (err) => this.shutdown(1, `local socket failed: ${err.message}`));
    // The stream first, so a failure to start the algorithm reaches the control plane.
    this.connect();
    if (this.opts.attach) {
      this.opts.log.info('waiting for the algorithm to connect', {
        url: `${url}?protocol=1`,
        hint: `WEFT_SOCKET_URL=${url}`,
      });
    }
    // Otherwise the algorithm starts once Welcome has named the store: its code may have to come from there.
  }

  /**
   * Lays the algorithm's code out from the blob store, once per machine, in
   * `<cache>/code/.../<stageId>`, where weft's own packages are importable
   * as they are from a checkout (the wrapper's code API, for one).
   */
  private async layOutCode(store: BlobStore, stageId: string): Promise<string> {
    const stages = new BlobStageStore(store);
    const manifest = await stages.getManifest(stageId);
    const provided = packageDirs(['@weft/wrapper'], (s) => import.meta.resolve(s));
    const root = await provideRoot(join(this.cacheRoot(), 'code'), provided);
    return (await materialize(manifest, stages, root)).dir;
  }

  private spawnAlgorithm(url: string, codePath: string, storageUrl: string): void {
    const o = { ...this.opts, algorithmPath: codePath };
    let cmd: string;
    let args: string[];
    const extraEnv: Record<string, string> = {};
    if (o.algorithmEnv === 'nodejs') {
      cmd = process.execPath;
      args = [RUNNER];
    } else if (o.algorithmEnv === 'python') {
      // Debian's python3 by default: that is where python3-msgpack and python3-websockets are installed.
      cmd = process.env['WEFT_PYTHON'] || '/usr/bin/python3';
      args = ['-m', 'weft_shim'];
      // wrappers/python-shim, beside wrappers/node (this file is wrappers/node/dist/sidecar/sidecar.js).
      const shim = fileURLToPath(new URL('../../../python-shim', import.meta.url));
      const inherited = o.algorithmVars['PYTHONPATH'] ?? process.env['PYTHONPATH'];
      extraEnv['PYTHONPATH'] = inherited ? `${shim}${delimiter}${inherited}` : shim;
      // Lines the algorithm prints reach the worker log at once, and survive a kill.
      extraEnv['PYTHONUNBUFFERED'] = o.algorithmVars['PYTHONUNBUFFERED'] ?? '1';
      const requirements = join(o.algorithmPath || process.cwd(), 'requirements.txt');
      if (existsSync(requirements)) {
        const warning =
          `algorithm "${o.algorithmName}" has ${requirements}, which the local executor does NOT install: ` +
          `install its packages for ${cmd} yourself (or set WEFT_PYTHON to a python that has them)`;
        o.log.warn(warning);
        process.stderr.write(`weft-sidecar: warning: ${warning}\n`);
      }
    } else {
      this.fail(
        `algorithm "${o.algorithmName}": env "${o.algorithmEnv}" cannot run on this sidecar (supported: nodejs, python)`,
      );
      return;
    }
    const child = spawn(cmd, args, {
      cwd: o.algorithmPath || process.cwd(),
      stdio: ['ignore', 'inherit', 'inherit'],
      env: {
        ...process.env,
        ...o.algorithmVars,
        ...extraEnv,
        WEFT_SOCKET_URL: url,
        // Built-in workers read stages from the store too (weft-closure).
        WEFT_STORAGE_URL: storageUrl,
        WEFT_ALGORITHM_PATH: o.algorithmPath,
        WEFT_ALGORITHM_ENTRY: o.entryPoint,
      },
    });
    this.child = child;
    child.on('exit', (code, signal) => this.algorithmGone(`algorithm process exited (code ${code}, signal ${signal})`));
    child.on('error', (err) =>
      this.algorithmGone(
        `algorithm process could not start: ${err.message}` +
          (o.algorithmEnv === 'python' ? ' (set WEFT_PYTHON to the python3 to use)' : ''),
      ),
    );
  }

  private connect(): void {
    const client = new WorkersClient(this.opts.server, credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 10_000,
      // Task inputs may be large inline values (a reduce over many items).
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
      'grpc.max_send_message_length': 256 * 1024 * 1024,
    });
    const call = client.connect();
    this.call = call;
    call.on('data', (cmd: WorkerCommand) => this.onCommand(cmd));
    call.on('error', (err: Error) => this.shutdown(1, `control plane stream failed: ${err.message}`));
    call.on('end', () => this.shutdown(0, 'control plane ended the stream'));
    this.emit({
      event: {
        $case: 'hello',
        value: {
          workerId: this.opts.workerId,
          algorithmName: this.opts.algorithmName,
          protocolVersion: WORKER_PROTOCOL_VERSION,
          pid: process.pid,
          hostname: hostname(),
        },
      },
    });
  }

  private emit(ev: WorkerEvent): void {
    if (this.call && !this.ending) this.call.write(ev);
  }

  private toAlgorithm(frame: SidecarFrame): void {
    this.algo?.send(encodeFrame(frame));
  }

  private maybeReady(): void {
    if (this.welcomed && this.algo && !this.readySent) {
      this.readySent = true;
      this.emit({ event: { $case: 'ready', value: {} } });
    }
  }

  private onCommand(cmd: WorkerCommand): void {
    const c = cmd.command;
    if (!c) return;
    switch (c.$case) {
      case 'welcome':
        void this.welcome(c.value);
        return;
      case 'initialize':
        if (c.value.task) this.initialize(c.value.task);
        return;
      case 'start': {
        const taskId = c.value.taskId;
        const staging = this.current?.taskId === taskId ? this.current.staging : undefined;
        if (!staging) {
          this.toAlgorithm({ command: 'start', data: { taskId } });
          return;
        }
        // Start after Initialize, as the control plane sent them; never for a task whose staging failed.
        void staging.then((ok) => ok && this.toAlgorithm({ command: 'start', data: { taskId } }));
        return;
      }
      case 'stop': {
        const cur = this.current;
        if (cur?.taskId === c.value.taskId && cur.staging) {
          // The algorithm never saw this task: end it here once its downloads settle.
          cur.stopRequested = true;
          return;
        }
        this.toAlgorithm({
          command: 'stop',
          data: { taskId: c.value.taskId, forceStop: c.value.forceStop, reason: c.value.reason },
        });
        return;
      }
      case 'exit':
        this.shutdown(c.value.exitCode, `asked to exit: ${c.value.reason}`);
        return;
      case 'jobDone':
        this.jobDone(c.value);
        return;
    }
  }

  private cacheRoot(): string {
    return this.opts.cacheDir || join(tmpdir(), 'weft-cache');
  }

  private async welcome(w: Welcome): Promise<void> {
    this.inlineThreshold = w.inlineThreshold;
    const every = Math.max(100, w.heartbeatIntervalMs);
    // Heartbeats first: opening the store may take a while (S3), and the worker is alive meanwhile.
    this.heartbeat = setInterval(() => this.emit({ event: { $case: 'heartbeat', value: {} } }), every);
    let store: BlobStore;
    try {
      store = await openBlobStore(w.storage, { setting: 'Welcome.storage' });
      this.store = store;
      this.stager = await createStager(store, {
        cacheDir: join(this.cacheRoot(), 'blobs', this.opts.workerId || `pid-${process.pid}`),
        maxCacheBytes: this.opts.maxCacheBytes ?? 1024 * 1024 * 1024,
      });
    } catch (err) {
      this.fail(`cannot open the blob storage "${w.storage}": ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    if (!this.opts.attach && !this.ending) {
      let codePath = this.opts.algorithmPath;
      const stageId = this.opts.algorithmStage ?? '';
      if (stageId) {
        try {
          codePath = await this.layOutCode(store, stageId);
        } catch (err) {
          const why = err instanceof Error ? err.message : String(err);
          this.fail(`algorithm "${this.opts.algorithmName}": cannot lay out its code (stage ${stageId}): ${why}`);
          return;
        }
      }
      const url = await this.socketUrl();
      // The worker may have been told to exit while its code was being laid out.
      if (this.ending) return;
      this.spawnAlgorithm(url, codePath, w.storage);
    }
    this.welcomed = true;
    this.maybeReady();
  }

  private initialize(task: Task): void {
    const stager = this.stager;
    if (!stager) {
      this.taskError(task.taskId, 'StorageError', 'the sidecar has no blob storage yet (no Welcome)');
      return;
    }
    let input: unknown;
    try {
      input = task.input.byteLength > 0 ? decode(task.input) : [];
    } catch (err) {
      this.taskError(task.taskId, 'InputError', err instanceof Error ? err.message : String(err));
      return;
    }
    if (stager.inPlace || task.inputKeys.length === 0) {
      // Nothing to download: hand the task over in this turn, as fast as before staging existed.
      let storage: Record<string, { path: string }>;
      try {
        storage = Object.fromEntries(task.inputKeys.map((k) => [k, { path: stager.localPath(k) }]));
      } catch (err) {
        this.taskError(task.taskId, 'InputError', err instanceof Error ? err.message : String(err));
        return;
      }
      this.current = { taskId: task.taskId, outputKey: task.outputKey };
      this.sendInitialize(task, input, storage);
      return;
    }
    const cur: NonNullable<Sidecar['current']> = { taskId: task.taskId, outputKey: task.outputKey };
    this.current = cur;
    cur.staging = (async () => {
      const storage: Record<string, { path: string }> = {};
      try {
        const paths = await Promise.all(task.inputKeys.map((key) => stager.input(key)));
        task.inputKeys.forEach((key, i) => (storage[key] = { path: paths[i]! }));
      } catch (err) {
        if (this.current === cur) {
          this.current = undefined;
          this.taskError(task.taskId, 'StorageError', `cannot download the task's input: ${message(err)}`);
        }
        return false;
      }
      if (this.current !== cur) return false;
      cur.staging = undefined;
      if (cur.stopRequested) {
        this.current = undefined;
        this.emit({ event: { $case: 'stopped', value: { taskId: task.taskId } } });
        this.releaseStage();
        return false;
      }
      this.sendInitialize(task, input, storage);
      return true;
    })();
  }

  private sendInitialize(task: Task, input: unknown, storage: Record<string, { path: string }>): void {
    this.toAlgorithm({
      command: 'initialize',
      data: {
        taskId: task.taskId,
        jobId: task.jobId,
        nodeName: task.nodeName,
        algorithmName: task.algorithmName,
        pipelineName: task.pipelineName,
        batchIndex: task.batchIndex,
        input: Array.isArray(input) ? input : [input],
        storage,
        output: task.outputKey
          ? { path: this.stager!.outputPath(task.outputKey), threshold: this.inlineThreshold }
          : { threshold: this.inlineThreshold },
        savePaths: task.savePaths,
        attempt: task.attempt,
        kind: task.kind,
        env: task.env,
        streamLogs: task.streamLogs,
      },
    });
  }

  private taskError(taskId: string, type: string, message: string): void {
    this.emit({ event: { $case: 'error', value: { taskId, failure: { type, message, stack: '', crash: false } } } });
  }

  private onAlgorithm(ws: WebSocket): void {
    if (this.algo) {
      // One algorithm per worker: a second connection is refused.
      ws.close(4001, 'another algorithm is already connected');
      return;
    }
    this.algo = ws;
    ws.on('message', (raw: Buffer) => {
      let frame: AlgorithmFrame;
      try {
        frame = decodeFrame<AlgorithmFrame>(raw);
      } catch (err) {
        const message = `malformed frame from the algorithm: ${err instanceof Error ? err.message : String(err)}`;
        this.opts.log.warn(message);
        // The frame may have been the task's result: fail the task rather than let it wait forever.
        if (this.current) this.taskError(this.current.taskId, 'ProtocolError', message);
        this.current = undefined;
        return;
      }
      this.onFrame(frame);
    });
    ws.on('close', () => this.algorithmGone('algorithm closed its connection'));
    // ws reports protocol violations (e.g. invalid UTF-8 in a text frame) as errors; unhandled they would kill us.
    ws.on('error', (err) => this.algorithmGone(`algorithm socket error: ${err.message}`));
    this.maybeReady();
  }

  /** Code API calls on their way, by request id: whether the caller wants one value or a list. */
  private readonly calls = new Map<string, 'algorithm' | 'pipeline'>();

  /** A code API call: the running task starts a job. */
  private submitJob(
    requestId: string,
    kind: 'algorithm' | 'pipeline',
    what: SubmitJob['what'],
    includeResult: boolean,
  ): void {
    const taskId = this.current?.taskId;
    if (!taskId) {
      this.toAlgorithm(this.callFailed(requestId, kind, 'no task is running on this worker'));
      return;
    }
    this.calls.set(requestId, kind);
    this.emit({ event: { $case: 'submitJob', value: { requestId, taskId, what, includeResult } } });
  }

  private callFailed(requestId: string, kind: 'algorithm' | 'pipeline', error: string): SidecarFrame {
    return kind === 'algorithm'
      ? { command: 'algorithmExecutionError', data: { execId: requestId, error } }
      : { command: 'subPipelineError', data: { subPipelineId: requestId, error } };
  }

  private jobDone(done: JobDone): void {
    const kind = this.calls.get(done.requestId);
    if (!kind) return;
    this.calls.delete(done.requestId);
    if (done.state !== JobState.JOB_STATE_COMPLETED) {
      const how = done.jobId
        ? `child job ${done.jobId} ${JobState[done.state].replace('JOB_STATE_', '').toLowerCase()}`
        : 'child job';
      this.toAlgorithm(this.callFailed(done.requestId, kind, `${how}: ${done.error || 'no reason given'}`));
      return;
    }
    void this.childResults(done, kind).catch((err: unknown) =>
      this.toAlgorithm(
        this.callFailed(done.requestId, kind, `cannot download the child job's result: ${message(err)}`),
      ),
    );
  }

  private async childResults(done: JobDone, kind: 'algorithm' | 'pipeline'): Promise<void> {
    const storage: Record<string, { path: string }> = {};
    const results = [];
    for (const r of done.results) {
      const k = r.result?.kind;
      let value: unknown = null;
      if (k?.$case === 'inline') value = decode(k.value);
      else if (k?.$case === 'ref' && this.stager) {
        // Large results stay in storage; the wrapper reads them from a local file.
        storage[k.value.key] = { path: await this.stager.input(k.value.key) };
        value = new BlobRef(k.value.key, []);
      }
      results.push({
        nodeName: r.nodeName,
        algorithmName: r.algorithmName,
        ...(r.batchIndex >= 0 ? { batchIndex: r.batchIndex } : {}),
        result: value,
      });
    }
    if (kind === 'algorithm') {
      this.toAlgorithm({
        command: 'algorithmExecutionDone',
        data: { execId: done.requestId, response: results[0]?.result, storage },
      });
    } else {
      this.toAlgorithm({
        command: 'subPipelineDone',
        data: { subPipelineId: done.requestId, response: results, storage },
      });
    }
  }

  private onFrame(f: AlgorithmFrame): void {
    switch (f.command) {
      case 'startAlgorithmExecution':
        this.submitJob(
          f.data.execId,
          'algorithm',
          { $case: 'algorithm', value: { name: f.data.algorithmName, input: encode(f.data.input ?? []) } },
          f.data.includeResult !== false,
        );
        return;
      case 'startStoredSubPipeline':
        this.submitJob(
          f.data.subPipelineId,
          'pipeline',
          {
            $case: 'stored',
            value: {
              name: f.data.subPipeline.name,
              flowInput: f.data.subPipeline.flowInput ? encode(f.data.subPipeline.flowInput) : Buffer.alloc(0),
            },
          },
          f.data.includeResult !== false,
        );
        return;
      case 'startRawSubPipeline': {
        const { flowInput, ...descriptor } = f.data.subPipeline;
        this.submitJob(
          f.data.subPipelineId,
          'pipeline',
          {
            $case: 'raw',
            value: {
              pipeline: PipelineDescriptor.fromJSON(descriptor),
              // msgpack, not the descriptor's Struct: binary values survive.
              flowInput: flowInput ? encode(flowInput) : Buffer.alloc(0),
            },
          },
          f.data.includeResult !== false,
        );
        return;
      }
      case 'initialized':
        this.emit({ event: { $case: 'initialized', value: { taskId: f.data.taskId } } });
        return;
      case 'started':
        this.emit({ event: { $case: 'started', value: { taskId: f.data.taskId } } });
        return;
      case 'progress':
        this.emit({
          event: {
            $case: 'progress',
            value: { taskId: f.data.taskId, percent: f.data.percent, message: f.data.message },
          },
        });
        return;
      case 'done': {
        const cur = this.current;
        if (!cur || !this.owns(f.data.taskId)) return;
        this.current = undefined;
        const metadata: Record<string, { type: string; size: number }> = {};
        for (const [k, v] of Object.entries(f.data.metadata ?? {})) metadata[k] = { type: v.type, size: v.size };
        const taskId = f.data.taskId;
        if (!f.data.stored) {
          const result = { kind: { $case: 'inline' as const, value: encode(f.data.value ?? null) } };
          this.emit({ event: { $case: 'done', value: { taskId, result, metadata } } });
          this.releaseStage();
          return;
        }
        const size = f.data.stored.size;
        const ref = { kind: { $case: 'ref' as const, value: { key: cur.outputKey, size } } };
        if (this.stager?.inPlace !== false) {
          this.emit({ event: { $case: 'done', value: { taskId, result: ref, metadata } } });
          return;
        }
        // The result is a local file until it is uploaded; Done only once the blob exists.
        const stager = this.stager;
        void stager.commitOutput(cur.outputKey).then(
          () => {
            this.emit({ event: { $case: 'done', value: { taskId, result: ref, metadata } } });
            this.releaseStage();
          },
          (err: unknown) => {
            this.taskError(taskId, 'StorageError', `cannot upload the task's result: ${message(err)}`);
            void stager.discardOutput(cur.outputKey).finally(() => this.releaseStage());
          },
        );
        return;
      }
      case 'errorMessage': {
        if (!this.owns(f.data.taskId)) return;
        this.current = undefined;
        // A wrapper in another language may send a partial error; the task must still fail, not hang.
        const e: Partial<WireFailure> = f.data.error ?? {};
        this.emit({
          event: {
            $case: 'error',
            value: {
              taskId: f.data.taskId,
              failure: {
                type: String(e.type ?? 'Error'),
                message: String(e.message ?? 'the algorithm reported an error without a message'),
                stack: String(e.stack ?? ''),
                crash: false,
                ...(typeof e.exitCode === 'number' && Number.isInteger(e.exitCode) ? { exitCode: e.exitCode } : {}),
              },
            },
          },
        });
        this.releaseStage();
        return;
      }
      case 'log':
        if (!this.owns(f.data.taskId)) return;
        this.emit({
          event: {
            $case: 'log',
            value: { taskId: f.data.taskId, stream: String(f.data.stream), data: Buffer.from(f.data.data) },
          },
        });
        return;
      case 'stopped':
        if (!this.owns(f.data.taskId)) return;
        this.current = undefined;
        this.emit({ event: { $case: 'stopped', value: { taskId: f.data.taskId } } });
        this.releaseStage();
        return;
    }
  }

  /** After a task: lets a remote store's stager evict inputs beyond its cache size. */
  private releaseStage(): void {
    const stager = this.stager;
    if (!stager || stager.inPlace) return;
    void stager.release().catch((err: unknown) => this.opts.log.warn('cache eviction failed', { err: message(err) }));
  }

  /**
   * Whether a task-ending frame is about the task the worker holds. A frame for
   * an earlier task (a result that crossed a stop) must not end the current one.
   */
  private owns(taskId: string): boolean {
    if (this.current?.taskId === taskId) return true;
    this.opts.log.warn('dropped a late frame for a task this worker no longer holds', { taskId });
    return false;
  }

  /** The algorithm is gone: a crash when it held a task. The worker ends either way. */
  private algorithmGone(reason: string): void {
    if (this.ending) return;
    const cur = this.current;
    this.emit({
      event: {
        $case: 'error',
        value: { taskId: cur?.taskId ?? '', failure: { type: 'Crash', message: reason, stack: '', crash: true } },
      },
    });
    this.shutdown(1, reason);
  }

  private fail(reason: string): void {
    this.opts.log.error(reason);
    this.emit({
      event: {
        $case: 'error',
        value: { taskId: '', failure: { type: 'StartError', message: reason, stack: '', crash: false } },
      },
    });
    this.shutdown(1, reason);
  }

  /** Ends the worker: stops the algorithm, closes the stream, resolves done. */
  shutdown(code: number, reason: string): void {
    if (this.ending) return;
    this.opts.log.info('sidecar exiting', { reason });
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.algo && this.algo.readyState === this.algo.OPEN) {
      this.toAlgorithm({ command: 'exit', data: { exitCode: code } });
    }
    this.ending = true;
    const call = this.call;
    // Exit only once the control plane has our last events (it closes its side
    // when we end ours), or after a second: otherwise the process may be seen
    // exiting before the reason it is exiting arrives.
    const streamClosed = new Promise<void>((resolve) => {
      if (!call) return resolve();
      const t = setTimeout(resolve, 1000);
      const done = (): void => {
        clearTimeout(t);
        resolve();
      };
      call.once('status', done);
      call.once('error', done);
      call.once('close', done);
      call.end();
    });
    const child = this.child;
    const childExited = new Promise<void>((resolve) => {
      if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
      const kill = setTimeout(() => child.kill('SIGKILL'), 2000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
    });
    void Promise.all([streamClosed, childExited])
      .then(() => this.stager?.close())
      .catch((err: unknown) => this.opts.log.warn('cannot remove the payload cache', { err: message(err) }))
      .finally(() => {
        this.wss.close();
        this.resolveDone(code);
      });
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
