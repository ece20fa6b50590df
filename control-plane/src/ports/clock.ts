/**
 * The clock port: the current time and one-shot timers, so time-driven
 * decisions (heartbeat and start timeouts, grace periods) can be tested with
 * a manual clock instead of real waits.
 *
 * Contract:
 * - now() is milliseconds on a monotonic-enough wall clock (epoch ms for the
 *   system clock); it never goes backwards within one clock.
 * - timer(ms, fn) calls fn once, no earlier than `ms` after the call by this
 *   clock, unless cancelled first; cancel() is idempotent, also after firing.
 * - Timers never keep the process alive (the system clock unrefs them).
 */

/** A pending timer. */
export interface Timer {
  cancel(): void;
}

/** See the contract in this module's header. */
export interface Clock {
  now(): number;
  timer(ms: number, fn: () => void): Timer;
  /** Calls fn every `ms` until cancelled. */
  interval(ms: number, fn: () => void): Timer;
}
