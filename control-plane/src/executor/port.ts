/**
 * The executor port: starts and kills workers (a sidecar plus its algorithm
 * process). The local-process adapter is the embedded default; the
 * Kubernetes adapter creates pods.
 */

/** An algorithm as the executor needs it, normalised from its spec. */
export interface AlgorithmDef {
  name: string;
  env: 'nodejs' | 'python';
  /**
   * Directory of the code on the worker's machine (built-ins, code in an
   * image); '' when the code comes from codeStage.
   */
  codePath: string;
  /** Stage id of the code in the blob store, which the worker lays out before it starts; '' when none. */
  codeStage: string;
  entryPoint: string;
  image: string;
  cpu: number;
  memBytes: number;
  gpu: number;
  minHotWorkers: number;
  /** 0: executor default. */
  maxWorkers: number;
  env_vars: Record<string, string>;
}

export interface WorkerLaunch {
  workerId: string;
  algorithm: AlgorithmDef;
  /** host:port the sidecar dials. */
  serverAddress: string;
}

export interface WorkerHandle {
  readonly workerId: string;
  readonly pid: number | undefined;
  /** Where the worker's stdout and stderr go. */
  readonly logPath: string | undefined;
  kill(signal?: NodeJS.Signals): void;
  /** Called once when the worker is gone; releases its resources. */
  onExit(cb: (code: number | null, signal: string | null) => void): void;
}

export interface Capacity {
  cpu: number;
  memBytes: number;
  usedCpu: number;
  usedMemBytes: number;
}

export interface Executor {
  /** The worker count used when an algorithm sets no maxWorkers. */
  readonly defaultMaxWorkers: number;
  /** Whether free resources admit one more worker of this algorithm now. */
  canStart(alg: AlgorithmDef): boolean;
  /** Whether the algorithm could ever fit on this executor's machines. */
  fits(alg: AlgorithmDef): boolean;
  start(launch: WorkerLaunch): WorkerHandle;
  capacity(): Capacity;
  /** Kills every worker still running. */
  shutdown(): Promise<void>;
}
