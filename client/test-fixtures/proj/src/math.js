import { scale } from './scale.js';

/** Something expensive, imported by the closures. */
export function heavy(a, b) {
  return scale(a * b);
}
