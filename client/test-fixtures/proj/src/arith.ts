// Imported by remote-fns.ts (as './arith.js', NodeNext style): staged compiled.
export function times(a: number, b: number): number {
  return a * b;
}
