import { Server, ServerCredentials, credentials, type ServiceError } from '@grpc/grpc-js';
import { WorkersClient, WorkersService, type WorkerCommand, type WorkerEvent } from '@weft/proto';
import type { WorkerLink } from '../../ports/worker-link.js';
import { workerLinkContract } from '../../ports/contracts/worker-link.contract.js';
import { FakeWorkerLink } from '../../testing/fake-worker-link.js';
import { workersService } from './worker-link.js';

// The real thing: a Workers.Connect stream between a server and a client on loopback.
workerLinkContract('gRPC stream', async () => {
  const server = new Server();
  let attached!: (link: WorkerLink) => void;
  const linked = new Promise<WorkerLink>((r) => (attached = r));
  server.addService(
    WorkersService,
    workersService((link) => attached(link)),
  );
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
  );
  const client = new WorkersClient(`127.0.0.1:${port}`, credentials.createInsecure());
  const call = client.connect();
  const received: WorkerCommand[] = [];
  const closed = new Promise<string>((resolve) => {
    call.on('data', (c: WorkerCommand) => received.push(c));
    call.on('end', () => resolve('ended'));
    call.on('error', (err: ServiceError) => resolve(`refused: ${err.details}`));
  });
  const worker = {
    emit: (ev: WorkerEvent) => void call.write(ev),
    end: () => call.end(),
    received: () => received,
    closed: () => closed,
  };
  // grpc-js calls the handler as soon as the call's metadata arrives.
  const link = await linked;
  return {
    link,
    worker,
    dispose: async () => {
      call.cancel();
      client.close();
      await new Promise<void>((r) => server.tryShutdown(() => r()));
    },
  };
});

workerLinkContract('in-memory fake', () => {
  const link = new FakeWorkerLink();
  let closed!: (how: string) => void;
  const done = new Promise<string>((r) => (closed = r));
  link.onClose(() => closed(link.refusedWith !== undefined ? `refused: ${link.refusedWith}` : 'ended'));
  return Promise.resolve({
    link,
    worker: {
      emit: (ev) => link.emit(ev),
      end: () => link.end('worker ended'),
      received: () => link.sent,
      closed: () => done,
    },
    dispose: () => Promise.resolve(),
  });
});
