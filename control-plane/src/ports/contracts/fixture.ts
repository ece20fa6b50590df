/**
 * How a contract suite gets adapters: a fixture per test, whose open() may be
 * called more than once (each call opens the same backing storage again, as
 * a restarted control plane or a second replica would).
 */
export interface StoreFixture<S> {
  open(): Promise<S>;
  /** Removes the backing storage; every opened store is closed before. */
  cleanup(): Promise<void>;
}
