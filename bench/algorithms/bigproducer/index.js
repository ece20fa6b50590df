// Produces a 64 MiB Buffer (allocated and filled once, when the worker
// loads) and stamps the moment it hands it back to the wrapper.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SIZE = 64 * 1024 * 1024;
const payload = Buffer.allocUnsafe(SIZE);
for (let i = 0; i < SIZE; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);

export function start(args) {
  const dir = process.env.BENCH_TS_DIR;
  if (!dir) throw new Error('BENCH_TS_DIR is not set');
  writeFileSync(join(dir, `producer-${args.jobId}`), String(performance.timeOrigin + performance.now()));
  return payload;
}
