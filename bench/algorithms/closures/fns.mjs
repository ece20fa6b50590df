// Functions the closure benchmark submits.
export function add(a, b) {
  return a + b;
}
