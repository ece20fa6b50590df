// Runs in a fresh Node process (with register-ts.mjs, to load client/src):
// materializes a stage from an FsStageStore, loads its function and calls it.
// This process shares nothing with the one that staged the code: if a file
// is missing from the stage, the import fails here.
//
//   node --import ./register-ts.mjs run-staged.mjs <storeDir> <stageId> <cacheDir> <args as JSON>
//
// Prints {"result": …, "entry": …} as JSON on stdout.
import { FsStageStore, loadStaged, materialize } from '@weft/stage';

const [storeDir, stageId, cacheDir, argsJson] = process.argv.slice(2);
const store = new FsStageStore(storeDir);
const manifest = await store.getManifest(stageId);
const staged = await materialize(manifest, store, cacheDir);
const fn = await loadStaged(staged.dir, manifest);
const result = await fn(...JSON.parse(argsJson));
process.stdout.write(JSON.stringify({ result, entry: staged.entry }));
