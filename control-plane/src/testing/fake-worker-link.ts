import type { WorkerCommand, WorkerEvent } from '@weft/proto';
import type { WorkerLink } from '../ports/worker-link.js';

/**
 * A worker link in memory, for dispatcher tests: the test plays the worker
 * (emit) and reads what the dispatcher sent (sent).
 */
export class FakeWorkerLink implements WorkerLink {
  readonly sent: WorkerCommand[] = [];
  closedWith: string | undefined;
  refusedWith: string | undefined;
  private readonly eventCbs: ((ev: WorkerEvent) => void)[] = [];
  private readonly closeCbs: ((why: string) => void)[] = [];

  send(cmd: WorkerCommand): boolean {
    if (this.closedWith !== undefined) return false;
    this.sent.push(cmd);
    return true;
  }

  onEvent(cb: (ev: WorkerEvent) => void): void {
    this.eventCbs.push(cb);
  }

  onClose(cb: (why: string) => void): void {
    this.closeCbs.push(cb);
  }

  close(): void {
    this.end('closed by the control plane');
  }

  refuse(reason: string): void {
    this.refusedWith = reason;
    this.end('refused');
  }

  /** The worker sends an event. */
  emit(ev: WorkerEvent): void {
    if (this.closedWith !== undefined) return;
    for (const cb of this.eventCbs) cb(ev);
  }

  /** The worker's side of the link goes away (a dead sidecar). */
  end(why: string): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = why;
    for (const cb of this.closeCbs.splice(0)) cb(why);
  }

  /** The names of the commands sent so far, in order. */
  commands(): string[] {
    return this.sent.map((c) => c.command?.$case ?? '');
  }
}
