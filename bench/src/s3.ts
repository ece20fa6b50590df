/**
 * Payloads on S3: the 64 MiB hand-off between two nodes through an
 * S3-compatible server (s3rver, in its own process on loopback), beside a
 * raw SDK PutObject + GetObject of the same bytes against the same server
 * in the same run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Bench } from './cp.js';
import { handoffPipeline } from './fullcp.js';
import { median } from './stats.js';
import { LoadMonitor, MiB, ROOT, type LoadReport } from './util.js';

export interface S3HandoffResult {
  sizeMiB: number;
  runs: number;
  /** Producer returns → consumer's start runs (upload, control-plane hop, download, decode). */
  handoffMs: number[];
  medianHandoffMs: number;
  /** Raw SDK PutObject then GetObject (body read whole) of the same 64 MiB. */
  rawPutMs: number[];
  rawGetMs: number[];
  rawMs: number[];
  medianRawMs: number;
  /** median raw put+get / median hand-off: 1.0 means weft adds nothing to the bytes' trip through S3. */
  ratio: number;
  load: LoadReport;
}

const S3_ENV = {
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true',
};

/** s3rver from the tests' launcher, on a free port; resolves its endpoint. */
async function startS3rver(): Promise<{ endpoint: string; proc: ChildProcess }> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-s3-'));
  const proc = spawn(process.execPath, [join(ROOT, 'test', 'fixtures', 's3', 's3rver.mjs'), dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /\{"port":(\d+)\}/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.on('exit', (code) => reject(new Error(`s3rver exited with ${code}`)));
  });
  return { endpoint: `http://127.0.0.1:${port}`, proc };
}

export async function handoffS3(runs: number): Promise<S3HandoffResult> {
  const SIZE = 64 * MiB;
  const s3 = await startS3rver();
  Object.assign(process.env, S3_ENV);
  const url = `s3://weft/bench?endpoint=${encodeURIComponent(s3.endpoint)}&path_style=true`;
  const b = await Bench.start('handoff-s3', { blobs: url });
  try {
    const run = await handoffPipeline(b);
    const once = async (i: number): Promise<number> => (await run(i)).handoffMs;

    // The same bytes the producer returns, msgpack-framed as bin32 (5 bytes more): what the hand-off moves.
    const data = Buffer.allocUnsafe(SIZE + 5);
    data[0] = 0xc6;
    data.writeUInt32BE(SIZE, 1);
    for (let i = 0; i < SIZE; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i + 5);
    const client = new S3Client({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const raw = async (i: number): Promise<[number, number]> => {
      const Key = `raw/${i}`;
      const t0 = performance.now();
      await client.send(new PutObjectCommand({ Bucket: 'weft', Key, Body: data }));
      const t1 = performance.now();
      const out = await client.send(new GetObjectCommand({ Bucket: 'weft', Key }));
      const got = await out.Body!.transformToByteArray();
      const t2 = performance.now();
      if (got.byteLength !== data.byteLength) throw new Error(`raw get returned ${got.byteLength} bytes`);
      return [t1 - t0, t2 - t1];
    };

    await once(-1); // warm: both workers up, the producer's buffer built
    await raw(-1);
    const load = new LoadMonitor();
    const handoffMs: number[] = [];
    const rawPutMs: number[] = [];
    const rawGetMs: number[] = [];
    // Interleaved, so a busy moment of the machine hits both alike.
    for (let i = 0; i < runs; i++) {
      handoffMs.push(await once(i));
      const [put, get] = await raw(i);
      rawPutMs.push(put);
      rawGetMs.push(get);
    }
    const loadReport = load.stop();
    client.destroy();
    const rawMs = rawPutMs.map((p, i) => p + rawGetMs[i]!);
    const medianHandoffMs = median(handoffMs);
    const medianRawMs = median(rawMs);
    return {
      sizeMiB: SIZE / MiB,
      runs,
      handoffMs,
      medianHandoffMs,
      rawPutMs,
      rawGetMs,
      rawMs,
      medianRawMs,
      ratio: medianRawMs / medianHandoffMs,
      load: loadReport,
    };
  } finally {
    await b.close();
    s3.proc.kill('SIGTERM');
  }
}
