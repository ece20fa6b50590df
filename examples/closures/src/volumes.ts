// Hype's volumes example on weft: one function writes a word to a volume it
// mounts read-write, then ten functions read it in parallel, read-only.
//   node examples/closures/dist/volumes.js
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { RunEnvironment, Submitter, TransientVolume } from '@weft/client';

const WORDS = ['loom', 'warp', 'shuttle', 'heddle', 'bobbin', 'selvage'];

/** Picks a random word and stores it in the volume. */
export function write(mount: string): string {
  const word = WORDS[Math.floor(Math.random() * WORDS.length)]!;
  writeFileSync(`${mount}/word`, word);
  return word;
}

/** Reads the word file. */
export function read(mount: string): string {
  return readFileSync(`${mount}/word`, 'utf8');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const submitter = new Submitter();

  // A 10Gi volume of the 'gce-ssd-pd' class (on one machine: a directory; removed when this script ends).
  const ssd10Gi = new TransientVolume('gce-ssd-pd', '10Gi');
  const mount = '/tmp/weft-example/volume';

  const env = RunEnvironment.defaults();
  const readWriteEnv = env.withMount(ssd10Gi.readWrite(mount));
  const readOnlyEnv = env.withMount(ssd10Gi.readOnly(mount));

  // Write to the volume
  const word = await submitter.submit(write, [mount], readWriteEnv);

  // Run 10 parallel functions that have read-only access to the volume
  const results = await Promise.all(Array.from({ length: 10 }, () => submitter.submit(read, [mount], readOnlyEnv)));

  console.log(`wrote ${word}; read ${results.join(', ')}`);
  await submitter.close();
}
