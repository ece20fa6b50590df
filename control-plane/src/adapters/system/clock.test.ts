import { clockContract } from '../../ports/contracts/clock.contract.js';
import { systemClock } from './clock.js';

clockContract('system', () => ({
  clock: systemClock,
  // Real time passes, waited for through one of the clock's own timers.
  advance: (ms) => new Promise<void>((resolve) => systemClock.timer(ms, resolve)),
}));
