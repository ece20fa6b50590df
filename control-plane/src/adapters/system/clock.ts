import type { Clock, Timer } from '../../ports/clock.js';

/** The process's clock: Date.now() and unref'ed Node timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  timer(ms: number, fn: () => void): Timer {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  interval(ms: number, fn: () => void): Timer {
    const t = setInterval(fn, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
};
