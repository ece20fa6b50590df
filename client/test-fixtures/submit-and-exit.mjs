// A script that submits a function and simply ends, without closing its
// Submitter (submitter.test.ts): the Submitter must close its session on
// beforeExit. The server comes from WEFT_SERVER, as in a worker.
//
//   node --import ./register-ts.mjs submit-and-exit.mjs
import { Submitter } from '../src/submitter.ts';
import { add } from './proj/src/remote-fns.ts';

const weft = new Submitter({ log: () => undefined });
process.stdout.write(`result ${await weft.submit(add, [2, 3])}\n`);
