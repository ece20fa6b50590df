// A script that locates functions while its own top-level await is still
// running, as a script submitting closures at its top level does. Importing
// this module from locate() would wait for it forever.
//
//   node --import ./register-ts.mjs top-level-await.mjs
//
// Prints what locate() found as JSON on stdout.
import { locate } from '../src/locate.ts';

export function exported(n) {
  return n + 1;
}

const x = 2;
await new Promise((resolve) => setTimeout(resolve, 1));
const a = locate(exported);
const b = locate((n) => n * x);
process.stdout.write(JSON.stringify({ exportName: a.exportName, captured: b.captured }));
