// Functions the Submitter tests run remotely (through the fake server, in a
// fresh Node process that sees only the stage).
import { times } from './arith.js';

export function add(a: number, b: number): number {
  return a + b;
}

export async function addLater(a: number, b: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 5));
  return times(a, 1) + b;
}

/** Binary data both ways, and the value codec's Map. */
export function reverseBytes(data: Uint8Array): { reversed: Uint8Array; buf: Buffer; map: Map<string, number> } {
  return {
    reversed: Uint8Array.from(data).reverse(),
    buf: Buffer.from([0, 1, 2, 254, 255]),
    map: new Map([['size', data.length]]),
  };
}

function parseInput(text: string): number {
  const n = Number(text);
  if (Number.isNaN(n)) throw new TypeError(`not a number: ${JSON.stringify(text)}`);
  return n;
}

export function parse(text: string): number {
  return parseInput(text) * 2;
}

export async function sleep(ms: number): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  return 'woke';
}

/** Writes to stdout and stderr, as a remote process would. */
export function chatty(n: number): number {
  for (let i = 0; i < n; i++) process.stdout.write(`out ${i}\n`);
  process.stderr.write('a warning\n');
  return n;
}

export function sum(values: { items: number[] }): number {
  return values.items.reduce((a, b) => a + b, 0);
}

/** A closure over a captured value. */
export function makeScaler(k: number): (x: number) => number {
  return (x) => times(x, k);
}
