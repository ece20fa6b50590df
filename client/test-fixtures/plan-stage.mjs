// Plans the stage of an exported function in a fresh Node process (with
// register-ts.mjs, to load client/src), using the persistent hash cache in
// <cacheDir>. Shows that a new client process skips hashing unchanged files.
//
//   node --import ./register-ts.mjs plan-stage.mjs <file> <exportName> <cacheDir>
//
// Prints {"stageId": …, "hashed": …} as JSON on stdout.
import { HashCache } from '@weft/stage';
import { planStage } from '../src/stage.ts';

const [file, exportName, cacheDir] = process.argv.slice(2);
const located = { file, line: 1, column: 1, exportName, captured: {}, moduleImportsUsed: [] };
const plan = await planStage(located, { hashCache: new HashCache({ dir: cacheDir }) });
process.stdout.write(JSON.stringify({ stageId: plan.stageId, hashed: plan.hashed }));
