import { describe, expect, it } from 'vitest';
import { clockContract } from '../ports/contracts/clock.contract.js';
import { ManualClock } from './manual-clock.js';

describe('ManualClock', () => {
  it('fires timers in time order when advanced past them, never before', () => {
    const clock = new ManualClock(1000);
    const fired: string[] = [];
    clock.timer(50, () => fired.push(`b@${clock.now()}`));
    clock.timer(10, () => fired.push(`a@${clock.now()}`));
    const c = clock.timer(20, () => fired.push('cancelled'));
    c.cancel();
    c.cancel();
    clock.advance(49);
    expect(fired).toEqual(['a@1010']);
    clock.advance(1);
    expect(fired).toEqual(['a@1010', 'b@1050']);
    expect(clock.now()).toBe(1050);
    expect(clock.pendingTimers).toBe(0);
  });

  it('repeats intervals, and fires timers set by timers within the same advance', () => {
    const clock = new ManualClock();
    const ticks: number[] = [];
    const iv = clock.interval(10, () => ticks.push(clock.now()));
    clock.timer(15, () => clock.timer(5, () => ticks.push(-clock.now())));
    clock.advance(30);
    expect(ticks).toEqual([10, 20, -20, 30]);
    iv.cancel();
    clock.advance(100);
    expect(ticks).toHaveLength(4);
  });
});

clockContract('manual', () => {
  const clock = new ManualClock(5000);
  return {
    clock,
    advance: (ms) => {
      clock.advance(ms);
      return Promise.resolve();
    },
  };
});
