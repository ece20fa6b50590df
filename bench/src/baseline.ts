import { fork } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, type ClientDuplexStream } from '@grpc/grpc-js';
import { EchoClient } from './echo.js';
import { summarize, type Summary } from './stats.js';
import { LoadMonitor, type LoadReport } from './util.js';

export interface PingPongResult {
  payloadBytes: number;
  warmup: number;
  roundTrips: number;
  latencyUs: Summary;
  rtPerSec: number;
  load: LoadReport;
}

const SERVER = join(fileURLToPath(new URL('.', import.meta.url)), 'pingpong-server.js');

/** grpc-js bidi ping-pong against a server in another process. */
export async function pingPong(opts: {
  warmup: number;
  roundTrips: number;
  payloadBytes: number;
}): Promise<PingPongResult> {
  const child = fork(SERVER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m: { port: number }) => resolve(m.port));
      child.once('exit', (code) => reject(new Error(`ping-pong server exited (code ${code})`)));
      child.once('error', reject);
    });
    const client = new EchoClient(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      const call = (client['echo'] as () => ClientDuplexStream<Buffer, Buffer>).call(client);
      const msg = Buffer.alloc(opts.payloadBytes, 0x61);
      const total = opts.warmup + opts.roundTrips;
      const samples = new Float64Array(opts.roundTrips);
      let i = 0;
      let t0 = 0;
      let measureStart = 0;
      let load: LoadMonitor | undefined;
      const elapsed = await new Promise<number>((resolve, reject) => {
        call.on('error', reject);
        call.on('data', () => {
          const now = performance.now();
          if (i >= opts.warmup) samples[i - opts.warmup] = now - t0;
          i++;
          if (i === opts.warmup) {
            load = new LoadMonitor();
            measureStart = performance.now();
          }
          if (i === total) {
            resolve(now - measureStart);
            return;
          }
          t0 = performance.now();
          call.write(msg);
        });
        t0 = performance.now();
        call.write(msg);
      });
      const loadReport = load!.stop();
      call.end();
      const us = Array.from(samples, (ms) => ms * 1000);
      return {
        payloadBytes: opts.payloadBytes,
        warmup: opts.warmup,
        roundTrips: opts.roundTrips,
        latencyUs: summarize(us),
        rtPerSec: opts.roundTrips / (elapsed / 1000),
        load: loadReport,
      };
    } finally {
      client.close();
    }
  } finally {
    if (child.connected) child.disconnect();
    await new Promise<void>((r) => {
      if (child.exitCode !== null || child.signalCode !== null) return r();
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        r();
      }, 2000);
      child.once('exit', () => {
        clearTimeout(t);
        r();
      });
    });
  }
}
