import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { credentials, status as Status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlgorithmSpec, JobState, WorkersClient } from '@weft/proto';
import { CLI, FIXTURES, alive, clients, startServer, tempDir, until, type ServerProc } from './helpers.js';

const require = createRequire(import.meta.url);

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
const SIDECAR = require.resolve('@weft/wrapper/sidecar');
const RUNNER = require.resolve('@weft/wrapper/runner');
let server: ServerProc;
let c: ReturnType<typeof clients>;

beforeAll(async () => {
  server = await startServer();
  c = clients(server.address);
});

afterAll(async () => {
  c.close();
  await server.stop();
});

describe('the Workers stream', () => {
  it('serves workers when the control plane listens on another loopback address', async () => {
    const other = await startServer({ env: { WEFT_HOST: '127.0.0.2' } });
    expect(other.address).toMatch(/^127\.0\.0\.2:/);
    const oc = clients(other.address);
    try {
      await oc.applyFile(join(FIXTURES, 'algorithms.yaml'));
      const jobId = await oc.exec({ name: 'p', nodes: [{ nodeName: 'E', algorithmName: 'echo', input: [5] }] });
      expect((await oc.wait(jobId, 20_000)).state).toBe(JobState.JOB_STATE_COMPLETED);
    } finally {
      oc.close();
      await other.stop();
    }
  });

  it('exits with the reason when it cannot start, instead of hanging half-started', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const busy = (blocker.address() as { port: number }).port;
    const proc = spawn(
      process.execPath,
      [CLI, 'server', '--port', '0', '--metrics-port', String(busy), '--data-dir', tempDir()],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
    blocker.close();
    expect(code).toBe(1);
    expect(stderr).toMatch(/in use/);
  });

  it('refuses a worker that speaks another protocol version', async () => {
    const client = new WorkersClient(server.address, credentials.createInsecure());
    const call = client.connect();
    const err = await new Promise<ServiceError>((resolve) => {
      call.on('error', resolve);
      call.on('data', () => undefined);
      call.write({
        event: {
          $case: 'hello',
          value: { workerId: '', algorithmName: 'x', protocolVersion: 99, pid: 1, hostname: 'h' },
        },
      });
    });
    expect(err.code).toBe(Status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/protocol 99/);
    client.close();
  });

  it('runs tasks on a sidecar started by hand with --attach, serving an algorithm run outside weft', async () => {
    await c.applyAlgorithm({
      spec: AlgorithmSpec.fromPartial({
        name: 'whoami',
        code: { path: join(FIXTURES, 'algorithms', 'whoami') },
        maxWorkers: 1,
      }),
    });
    const port = 20000 + Math.floor(Math.random() * 20000);
    const sidecar = spawn(
      process.execPath,
      [SIDECAR, '--attach', '--algorithm', 'whoami', '--server', server.address, '--port', String(port)],
      { stdio: 'ignore' },
    );
    await until(() => portOpen(port), 10_000, 'the sidecar to listen');
    // What a developer runs in their IDE: the algorithm, pointed at the sidecar.
    const algo = spawn(process.execPath, [RUNNER], {
      stdio: 'ignore',
      env: {
        ...process.env,
        WEFT_SOCKET_URL: `ws://127.0.0.1:${port}/`,
        WEFT_ALGORITHM_PATH: join(FIXTURES, 'algorithms', 'whoami'),
      },
    });
    try {
      // Ready in the pool before the job, or the control plane would start a worker of its own.
      await until(
        async () =>
          /weft_workers\{algorithm="whoami",state="ready"\} 1/.test(
            await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text(),
          ),
        10_000,
        'the attached worker to be ready',
      );
      const jobId = await c.exec({ name: 'p', nodes: [{ nodeName: 'W', algorithmName: 'whoami', input: ['hi'] }] });
      const st = await c.wait(jobId);
      expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
      expect(await c.values(jobId)).toEqual([{ pid: algo.pid, input: 'hi' }]);
    } finally {
      sidecar.kill('SIGTERM');
      algo.kill('SIGKILL');
    }
    await until(() => !alive(sidecar.pid!), 5000, 'the attached sidecar to exit');
  });
});
