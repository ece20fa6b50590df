/**
 * Moved to ports/executor.ts. Kept for engine/algorithms.ts and
 * engine/closures.ts (changed on another branch); remove once they import the
 * port from its new place.
 */
export type * from '../ports/executor.js';
