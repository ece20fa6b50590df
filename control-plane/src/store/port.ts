/**
 * Moved to ports/state-store.ts. Kept for engine/algorithms.ts (changed on
 * another branch); remove once it imports the port from its new place.
 */
export type * from '../ports/state-store.js';
