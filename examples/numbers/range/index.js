// Range: N -> [1, 2, ..., N]
export function start(args) {
  const n = args.input[0];
  return Array.from({ length: n }, (_, i) => i + 1);
}
