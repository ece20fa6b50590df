import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  Metadata,
  Server,
  credentials,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { WeftError, decode, encode } from '@weft/common';
import {
  ClosuresClient,
  ClosuresService,
  JobResult,
  JobState,
  JobStatus,
  JobsService,
  type BlobChunk,
  type CancelClosureRequest,
  type ClosureEvent,
  type ClosuresServer,
  type DataChunk,
  type DownloadResultRequest,
  type ExecResponse,
  type ExecStoredRequest,
  type JobEvent,
  type JobRef,
  type SubmitClosureRequest,
  type TaskFailure,
} from '@weft/proto';
import { afterEach, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import {
  BLOB_CHUNK_BYTES,
  ClosuresStageStore,
  FsStageStore,
  HashCache,
  decodeValue,
  sha256,
  validateManifest,
} from '@weft/stage';
import { RunEnvironment, TransientVolume, type RunEnvironmentSpec } from './environment.js';
import { JobError, RemoteError, Submitter, type SubmitterOptions } from './submitter.js';
// The fixture module is loaded by Node itself (see vitest.config.mjs); its types come from here.
import * as fns from '../test-fixtures/proj/src/remote-fns.js';

const FIXTURES = fileURLToPath(new URL('../test-fixtures/', import.meta.url));
const REGISTER_TS = join(FIXTURES, 'register-ts.mjs');
const run = promisify(execFile);

/** A run of the fake server: its worker process, and its events so far for Submits that attach. */
interface FakeRun {
  executionId: string;
  events: ClosureEvent[];
  final: ClosureEvent | undefined;
  sinks: Set<(ev: ClosureEvent) => void>;
  child: ChildProcess | undefined;
  stopReason: TaskFailure | undefined;
}

/** Forwards TCP connections to the fake server, so a test can cut them as a network would. */
class CuttableProxy {
  private readonly sockets = new Set<Socket>();
  private server: NetServer | undefined;

  async start(targetPort: number): Promise<number> {
    this.server = createServer((downstream) => {
      const upstream = connect(targetPort, '127.0.0.1');
      for (const s of [downstream, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          downstream.destroy();
          upstream.destroy();
        });
      }
      downstream.pipe(upstream).pipe(downstream);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    if (typeof address !== 'object' || address === null) throw new Error('proxy has no port');
    return address.port;
  }

  /** Cuts every connection, both ways. */
  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

/**
 * An in-process weft server with just the Closures and Jobs calls the
 * Submitter uses. Staging goes into a real FsStageStore; a run is a real
 * Node process (test-fixtures/run-closure.mjs) that materializes the stage
 * and calls the function, so a round trip is what a worker does. Submit is
 * idempotent by submission id, as the contract says.
 */
class FakeWeft {
  /** Method names in the order they were called. */
  readonly calls: string[] = [];
  readonly submits: SubmitClosureRequest[] = [];
  readonly cancels: CancelClosureRequest[] = [];
  readonly keepAlives: string[] = [];
  readonly closedSessions: string[] = [];
  readonly blobsPut: string[] = [];
  readonly execs: { name: string; flowInput: unknown }[] = [];
  readonly runs = new Map<string, FakeRun>();
  runsStarted = 0;
  /** Submit streams still to break right after `accepted`, and how. */
  breakStreams = 0;
  breakHow: 'cut' | 'end' = 'cut';
  breakAfter: 'accepted' | 'first log' = 'accepted';
  /** Refuse every Submit with this status. */
  refuse: { code: status; details: string; field?: string } | undefined;
  /** Accept runs and never answer. */
  hang = false;
  sessionTtlMs = 30_000;
  /** What the proxy forwards to; clients use {@link address}. */
  readonly proxy = new CuttableProxy();
  address = '';
  private readonly server = new Server();
  private sessions = 0;
  private executions = 0;

  constructor(
    private readonly store: FsStageStore,
    private readonly cacheDir: string,
  ) {}

  async start(): Promise<void> {
    this.server.addService(ClosuresService, this.closures());
    // Only the Jobs calls runPipeline makes; grpc-js answers UNIMPLEMENTED for the rest.
    this.server.addService(JobsService, this.jobs());
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    this.address = `127.0.0.1:${await this.proxy.start(port)}`;
  }

  async stop(): Promise<void> {
    for (const r of this.runs.values()) r.child?.kill('SIGKILL');
    this.server.forceShutdown();
    await this.proxy.stop();
  }

  /** Submit requests for one submission id. */
  submitsOf(submissionId: string): SubmitClosureRequest[] {
    return this.submits.filter((s) => s.submissionId === submissionId);
  }

  private closures(): ClosuresServer {
    return {
      missingBlobs: (call, cb) => {
        this.calls.push('missingBlobs');
        this.store.missing(call.request.hashes).then(
          (hashes) => cb(null, { hashes }),
          (err: Error) => cb(err),
        );
      },
      putBlob: (call, cb) => {
        this.calls.push('putBlob');
        const chunks: Buffer[] = [];
        let hash = '';
        let first = true;
        call.on('data', (chunk: BlobChunk) => {
          if (first) hash = chunk.hash;
          first = false;
          // The Submitter sends 1 MiB messages at most.
          if (chunk.data.length > BLOB_CHUNK_BYTES) call.destroy(new Error('chunk too large'));
          chunks.push(Buffer.from(chunk.data));
        });
        call.on('end', () => {
          const data = Buffer.concat(chunks);
          this.store.put(hash, data).then(
            () => {
              this.blobsPut.push(hash);
              cb(null, { hash, size: data.length });
            },
            (err: Error) => cb({ code: status.DATA_LOSS, details: err.message }),
          );
        });
      },
      putManifest: (call, cb) => {
        this.calls.push('putManifest');
        const { stageId, manifestJson } = call.request;
        if (sha256(manifestJson) !== stageId) {
          cb({ code: status.INVALID_ARGUMENT, details: 'stage_id: does not match the manifest' });
          return;
        }
        this.store.putManifest(stageId, validateManifest(JSON.parse(manifestJson))).then(
          () => cb(null, {}),
          (err: Error) => cb({ code: status.FAILED_PRECONDITION, details: err.message }),
        );
      },
      submit: (call: ServerWritableStream<SubmitClosureRequest, ClosureEvent>) => this.submit(call),
      cancel: (call, cb) => {
        this.calls.push('cancel');
        this.cancels.push(call.request);
        const r = this.runs.get(call.request.submissionId);
        if (!r) {
          cb({ code: status.NOT_FOUND, details: `closure submission ${call.request.submissionId} not found` });
          return;
        }
        const cancelled = r.final === undefined;
        if (cancelled) {
          r.stopReason = { type: 'AbortError', message: call.request.reason, stack: '', crash: false };
          r.child?.kill('SIGKILL');
        }
        cb(null, { cancelled });
      },
      openSession: (_call, cb) => {
        this.calls.push('openSession');
        cb(null, { sessionId: `session-${++this.sessions}`, ttlMs: this.sessionTtlMs });
      },
      keepAlive: (call, cb) => {
        this.keepAlives.push(call.request.sessionId);
        cb(null, { sessionId: call.request.sessionId, ttlMs: this.sessionTtlMs });
      },
      closeSession: (call, cb) => {
        this.calls.push('closeSession');
        this.closedSessions.push(call.request.sessionId);
        cb(null, { deletedVolumes: [] });
      },
    };
  }

  private submit(call: ServerWritableStream<SubmitClosureRequest, ClosureEvent>): void {
    this.calls.push('submit');
    const req = call.request;
    this.submits.push(req);
    if (this.refuse) {
      const metadata = new Metadata();
      if (this.refuse.field) metadata.set('weft-field', this.refuse.field);
      call.emit('error', { code: this.refuse.code, details: this.refuse.details, metadata });
      return;
    }
    const breaking = this.breakStreams > 0;
    if (breaking) this.breakStreams--;
    let r: FakeRun | undefined;
    const breakNow = (): void => {
      r?.sinks.delete(sink);
      // Let what was written reach the client first.
      setTimeout(() => (this.breakHow === 'cut' ? this.proxy.cut() : call.end()), 50);
    };
    const sink = (ev: ClosureEvent): void => {
      if (call.cancelled) return;
      call.write(ev);
      if (ev.event?.$case === 'result' || ev.event?.$case === 'failure') call.end();
      else if (breaking && this.breakAfter === 'first log' && ev.event?.$case === 'log') breakNow();
    };
    const existing = this.runs.get(req.submissionId);
    const accepted = (executionId: string, attached: boolean): ClosureEvent => ({
      event: { $case: 'accepted', value: { submissionId: req.submissionId, executionId, attached } },
    });
    if (existing) {
      r = existing;
      sink(accepted(r.executionId, true));
      for (const ev of r.events) sink(ev);
      if (r.final) return sink(r.final);
    } else {
      r = this.startRun(req);
      sink(accepted(r.executionId, false));
    }
    r.sinks.add(sink);
    const run = r;
    call.on('cancelled', () => run.sinks.delete(sink));
    if (breaking && this.breakAfter === 'accepted') breakNow();
  }

  private startRun(req: SubmitClosureRequest): FakeRun {
    this.runsStarted++;
    const r: FakeRun = {
      executionId: `exec-${++this.executions}`,
      events: [],
      final: undefined,
      sinks: new Set(),
      child: undefined,
      stopReason: undefined,
    };
    this.runs.set(req.submissionId, r);
    if (this.hang) return r;
    const emit = (ev: ClosureEvent): void => {
      if (ev.event?.$case === 'result' || ev.event?.$case === 'failure') r.final = ev;
      else r.events.push(ev);
      for (const s of r.sinks) s(ev);
    };
    const child = spawn(
      process.execPath,
      ['--import', REGISTER_TS, join(FIXTURES, 'run-closure.mjs'), this.store.dir, req.stageId, this.cacheDir],
      { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'advanced' },
    );
    r.child = child;
    for (const stream of ['stdout', 'stderr'] as const) {
      let offset = 0;
      child[stream]!.on('data', (data: Buffer) => {
        if (req.streamLogs) emit({ event: { $case: 'log', value: { stream, data, offset } } });
        offset += data.byteLength;
      });
    }
    let answer: { ok?: Uint8Array; error?: TaskFailure } | undefined;
    child.on('message', (m: { ok?: Uint8Array; error?: TaskFailure }) => (answer = m));
    child.send({ args: req.args });
    const timer =
      req.timeoutMs > 0
        ? setTimeout(() => {
            r.stopReason = {
              type: 'TimeoutError',
              message: `the closure ran longer than its timeout of ${req.timeoutMs} ms and was stopped`,
              stack: '',
              crash: false,
            };
            child.kill('SIGKILL');
          }, req.timeoutMs)
        : undefined;
    // 'close': the process ended and its output has all been read, so logs come before the result.
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      if (r.stopReason) emit({ event: { $case: 'failure', value: r.stopReason } });
      else if (answer?.ok) emit({ event: { $case: 'result', value: { value: Buffer.from(answer.ok) } } });
      else if (answer?.error) emit({ event: { $case: 'failure', value: { ...answer.error, crash: false } } });
      else
        emit({
          event: { $case: 'failure', value: { type: 'Crash', message: `exit code ${code}`, stack: '', crash: true } },
        });
    });
    return r;
  }

  private jobs(): UntypedServiceImplementation {
    const statusOf = (state: JobState, error = ''): JobStatus =>
      JobStatus.fromPartial({ jobId: 'job-1', pipelineName: this.execs.at(-1)?.name ?? '', state, error });
    const big = Buffer.alloc(3 * 1024 * 1024, 7);
    return {
      execStored: (call: ServerUnaryCall<ExecStoredRequest, ExecResponse>, cb: sendUnaryData<ExecResponse>) => {
        const { name, flowInputMsgpack } = call.request;
        if (name === 'missing') {
          cb({ code: status.NOT_FOUND, details: 'pipeline "missing" not found' });
          return;
        }
        this.execs.push({ name, flowInput: flowInputMsgpack.length > 0 ? decode(flowInputMsgpack) : undefined });
        cb(null, { jobId: 'job-1' });
      },
      watch: (call: ServerWritableStream<JobRef, JobEvent>) => {
        const failing = this.execs.at(-1)?.name === 'broken';
        call.write({ event: { $case: 'status', value: statusOf(JobState.JOB_STATE_ACTIVE) } });
        setTimeout(() => {
          const final = failing
            ? statusOf(JobState.JOB_STATE_FAILED, 'node Sum failed: TypeError: boom')
            : statusOf(JobState.JOB_STATE_COMPLETED);
          call.write({ event: { $case: 'status', value: final } });
          call.end();
        }, 20);
      },
      getResult: (_call: ServerUnaryCall<JobRef, JobResult>, cb: sendUnaryData<JobResult>) => {
        if (this.execs.at(-1)?.name === 'broken') {
          cb(
            null,
            JobResult.fromPartial({ jobId: 'job-1', state: JobState.JOB_STATE_FAILED, error: 'node Sum failed' }),
          );
          return;
        }
        cb(
          null,
          JobResult.fromPartial({
            jobId: 'job-1',
            state: JobState.JOB_STATE_COMPLETED,
            results: [
              {
                nodeName: 'Sum',
                algorithmName: 'sum',
                batchIndex: -1,
                result: { kind: { $case: 'inline', value: encode({ total: 6 }) } },
              },
              {
                nodeName: 'Big',
                algorithmName: 'big',
                batchIndex: 0,
                result: { kind: { $case: 'ref', value: { key: 'jobs/job-1/1/0', size: big.length } } },
              },
            ],
          }),
        );
      },
      downloadResult: (call: ServerWritableStream<DownloadResultRequest, DataChunk>) => {
        const bytes = encode(big);
        for (let at = 0; at < bytes.length; at += 1024 * 1024) {
          call.write({ data: bytes.subarray(at, at + 1024 * 1024), size: at === 0 ? bytes.length : 0 });
        }
        call.end();
      },
    };
  }
}

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('Submitter', () => {
  let tmp: string;
  let fake: FakeWeft;
  let lines: string[];
  const submitters: Submitter[] = [];

  function submitter(options: SubmitterOptions = {}): Submitter {
    const s = new Submitter({
      server: fake.address,
      logs: false,
      log: (line) => lines.push(line),
      hashCache: new HashCache({ dir: null }),
      ...options,
    });
    submitters.push(s);
    return s;
  }

  beforeEach(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'weft-submitter-'));
    fake = new FakeWeft(new FsStageStore(join(tmp, 'store')), join(tmp, 'stages'));
    await fake.start();
    lines = [];
  });

  afterEach(async () => {
    await Promise.all(submitters.splice(0).map((s) => s.close()));
    await fake.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  it('runs a function remotely and resolves with its typed result', async () => {
    const weft = submitter();
    const sum = await weft.submit(fns.add, [2, 3]);
    expectTypeOf(sum).toEqualTypeOf<number>();
    expect(sum).toBe(5);

    const addLater = weft.remote(fns.addLater);
    expectTypeOf(addLater).toEqualTypeOf<(a: number, b: number) => Promise<number>>();
    expect(await addLater(4, 1)).toBe(5);

    // A closure: its captured value travels with it.
    const triple = fns.makeScaler(3);
    expect(await weft.remote(triple)(5)).toBe(15);
    expect(lines.at(-1)).toMatch(/^weft: staged closure at remote-fns\.ts:\d+: /);

    // Wrong arguments do not compile.
    // @ts-expect-error a string is not a number
    const wrong = (): Promise<number> => weft.submit(fns.add, [1, 'two']);
    void wrong;
    // @ts-expect-error too few arguments
    const short = (): Promise<number> => addLater(1);
    void short;

    // One session for all of them, sent with every run.
    expect(fake.calls.filter((c) => c === 'openSession')).toHaveLength(1);
    expect(new Set(fake.submits.map((s) => s.sessionId))).toEqual(new Set(['session-1']));
    expect(fake.submits.map((s) => s.name)).toEqual(['add', 'addLater', expect.stringMatching(/^closure at /)]);
    expect(fake.submits[0]!.environment).toEqual(RunEnvironment.defaults().toSpec());
  });

  it('logs what it staged, and uploads nothing for an unchanged function', async () => {
    const weft = submitter();
    expect(await weft.submit(fns.add, [1, 1])).toBe(2);
    const first = /^weft: staged add: (\d+) files newly uploaded, 0 cached \(stage ([0-9a-f]{12})\)$/.exec(lines[0]!);
    expect(first, lines[0]).not.toBeNull();
    const uploaded = Number(first![1]);
    expect(uploaded).toBeGreaterThan(0);
    expect(fake.blobsPut).toHaveLength(uploaded);
    expect(fake.submits[0]!.stageId.startsWith(first![2]!)).toBe(true);

    const before = fake.calls.length;
    expect(await weft.submit(fns.add, [2, 2])).toBe(4);
    // The same process staged it already: nothing to report, and only the
    // Submit itself reached the server (no MissingBlobs, PutBlob or PutManifest).
    expect(lines).toHaveLength(1);
    expect(fake.calls.slice(before)).toEqual(['submit']);
    expect(fake.submits[1]!.stageId).toBe(fake.submits[0]!.stageId);

    // Another Submitter (a new process, as far as the server knows) asks, and uploads nothing either.
    const other = submitter();
    expect(await other.submit(fns.add, [3, 3])).toBe(6);
    expect(lines[1]).toBe(`weft: staged add: 0 files newly uploaded, ${uploaded} cached (stage ${first![2]})`);
    expect(fake.blobsPut).toHaveLength(uploaded);
  });

  it('keeps binary data, Maps and Buffers intact both ways', async () => {
    const weft = submitter();
    const data = new Uint8Array([1, 2, 3, 250]);
    const out = await weft.submit(fns.reverseBytes, [data]);
    expect(out.reversed).toBeInstanceOf(Uint8Array);
    expect([...out.reversed]).toEqual([250, 3, 2, 1]);
    expect(Buffer.isBuffer(out.buf)).toBe(true);
    expect([...out.buf]).toEqual([0, 1, 2, 254, 255]);
    expect(out.map).toBeInstanceOf(Map);
    expect(out.map.get('size')).toBe(4);
    // The arguments on the wire are the value codec's msgpack.
    expect(decodeValue(fake.submits[0]!.args)).toEqual([data]);
  });

  it('rejects with the remote error: its name, message and stack, and the execution', async () => {
    const weft = submitter();
    const err = await weft.submit(fns.parse, ['abc']).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RemoteError);
    const remote = err as RemoteError;
    expect(remote.name).toBe('TypeError');
    expect(remote.message).toBe('not a number: "abc"');
    expect(remote.remote).toBe(true);
    expect(remote.executionId).toBe('exec-1');
    expect(remote.submissionId).toBe(fake.submits[0]!.submissionId);
    const stack = remote.stack!.split('\n');
    expect(stack[0]).toBe('TypeError: not a number: "abc"');
    // Where it failed remotely: the staged copy of the fixture module.
    expect(stack[1]).toMatch(/at parseInput \(.*\/stages\/[0-9a-f]{64}\/.*remote-fns\.js:\d+:\d+\)/);
    expect(stack.at(-1)).toBe('    at <weft execution exec-1>');
  });

  it.each(['cut', 'end'] as const)(
    'submits again under the same id when the stream breaks (%s), and the run happens once',
    async (how) => {
      fake.breakStreams = 1;
      fake.breakHow = how;
      const weft = submitter();
      expect(await weft.submit(fns.addLater, [20, 3])).toBe(23);
      expect(fake.submits).toHaveLength(2);
      const id = fake.submits[0]!.submissionId;
      expect(fake.submitsOf(id)).toHaveLength(2);
      expect(fake.runsStarted).toBe(1);
      expect(lines.some((l) => l.startsWith('weft: lost the stream of addLater (execution exec-1): '))).toBe(true);
    },
  );

  it('shows the remote output once, even when a reconnection replays it', async () => {
    fake.breakStreams = 1;
    fake.breakAfter = 'first log';
    const seen: string[] = [];
    const weft = submitter();
    // The first stream breaks after some output; the second replays all of it.
    const result = await weft.submit(fns.chatty, [3], undefined, {
      onLog: (stream, data) => seen.push(`${stream}:${data.toString()}`),
    });
    expect(result).toBe(3);
    expect(fake.submits[0]!.streamLogs).toBe(true);
    const out = seen
      .filter((s) => s.startsWith('stdout:'))
      .map((s) => s.slice(7))
      .join('');
    const errOut = seen
      .filter((s) => s.startsWith('stderr:'))
      .map((s) => s.slice(7))
      .join('');
    expect(out).toBe('out 0\nout 1\nout 2\n');
    expect(errOut).toBe('a warning\n');
    expect(fake.submits).toHaveLength(2);
    expect(fake.runsStarted).toBe(1);
  });

  it('refuses an argument that cannot be sent, naming it, before sending anything', async () => {
    const weft = submitter();
    await expect(weft.submit(fns.add, [1, (() => 2) as unknown as number])).rejects.toThrow(
      'args[1]: a function cannot be sent',
    );
    await expect(weft.submit(fns.sum, [{ items: [1, Symbol('x') as unknown as number] }])).rejects.toThrow(
      'args[0].items[1]: a symbol cannot be sent',
    );
    await expect(weft.submit(fns.add, [1, 2], undefined, { timeoutMs: 1.5 })).rejects.toThrow(
      'timeoutMs: must be a whole number of milliseconds, got 1.5',
    );
    expect(fake.calls).toEqual([]);
  });

  it('cancels the run on abort and rejects with the abort reason', async () => {
    const weft = submitter();
    const controller = new AbortController();
    const pending = weft.submit(fns.sleep, [30_000], undefined, { signal: controller.signal });
    await until(() => fake.runsStarted === 1 && fake.runs.values().next().value?.child !== undefined, 'the run');
    let cancelsAtRejection = -1;
    const settled = pending.then(
      () => undefined,
      (e: unknown) => {
        cancelsAtRejection = fake.cancels.length;
        return e;
      },
    );
    controller.abort();
    const err = await settled;
    expect(err).toBe(controller.signal.reason);
    expect((err as Error).name).toBe('AbortError');
    // The server was told before the promise rejected.
    expect(cancelsAtRejection).toBe(1);
    expect(fake.cancels[0]).toEqual({
      submissionId: fake.submits[0]!.submissionId,
      reason: 'This operation was aborted',
    });
  });

  it('rejects at once, sending nothing, when the signal is already aborted', async () => {
    const weft = submitter();
    const reason = new Error('not today');
    await expect(weft.submit(fns.add, [1, 2], undefined, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(fake.calls).toEqual([]);
  });

  it("sends the timeout to the server and reports the server's timeout", async () => {
    const weft = submitter();
    const err = await weft.submit(fns.sleep, [30_000], undefined, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(fake.submits[0]!.timeoutMs).toBe(300);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).name).toBe('TimeoutError');
  });

  it('gives up locally when the server does not answer past the timeout, and cancels', async () => {
    fake.hang = true;
    const weft = submitter({ timeoutGraceMs: 200 });
    const t0 = Date.now();
    const err = await weft.submit(fns.sleep, [10], undefined, { timeoutMs: 100 }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).name).toBe('TimeoutError');
    expect(err).not.toBeInstanceOf(RemoteError);
    expect((err as Error).message).toContain('did not finish within its timeout of 100 ms');
    expect(err).toMatchObject({ executionId: 'exec-1', submissionId: fake.submits[0]!.submissionId });
    expect(fake.cancels.map((c) => c.submissionId)).toEqual([fake.submits[0]!.submissionId]);
  });

  it('opens one session lazily, keeps it alive, and closes it', async () => {
    fake.sessionTtlMs = 150;
    const weft = submitter();
    expect(fake.calls).toEqual([]);
    await Promise.all([weft.submit(fns.add, [1, 2]), weft.submit(fns.add, [3, 4])]);
    expect(fake.calls.filter((c) => c === 'openSession')).toHaveLength(1);
    // Every ttl/3 = 50 ms.
    await until(() => fake.keepAlives.length >= 3, 'keep-alives', 2_000);
    expect(new Set(fake.keepAlives)).toEqual(new Set(['session-1']));

    await weft.close();
    expect(fake.closedSessions).toEqual(['session-1']);
    const sent = fake.keepAlives.length;
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(fake.keepAlives.length).toBeLessThanOrEqual(sent + 1);
    await expect(weft.submit(fns.add, [1, 2])).rejects.toThrow('this Submitter is closed');
    await weft.close(); // a second close is harmless
    expect(fake.closedSessions).toEqual(['session-1']);
  });

  it('closes its session on beforeExit when a script just ends', async () => {
    const { stdout } = await run(process.execPath, ['--import', REGISTER_TS, join(FIXTURES, 'submit-and-exit.mjs')], {
      env: { ...process.env, WEFT_SERVER: fake.address, XDG_CACHE_HOME: join(tmp, 'cache') },
      timeout: 30_000,
    });
    expect(stdout).toBe('result 5\n');
    expect(fake.closedSessions).toEqual(['session-1']);
  });

  it('sends a TransientVolume under one stable name, to every run that mounts it', async () => {
    const weft = submitter();
    const scratch = new TransientVolume('standard', '1Gi');
    const writer = RunEnvironment.defaults().withMount(scratch.readWrite('/scratch'));
    const reader = RunEnvironment.defaults().withMount(scratch.readOnly('/scratch')).withRequest({ cpu: '100m' });
    await weft.submit(fns.add, [1, 1], writer);
    await Promise.all([1, 2].map((n) => weft.submit(fns.add, [n, n], reader)));
    const mounts = fake.submits.map((s) => (s.environment as RunEnvironmentSpec).mounts[0]!);
    expect(mounts.map((m) => m.readOnly)).toEqual([false, true, true]);
    for (const m of mounts) {
      expect(m.volume).toEqual({ kind: 'transient', name: scratch.name, storageClass: 'standard', size: '1Gi' });
    }
    expect(scratch.name).toMatch(/^weft-transient-[0-9a-f]{8}$/);
    expect(new Set(fake.submits.map((s) => s.sessionId)).size).toBe(1);
    expect((fake.submits[1]!.environment as RunEnvironmentSpec).requests).toEqual({ cpu: '100m' });
  });

  it('rejects with the server refusal, naming the field, without retrying', async () => {
    const details = 'environment.mounts[0].volume.storageClass: "gold" is not a storage class of this server';
    fake.refuse = { code: status.INVALID_ARGUMENT, details, field: 'environment.mounts[0].volume.storageClass' };
    const weft = submitter();
    const err = await weft.submit(fns.add, [1, 2]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeftError);
    expect(err).toMatchObject({
      message: details,
      code: status.INVALID_ARGUMENT,
      field: 'environment.mounts[0].volume.storageClass',
      submissionId: fake.submits[0]!.submissionId,
    });
    expect(fake.submits).toHaveLength(1);
  });

  it('stages again and resubmits once when a stage or session it had is refused', async () => {
    const weft = submitter();
    await weft.submit(fns.add, [1, 2]);
    const details = 'stage 1234 has not been uploaded (PutManifest)';
    fake.refuse = { code: status.FAILED_PRECONDITION, details };
    const before = fake.calls.length;
    await expect(weft.submit(fns.add, [1, 2])).rejects.toThrow(details);
    // Submit, the stage checked again (nothing to upload), Submit again under the same id, then the refusal.
    expect(fake.calls.slice(before)).toEqual(['submit', 'missingBlobs', 'putManifest', 'submit']);
    expect(fake.submits[1]!.submissionId).toBe(fake.submits[2]!.submissionId);
  });

  it('runs a stored pipeline and resolves with its decoded leaf results', async () => {
    const weft = submitter();
    const results = await weft.runPipeline('numbers', { data: 3, blob: Buffer.from([1, 2]) });
    expect(fake.execs).toEqual([{ name: 'numbers', flowInput: { data: 3, blob: Buffer.from([1, 2]) } }]);
    expect(results).toHaveLength(2);
    expect(results[0]).toEqual({ nodeName: 'Sum', algorithmName: 'sum', result: { total: 6 } });
    expect(results[1]!.batchIndex).toBe(0);
    const big = results[1]!.result as Buffer;
    expect(Buffer.isBuffer(big)).toBe(true);
    expect(big.length).toBe(3 * 1024 * 1024);
    expect(big.every((b) => b === 7)).toBe(true);
  });

  it("rejects with the job's error when the pipeline does not complete", async () => {
    const weft = submitter();
    const err = await weft.runPipeline('broken').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobError);
    expect(err).toMatchObject({ jobId: 'job-1', state: 'failed', message: 'job job-1 failed: node Sum failed' });
    await expect(weft.runPipeline('missing')).rejects.toThrow('pipeline "missing" not found');
  });
});

describe('ClosuresStageStore', () => {
  it('uploads in 1 MiB chunks, from bytes and from streams', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'weft-grpc-store-'));
    const fake = new FakeWeft(new FsStageStore(join(tmp, 'store')), join(tmp, 'stages'));
    await fake.start();
    const client = new ClosuresClient(fake.address, credentials.createInsecure());
    try {
      const store = new ClosuresStageStore(client);
      const big = Buffer.alloc(BLOB_CHUNK_BYTES * 2 + 10, 3);
      const empty = Buffer.alloc(0);
      const streamed = Buffer.alloc(BLOB_CHUNK_BYTES + 1, 4);
      expect(await store.missing([sha256(big), sha256(empty)])).toEqual([sha256(big), sha256(empty)]);
      await store.put(sha256(big), big);
      await store.put(sha256(empty), empty);
      const pieces = [streamed.subarray(0, 1000), streamed.subarray(1000)];
      await store.put(sha256(streamed), Readable.from(pieces));
      expect(await store.missing([sha256(big), sha256(empty), sha256(streamed)])).toEqual([]);
      await expect(store.put(sha256(big), Buffer.from('other'))).rejects.toMatchObject({ code: status.DATA_LOSS });
    } finally {
      client.close();
      await fake.stop();
      await rm(tmp, { recursive: true, force: true });
    }
  });
});
