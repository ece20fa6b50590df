/**
 * The worker link port: the dispatcher's view of one worker's stream (the
 * Workers.Connect RPC today), so the dispatcher knows messages, not a
 * transport.
 *
 * Contract:
 * - onEvent's callback gets the worker's events in the order sent. Events
 *   that arrive before a callback is registered are not lost: register both
 *   callbacks synchronously in the call that receives the link.
 * - onClose's callback fires exactly once, when the link is gone for any
 *   reason (the worker ended it, the transport failed, close()/refuse() was
 *   called); no event is delivered after it.
 * - send() never throws for a link that is gone: the command is dropped (a
 *   dead worker is noticed through onClose or the heartbeat timeout); it
 *   returns false then.
 * - close() ends the link normally; refuse(reason) ends it with an error the
 *   worker can show (a protocol mismatch, a refused hello). Both idempotent.
 */
import type { WorkerCommand, WorkerEvent } from '@weft/proto';

/** See the contract in this module's header. */
export interface WorkerLink {
  /** Sends a command; false when the link is gone. */
  send(cmd: WorkerCommand): boolean;
  onEvent(cb: (ev: WorkerEvent) => void): void;
  /** `why` is for the log: "stream ended", "stream failed", ... */
  onClose(cb: (why: string) => void): void;
  close(): void;
  /** Ends the link with an error the worker sees (FAILED_PRECONDITION on gRPC). */
  refuse(reason: string): void;
}
