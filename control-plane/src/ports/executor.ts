/**
 * The executor port: starts and stops workers (a sidecar plus the algorithm
 * process it starts) somewhere the control plane need not know about: local
 * processes today, pods later.
 *
 * Contract (what the dispatcher relies on; `contracts/executor.contract.ts`
 * checks it against every adapter):
 * - **admits(def)** says, without side effects, whether this executor can
 *   ever run the algorithm; a refusal is a sentence the engines show to the
 *   user (prefixed with what refused it). The engines ask it before they
 *   accept work; no engine knows which executor runs the code.
 * - **fits(def)** says whether the algorithm's requests fit this executor's
 *   largest place at all; **canStart(def)** whether the free capacity admits
 *   one more worker now. Both are synchronous and cheap (the dispatcher asks
 *   on every scale decision).
 * - **start(launch)** resolves a handle once the worker is on its way (its
 *   resources are then accounted as used), or rejects with the reason it
 *   could not be started; a rejected start holds no resources. The worker
 *   connects to the control plane with the launch contract below; the
 *   handle's onExit fires exactly once when it is gone, however it ended
 *   (also when it never got going), and only then are its resources free
 *   again ("stop means free only after onExit").
 * - **stop({force})**: force=false asks the worker to end (it may finish
 *   its current step); force=true ends it without delay. Either may be called
 *   any number of times, also after exit.
 * - **advertise(listen)**: the address the workers this executor starts
 *   dial to reach a control plane listening on `listen`; per executor,
 *   because a pod cannot dial the control plane's loopback.
 * - **shutdown()** stops every worker still running and resolves once their
 *   onExit has fired (or a bounded wait passed).
 *
 * Launch contract (environment of the sidecar; wrappers/node/src/sidecar/main.ts):
 * `WEFT_SERVER` (host:port to dial), `WEFT_WORKER_ID` (sent back in Hello),
 * `WEFT_ALGORITHM_NAME`, `WEFT_ALGORITHM_ENV` (nodejs | python),
 * `WEFT_ALGORITHM_PATH` (code directory on the worker's machine or image),
 * `WEFT_ALGORITHM_STAGE` (stage id of the code in the blob store, '' when
 * none), `WEFT_ALGORITHM_ENTRY` and `WEFT_ALGORITHM_ENV_JSON` (the
 * algorithm's own environment, a JSON object).
 */

/** An algorithm as the executor needs it, normalised from its spec. */
export interface AlgorithmDef {
  name: string;
  env: 'nodejs' | 'python';
  /**
   * Where the code is on the worker's machine or image (built-ins, code
   * baked into an image); '' when the code comes from codeStage or the
   * image alone.
   */
  codePath: string;
  /**
   * Stage id of the algorithm's code in the blob store, which the worker
   * lays out before it starts the algorithm; '' when none (built-ins and
   * image-only algorithms).
   */
  codeStage: string;
  entryPoint: string;
  /** Container image (algorithmImage); '' when none. */
  image: string;
  cpu: number;
  memBytes: number;
  gpu: number;
  minHotWorkers: number;
  /** 0: executor default. */
  maxWorkers: number;
  env_vars: Record<string, string>;
}

/** Everything an executor needs to start one worker. */
export interface WorkerLaunch {
  workerId: string;
  algorithm: AlgorithmDef;
  /** host:port the sidecar dials: {@link Executor.advertise} of the listening address. */
  serverAddress: string;
}

/** A started worker. It carries no process id or signal: a pod has neither. */
export interface WorkerHandle {
  readonly workerId: string;
  /** Where the worker's output goes (a file path, a pod's log): for people, not parsed. */
  readonly logLocation: string;
  /** Asks the worker to end; force ends it at once. Idempotent, also after exit. */
  stop(opts: { force: boolean }): void;
  /**
   * Registers a callback for the worker's end, with a reason for the log
   * (e.g. "process exited (code 1, signal null)"). It fires exactly once,
   * also for callbacks registered after the end; the worker's resources are
   * released before it fires.
   */
  onExit(cb: (reason: string) => void): void;
}

/** What an executor holds and what its live workers use. */
export interface Capacity {
  cpu: number;
  memBytes: number;
  usedCpu: number;
  usedMemBytes: number;
}

/** Where a control plane listens. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** See the contract in this module's header. */
export interface Executor {
  /** The worker count used when an algorithm sets no maxWorkers. */
  readonly defaultMaxWorkers: number;
  /** undefined when this executor can run the algorithm; otherwise why not. */
  admits(alg: AlgorithmDef): string | undefined;
  /** Whether free resources admit one more worker of this algorithm now. */
  canStart(alg: AlgorithmDef): boolean;
  /** Whether the algorithm could ever fit on this executor's machines. */
  fits(alg: AlgorithmDef): boolean;
  start(launch: WorkerLaunch): Promise<WorkerHandle>;
  capacity(): Capacity;
  /** host:port that workers started by this executor dial to reach a server listening on `listen`. */
  advertise(listen: ListenAddress): string;
  /** Stops every worker still running. */
  shutdown(): Promise<void>;
}
