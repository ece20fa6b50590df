/**
 * The clock contract (see ports/clock.ts), run against every clock:
 * `clockContract('system', () => ({ clock: systemClock, advance: … }))`.
 * `advance(ms)` lets `ms` pass on that clock: a manual clock moves, the
 * system clock is waited on through one of its own timers, so every check
 * here waits on a timer firing, never on a fixed sleep.
 */
import { describe, expect, it } from 'vitest';
import type { Clock } from '../clock.js';

export interface ClockUnderTest {
  clock: Clock;
  advance: (ms: number) => Promise<void>;
}

export function clockContract(name: string, make: () => ClockUnderTest): void {
  describe(`clock contract: ${name}`, () => {
    it('never goes backwards', async () => {
      const { clock, advance } = make();
      const seen = [clock.now()];
      for (let i = 0; i < 5; i++) {
        await advance(3);
        seen.push(clock.now());
      }
      for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!);
      expect(seen.at(-1)! - seen[0]!).toBeGreaterThanOrEqual(15);
    });

    it('fires a timer once, and not before its time', async () => {
      const { clock, advance } = make();
      const setAt = clock.now();
      const fired: number[] = [];
      clock.timer(30, () => fired.push(clock.now()));
      await advance(10);
      expect(fired).toEqual([]);
      await advance(40);
      expect(fired).toHaveLength(1);
      // 1 ms of slack: a wall clock in whole milliseconds may round the start up and the firing down.
      expect(fired[0]! - setAt).toBeGreaterThanOrEqual(29);
      await advance(40);
      expect(fired).toHaveLength(1);
    });

    it('never fires a cancelled timer; cancelling twice or after firing is harmless', async () => {
      const { clock, advance } = make();
      let cancelled = 0;
      let fired = 0;
      const t = clock.timer(20, () => cancelled++);
      const u = clock.timer(5, () => fired++);
      t.cancel();
      t.cancel();
      await advance(40);
      expect(cancelled).toBe(0);
      expect(fired).toBe(1);
      u.cancel();
    });

    it('repeats an interval until it is cancelled', async () => {
      const { clock, advance } = make();
      let n = 0;
      const every = clock.interval(10, () => n++);
      await advance(55);
      expect(n).toBeGreaterThanOrEqual(2);
      every.cancel();
      const at = n;
      await advance(40);
      expect(n).toBe(at);
    });
  });
}
