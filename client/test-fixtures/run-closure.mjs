// The fake server's worker (submitter.test.ts): a fresh Node process (with
// register-ts.mjs, to load client/src) that materializes a stage from an
// FsStageStore, loads its function and calls it with the arguments it gets
// over IPC, as the real worker does. Whatever the function prints goes to
// this process's stdout and stderr.
//
//   node --import ./register-ts.mjs run-closure.mjs <storeDir> <stageId> <cacheDir>
//
// IPC (serialization: 'advanced'): receives { args: Uint8Array }, sends
// { ok: Uint8Array } (the encoded result) or { error: { type, message, stack } }.
import { FsStageStore, loadStaged, materialize } from '@weft/stage';
import { decodeValue, encodeValue } from '@weft/stage';

const [storeDir, stageId, cacheDir] = process.argv.slice(2);

process.once('message', async ({ args }) => {
  let answer;
  try {
    const store = new FsStageStore(storeDir);
    const manifest = await store.getManifest(stageId);
    const staged = await materialize(manifest, store, cacheDir);
    const fn = await loadStaged(staged.dir, manifest);
    answer = { ok: encodeValue(await fn(...decodeValue(args))) };
  } catch (err) {
    answer = {
      error: { type: err?.name ?? 'Error', message: String(err?.message ?? err), stack: String(err?.stack ?? '') },
    };
  }
  process.send(answer, () => process.disconnect());
});
