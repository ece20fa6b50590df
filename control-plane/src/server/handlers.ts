import type { sendUnaryData, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { Status, decode, invalid, notFound, toServiceError, type Logger } from '@weft/common';
import {
  Algorithm,
  AlgorithmSpec,
  JobState as PbJobState,
  PipelineDescriptor,
  type AlgorithmStoreServer,
  type DataChunk,
  type DownloadResultRequest,
  type JobEvent,
  type JobsServer,
  type PipelineStoreServer,
  type StoredPipeline,
} from '@weft/proto';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { Descriptor } from '../domain/pipeline.js';
import type { AlgorithmRegistry } from '../engine/algorithms.js';
import type { JobEngine } from '../engine/jobs.js';
import type { JobFilter, JobState, PipelineRecord, StateStore } from '../ports/state-store.js';
import type { Triggers } from '../engine/triggers.js';
import type { BlobStore } from '@weft/common';

/**
 * Wraps a unary implementation: every failure becomes a WeftError-mapped
 * status, so grpc-js never answers UNKNOWN and a bad request never takes the
 * server down.
 */
export function unary<Req, Res>(log: Logger, name: string, fn: (req: Req) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>): void => {
    fn(call.request).then(
      (res) => cb(null, res),
      (err: unknown) => {
        const se = toServiceError(err);
        if (se.code === Status.INTERNAL) log.error('request failed', { rpc: name, err });
        cb(se);
      },
    );
  };
}

/**
 * The descriptor in HKube's JSON form (the message's JSON names are HKube's),
 * which is what the domain parser validates.
 */
function pipelineToDescriptor(p: PipelineDescriptor | undefined, field = 'pipeline'): Descriptor {
  if (!p) throw invalid(field, 'is required');
  const d = PipelineDescriptor.toJSON(p) as Descriptor;
  d.nodes = (d.nodes ?? []).map((n) => ({ ...n, input: n.input ?? [] }));
  return d;
}

function flowInputOverride(msgpack: Buffer, field: string): Record<string, unknown> | undefined {
  if (msgpack.byteLength === 0) return undefined;
  let v: unknown;
  try {
    v = decode(msgpack);
  } catch (err) {
    throw invalid(field, `is not valid msgpack: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid(field, 'must encode a map');
  return v as Record<string, unknown>;
}

function storedPipeline(r: PipelineRecord): StoredPipeline {
  return { pipeline: PipelineDescriptor.fromJSON(r.descriptor), created: r.created, modified: r.modified };
}

const PB_TO_STATE: Partial<Record<PbJobState, JobState>> = {
  [PbJobState.JOB_STATE_PENDING]: 'pending',
  [PbJobState.JOB_STATE_ACTIVE]: 'active',
  [PbJobState.JOB_STATE_COMPLETED]: 'completed',
  [PbJobState.JOB_STATE_FAILED]: 'failed',
  [PbJobState.JOB_STATE_STOPPED]: 'stopped',
  [PbJobState.JOB_STATE_PAUSED]: 'paused',
};

export interface HandlerDeps {
  store: StateStore;
  blobs: BlobStore;
  triggers: Triggers;
  algorithms: AlgorithmRegistry;
  engine: JobEngine;
  dispatcher: Dispatcher;
  log: Logger;
}

export function algorithmStore(d: HandlerDeps): AlgorithmStoreServer & UntypedServiceImplementation {
  return {
    apply: unary(d.log, 'AlgorithmStore.Apply', async (req) => {
      if (!req.spec) throw invalid('spec', 'is required');
      const spec = req.spec;
      const def = await d.algorithms.apply(spec);
      d.dispatcher.algorithmChanged(def.name);
      if (def.minHotWorkers > 0) d.dispatcher.ensureHot(def.name);
      const rec = (await d.store.getAlgorithm(spec.name))!;
      return { spec: AlgorithmSpec.fromJSON(rec.spec), created: rec.created, modified: rec.modified };
    }),
    get: unary(d.log, 'AlgorithmStore.Get', async (req) => {
      const rec = await d.store.getAlgorithm(req.name);
      if (!rec) throw notFound(`algorithm "${req.name}" not found`);
      return Algorithm.fromPartial({
        spec: AlgorithmSpec.fromJSON(rec.spec),
        created: rec.created,
        modified: rec.modified,
      });
    }),
    list: unary(d.log, 'AlgorithmStore.List', async () => ({
      algorithms: (await d.store.listAlgorithms()).map((rec) => ({
        spec: AlgorithmSpec.fromJSON(rec.spec),
        created: rec.created,
        modified: rec.modified,
      })),
    })),
    delete: unary(d.log, 'AlgorithmStore.Delete', async (req) => {
      if (!(await d.store.getAlgorithm(req.name))) throw notFound(`algorithm "${req.name}" not found`);
      const deleted = await d.algorithms.delete(req.name);
      d.dispatcher.algorithmChanged(req.name);
      return { deleted };
    }),
  };
}

export function pipelineStore(d: HandlerDeps): PipelineStoreServer & UntypedServiceImplementation {
  return {
    store: unary(d.log, 'PipelineStore.Store', async (req) => {
      const desc = pipelineToDescriptor(req.pipeline);
      // Its flowInput may come with each exec; exec checks the keys then.
      d.engine.validate(desc, { flowInputLater: true });
      const rec = await d.store.putPipeline(desc.name, desc as unknown as Record<string, unknown>);
      d.engine.pipelineStored(desc.name, desc);
      d.triggers.sync(desc.name, desc);
      return storedPipeline(rec);
    }),
    get: unary(d.log, 'PipelineStore.Get', async (req) => {
      const rec = await d.store.getPipeline(req.name);
      if (!rec) throw notFound(`pipeline "${req.name}" not found`);
      return storedPipeline(rec);
    }),
    list: unary(d.log, 'PipelineStore.List', async () => ({
      pipelines: (await d.store.listPipelines()).map(storedPipeline),
    })),
    delete: unary(d.log, 'PipelineStore.Delete', async (req) => {
      if (!(await d.store.getPipeline(req.name))) throw notFound(`pipeline "${req.name}" not found`);
      d.engine.pipelineStored(req.name, undefined);
      d.triggers.sync(req.name, undefined);
      return { deleted: await d.store.deletePipeline(req.name) };
    }),
  };
}

export function jobs(d: HandlerDeps): JobsServer & UntypedServiceImplementation {
  return {
    execRaw: unary(d.log, 'Jobs.ExecRaw', async (req) => {
      const desc = pipelineToDescriptor(req.pipeline);
      const override = flowInputOverride(req.flowInputMsgpack, 'flowInputMsgpack');
      if (override) desc.flowInput = override;
      return { jobId: await d.engine.exec(desc) };
    }),
    execStored: unary(d.log, 'Jobs.ExecStored', async (req) => {
      if (!req.name) throw invalid('name', 'is required');
      const override = flowInputOverride(req.flowInputMsgpack, 'flowInputMsgpack') ?? req.flowInput;
      return { jobId: await d.engine.execStored(req.name, override) };
    }),
    pause: unary(d.log, 'Jobs.Pause', (req) => d.engine.pause(req.jobId)),
    resume: unary(d.log, 'Jobs.Resume', (req) => d.engine.resume(req.jobId)),
    rerun: unary(d.log, 'Jobs.Rerun', async (req) => ({ jobId: await d.engine.rerun(req.jobId) })),
    runFromNode: unary(d.log, 'Jobs.RunFromNode', async (req) => {
      if (!req.nodeName) throw invalid('nodeName', 'is required');
      return { jobId: await d.engine.runFromNode(req.jobId, req.nodeName) };
    }),
    downloadResult: (call: ServerWritableStream<DownloadResultRequest, DataChunk>): void => {
      const { jobId, nodeName, batchIndex } = call.request;
      void (async () => {
        const where = await d.engine.resultLocation(jobId, nodeName, batchIndex);
        if ('inline' in where) {
          call.write({ data: where.inline, size: where.inline.byteLength });
        } else {
          // Chunk by chunk, honouring backpressure: the control plane never
          // holds a large result in memory.
          let first = true;
          for await (const chunk of d.blobs.read(where.key)) {
            const ok = call.write({ data: Buffer.from(chunk), size: first ? where.size : 0 });
            first = false;
            if (!ok) await new Promise((r) => call.once('drain', r));
            if (call.cancelled) return;
          }
        }
        call.end();
      })().catch((err: unknown) => {
        const se = toServiceError(err);
        call.emit('error', Object.assign(new Error(se.details), se));
      });
    },
    getStatus: unary(d.log, 'Jobs.GetStatus', (req) => d.engine.status(req.jobId)),
    getResult: unary(d.log, 'Jobs.GetResult', async (req) => {
      const r = await d.engine.result(req.jobId);
      const status = await d.engine.status(req.jobId);
      return { jobId: req.jobId, state: status.state, results: r.results, error: r.error };
    }),
    stop: unary(d.log, 'Jobs.Stop', (req) => d.engine.stop(req.jobId, req.reason)),
    list: unary(d.log, 'Jobs.List', async (req) => {
      const state = PB_TO_STATE[req.state];
      const filter: JobFilter = {};
      if (req.pipelineName) filter.pipelineName = req.pipelineName;
      if (state) filter.states = [state];
      if (req.limit) filter.limit = req.limit;
      if (req.tag) filter.tag = req.tag;
      if (req.from) filter.from = req.from;
      if (req.to) filter.to = req.to;
      return { jobs: await d.engine.list(filter) };
    }),
    watch: (call: ServerWritableStream<{ jobId: string }, JobEvent>): void => {
      const jobId = call.request.jobId;
      const send = (ev: JobEvent): void => {
        if (!call.writableEnded && !call.cancelled) call.write(ev);
      };
      const final = (s: PbJobState): boolean =>
        s === PbJobState.JOB_STATE_COMPLETED || s === PbJobState.JOB_STATE_FAILED || s === PbJobState.JOB_STATE_STOPPED;
      const unsubscribe = d.engine.watch(jobId, (u) => {
        const time = new Date();
        if (u.type === 'status') {
          send({ time, event: { $case: 'status', value: u.status } });
          if (final(u.status.state)) call.end();
        } else if (u.type === 'node') {
          send({ time, event: { $case: 'node', value: u.node } });
        } else {
          send({
            time,
            event: {
              $case: 'progress',
              value: {
                nodeName: u.nodeName,
                taskId: u.taskId,
                batchIndex: u.batchIndex,
                percent: u.percent,
                message: u.message,
              },
            },
          });
        }
      });
      if (unsubscribe) {
        call.on('cancelled', unsubscribe);
        call.on('close', unsubscribe);
        return;
      }
      // Not running: answer with the stored status and close.
      d.engine.status(jobId).then(
        (status) => {
          send({ time: new Date(), event: { $case: 'status', value: status } });
          call.end();
        },
        // grpc-js turns an 'error' emitted on a server stream into the call's status.
        (err: unknown) =>
          call.emit('error', Object.assign(new Error(toServiceError(err).details), toServiceError(err))),
      );
    },
  };
}
