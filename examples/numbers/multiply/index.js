// Multiply: one batch item times the factor.
export function start(args) {
  const [value, mul] = args.input;
  return value * mul;
}
