// Reduce: receives every Multiply result, in batch order, and sums them.
export function start(args, api) {
  const values = args.input[0];
  api.progress(50, `summing ${values.length} values`);
  return values.reduce((acc, v) => acc + v, 0);
}
