import type { Clock, Timer } from '../ports/clock.js';

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  every: number;
  cancelled: boolean;
}

/**
 * A clock that moves only when told (advance), for tests of time-driven
 * behaviour without real waits. Timers due at the same time fire in the
 * order they were set; a timer set by a firing timer fires in the same
 * advance when it falls due within it.
 */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly pending: Pending[] = [];

  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  timer(ms: number, fn: () => void): Timer {
    return this.add(ms, fn, 0);
  }

  interval(ms: number, fn: () => void): Timer {
    return this.add(ms, fn, Math.max(1, ms));
  }

  /** Timers not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.pending.filter((p) => !p.cancelled).length;
  }

  /** Moves time forward by ms, firing every timer that falls due, in time order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const live = this.pending.filter((p) => !p.cancelled && p.at <= end);
      if (live.length === 0) break;
      live.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = live[0]!;
      this.t = Math.max(this.t, next.at);
      if (next.every > 0) next.at += next.every;
      else this.remove(next);
      next.fn();
    }
    this.t = end;
  }

  private add(ms: number, fn: () => void, every: number): Timer {
    const p: Pending = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, every, cancelled: false };
    this.pending.push(p);
    return {
      cancel: () => {
        p.cancelled = true;
        this.remove(p);
      },
    };
  }

  private remove(p: Pending): void {
    const i = this.pending.indexOf(p);
    if (i >= 0) this.pending.splice(i, 1);
  }
}
