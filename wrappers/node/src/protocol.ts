/**
 * The local protocol between the sidecar and the algorithm process: a
 * WebSocket on 127.0.0.1 carrying one msgpack map per binary frame,
 * `{command, data}`. docs/protocols.md specifies it for other languages.
 */
import { decode, encode } from '@weft/common';

/** Version the wrapper states in its connection URL (`?protocol=1`). */
export const LOCAL_PROTOCOL_VERSION = 1;

/** Where a staged blob can be read on this machine. */
export interface StagedBlob {
  path: string;
}

/** `initialize` data: the task, with its input (BlobRef extension values stand for staged blobs). */
export interface InitializeData {
  taskId: string;
  jobId: string;
  nodeName: string;
  algorithmName: string;
  pipelineName: string;
  /** -1 when not a batch item. */
  batchIndex: number;
  input: unknown[];
  /** Storage key -> local file holding that msgpack blob. */
  storage: Record<string, StagedBlob>;
  /** Where to write a result larger than threshold bytes (msgpack); omitted: always inline. */
  output: { path?: string; threshold: number };
  /** Paths inside the result whose shape to report when it is stored. */
  savePaths: string[];
  attempt: number;
  kind: string;
  /** Environment variables for this task only (e.g. WEFT_EXECUTION_ID); absent from older sidecars. */
  env?: Record<string, string>;
  /** Also send what the task writes to stdout/stderr as `log` frames. */
  streamLogs?: boolean;
}

export type SidecarFrame =
  | { command: 'initialize'; data: InitializeData }
  | { command: 'start'; data: { taskId: string } }
  | { command: 'stop'; data: { taskId: string; forceStop: boolean; reason: string } }
  | { command: 'exit'; data: { exitCode: number } }
  // Answers to the code API (HKube's names). `response` may hold BlobRef
  // values; `storage` says where to read them, as in initialize.
  | {
      command: 'algorithmExecutionDone';
      data: { execId: string; response: unknown; storage: Record<string, StagedBlob> };
    }
  | { command: 'algorithmExecutionError'; data: { execId: string; error: string } }
  | {
      command: 'subPipelineDone';
      data: { subPipelineId: string; response: unknown; storage: Record<string, StagedBlob> };
    }
  | { command: 'subPipelineError'; data: { subPipelineId: string; error: string } };

export interface WireFailure {
  type: string;
  message: string;
  stack: string;
  /** 20 = missing dependencies, 50 = permanent failure (Styx's exit codes); see docs/protocols.md. */
  exitCode?: number;
}

export type AlgorithmFrame =
  | { command: 'initialized'; data: { taskId: string } }
  | { command: 'started'; data: { taskId: string } }
  | { command: 'progress'; data: { taskId: string; percent: number; message: string } }
  | {
      command: 'done';
      data: {
        taskId: string;
        value?: unknown;
        stored?: { size: number };
        metadata?: Record<string, { type: string; size: number }>;
      };
    }
  | { command: 'errorMessage'; data: { taskId: string; error: WireFailure } }
  | { command: 'stopped'; data: { taskId: string } }
  | { command: 'log'; data: { taskId: string; stream: 'stdout' | 'stderr'; data: Uint8Array } }
  // The code API: start a job from the running task (HKube's names and fields).
  | {
      command: 'startAlgorithmExecution';
      data: { execId: string; algorithmName: string; input: unknown[]; includeResult: boolean };
    }
  | {
      command: 'startStoredSubPipeline';
      data: {
        subPipelineId: string;
        subPipeline: { name: string; flowInput?: Record<string, unknown> };
        includeResult: boolean;
      };
    }
  | {
      command: 'startRawSubPipeline';
      data: { subPipelineId: string; subPipeline: Record<string, unknown>; includeResult: boolean };
    };

export function encodeFrame(frame: SidecarFrame | AlgorithmFrame): Buffer {
  return encode(frame);
}

export function decodeFrame<T extends SidecarFrame | AlgorithmFrame>(bytes: Uint8Array): T {
  const f = decode(bytes) as T;
  if (typeof f !== 'object' || f === null || typeof (f as { command?: unknown }).command !== 'string') {
    throw new Error('malformed frame: expected a map with a string "command"');
  }
  return f;
}
