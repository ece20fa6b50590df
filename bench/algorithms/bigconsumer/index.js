// Receives the producer's 64 MiB Buffer (resolved by the wrapper before
// start runs), stamps the moment it got it, then checks it.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SIZE = 64 * 1024 * 1024;

export function start(args) {
  const now = performance.timeOrigin + performance.now();
  const dir = process.env.BENCH_TS_DIR;
  if (!dir) throw new Error('BENCH_TS_DIR is not set');
  writeFileSync(join(dir, `consumer-${args.jobId}`), String(now));
  const buf = args.input[0];
  if (!(buf instanceof Uint8Array)) throw new Error(`expected a Buffer, got ${typeof buf}`);
  if (buf.byteLength !== SIZE) throw new Error(`expected ${SIZE} bytes, got ${buf.byteLength}`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  for (const i of [0, 4, 4096, SIZE / 2, SIZE - 4]) {
    if (b.readUInt32LE(i) !== (i * 2654435761) >>> 0) throw new Error(`byte pattern mismatch at ${i}`);
  }
  return buf.byteLength;
}
