import type { ServerDuplexStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { Status } from '@weft/common';
import type { WorkerCommand, WorkerEvent, WorkersServer } from '@weft/proto';
import type { WorkerLink } from '../../ports/worker-link.js';

/** The Workers.Connect stream as a {@link WorkerLink}. */
export class GrpcWorkerLink implements WorkerLink {
  private closed = false;
  private readonly closeCbs: ((why: string) => void)[] = [];

  constructor(private readonly call: ServerDuplexStream<WorkerEvent, WorkerCommand>) {
    const gone = (why: string) => () => this.gone(why);
    call.on('end', gone('stream ended'));
    call.on('error', gone('stream failed'));
    call.on('cancelled', gone('stream cancelled'));
    call.on('close', gone('stream closed'));
  }

  send(cmd: WorkerCommand): boolean {
    if (this.closed) return false;
    try {
      this.call.write(cmd);
      return true;
    } catch {
      // A stream that failed under us: onClose follows from its 'error'.
      return false;
    }
  }

  onEvent(cb: (ev: WorkerEvent) => void): void {
    this.call.on('data', (ev: WorkerEvent) => {
      if (!this.closed) cb(ev);
    });
  }

  onClose(cb: (why: string) => void): void {
    this.closeCbs.push(cb);
  }

  close(): void {
    if (this.closed) return;
    try {
      this.call.end();
    } catch {
      // Already closed by the peer; nothing to release.
    }
    this.gone('closed by the control plane');
  }

  refuse(reason: string): void {
    if (this.closed) return;
    // grpc-js turns an 'error' emitted on a server stream into the call's status.
    this.call.emit('error', Object.assign(new Error(reason), { code: Status.FAILED_PRECONDITION, details: reason }));
  }

  private gone(why: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const cb of this.closeCbs.splice(0)) cb(why);
  }
}

/** The Workers service: each Connect stream becomes a link handed to `attach` (the dispatcher's). */
export function workersService(attach: (link: WorkerLink) => void): WorkersServer & UntypedServiceImplementation {
  return {
    connect: (call: ServerDuplexStream<WorkerEvent, WorkerCommand>): void => attach(new GrpcWorkerLink(call)),
  };
}
