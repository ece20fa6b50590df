// The empty task: does nothing and returns null. Warm-up jobs pass
// { warm: ms } to hold the worker briefly and learn which process ran it, so
// the benchmark can tell when every worker of the pool is up.
export function start(args) {
  const x = args.input[0];
  if (x !== null && typeof x === 'object' && typeof x.warm === 'number') {
    return new Promise((resolve) => setTimeout(() => resolve(process.pid), x.warm));
  }
  return null;
}
