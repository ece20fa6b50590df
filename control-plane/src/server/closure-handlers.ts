/** gRPC handlers of the Closures, Secrets and Volumes services. */
import { Readable } from 'node:stream';
import type { ServerReadableStream, ServerWritableStream, sendUnaryData } from '@grpc/grpc-js';
import { invalid, toServiceError, type Logger } from '@weft/common';
import type {
  BlobChunk,
  ClosureEvent,
  ClosuresServer,
  PutBlobResponse,
  SecretsServer,
  SubmitClosureRequest,
  VolumesServer,
} from '@weft/proto';
import type { ClosureEngine } from '../engine/closures.js';
import { unary } from './handlers.js';

function fail(call: ServerWritableStream<unknown, unknown>, err: unknown): void {
  const se = toServiceError(err);
  call.emit('error', Object.assign(new Error(se.details), se));
}

export function closures(e: ClosureEngine, log: Logger): ClosuresServer {
  return {
    missingBlobs: unary(log, 'Closures.MissingBlobs', async (req) => ({ hashes: await e.missing(req.hashes) })),
    putBlob: (call: ServerReadableStream<BlobChunk, PutBlobResponse>, cb: sendUnaryData<PutBlobResponse>) => {
      const chunks = call[Symbol.asyncIterator]() as AsyncIterator<BlobChunk>;
      (async () => {
        const first = await chunks.next();
        if (first.done) throw invalid('hash', 'no chunks were sent');
        const head: BlobChunk = first.value;
        const hash = head.hash;
        let size = 0;
        async function* data(): AsyncGenerator<Buffer> {
          size += head.data.byteLength;
          yield Buffer.from(head.data);
          for (let n = await chunks.next(); !n.done; n = await chunks.next()) {
            size += n.value.data.byteLength;
            yield Buffer.from(n.value.data);
          }
        }
        await e.putBlob(hash, Readable.from(data()));
        return { hash, size };
      })().then(
        (res) => cb(null, res),
        (err: unknown) => cb(toServiceError(err)),
      );
    },
    putManifest: unary(log, 'Closures.PutManifest', async (req) => {
      await e.putManifest(req.stageId, req.manifestJson);
      return {};
    }),
    submit: (call: ServerWritableStream<SubmitClosureRequest, ClosureEvent>) => {
      const req = call.request;
      e.submit(
        {
          submissionId: req.submissionId,
          stageId: req.stageId,
          args: Buffer.from(req.args),
          environment: req.environment ?? {},
          timeoutMs: req.timeoutMs,
          sessionId: req.sessionId,
          streamLogs: req.streamLogs,
          name: req.name,
        },
        (ev) => {
          if (call.cancelled) return;
          call.write(ev);
          if (ev.event?.$case === 'result' || ev.event?.$case === 'failure') call.end();
        },
      ).then(
        (handle) => {
          // The client went away (or its connection did): the run goes on, and
          // a Submit with the same id attaches to it again.
          if (call.cancelled) handle.detach();
          else call.on('cancelled', () => handle.detach());
        },
        (err: unknown) => fail(call, err),
      );
    },
    cancel: unary(log, 'Closures.Cancel', (req) =>
      Promise.resolve({ cancelled: e.cancel(req.submissionId, req.reason) }),
    ),
    openSession: unary(log, 'Closures.OpenSession', (req) => Promise.resolve(e.openSession(req.client))),
    keepAlive: unary(log, 'Closures.KeepAlive', (req) => Promise.resolve(e.keepAlive(req.sessionId))),
    closeSession: unary(log, 'Closures.CloseSession', (req) =>
      Promise.resolve({ deletedVolumes: e.closeSession(req.sessionId) }),
    ),
  };
}

export function secrets(e: ClosureEngine, log: Logger): SecretsServer {
  return {
    create: unary(log, 'Secrets.Create', (req) =>
      Promise.resolve(
        e.createSecret(
          req.name,
          Object.fromEntries(Object.entries(req.files).map(([k, v]) => [k, Buffer.from(v)])),
          req.replace,
        ),
      ),
    ),
    list: unary(log, 'Secrets.List', () => Promise.resolve({ secrets: e.listSecrets() })),
    delete: unary(log, 'Secrets.Delete', (req) => Promise.resolve(e.deleteSecret(req.name))),
  };
}

export function volumes(e: ClosureEngine, log: Logger): VolumesServer {
  const info = (v: ReturnType<ClosureEngine['listVolumes']>[number]) => ({
    name: v.name,
    kind: v.kind,
    storageClass: v.storageClass,
    size: v.size,
    sessionId: v.sessionId,
    mountedBy: v.mountedBy,
    created: new Date(v.created),
  });
  return {
    list: unary(log, 'Volumes.List', () => Promise.resolve({ volumes: e.listVolumes().map(info) })),
    delete: unary(log, 'Volumes.Delete', (req) => Promise.resolve(info(e.deleteVolume(req.name)))),
  };
}
