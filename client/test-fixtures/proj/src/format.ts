// Imported as './format.js' (tsx and NodeNext style); staged compiled.
import type { Label } from './types.js';

export function formatLabel(label: string, n: number): string {
  const l: Label = { text: label };
  return `${l.text}:${n}`;
}

/** A closure defined in TypeScript that uses an export of its own module. */
export function makeLabeler(prefix: string): (n: number) => string {
  return (n) => formatLabel(prefix, n);
}
