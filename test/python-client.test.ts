/**
 * examples/python-client: a Python program on stubs generated from proto/ at
 * test time (examples/python-client/gen.sh) against a real control plane.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentials } from '@grpc/grpc-js';
import { PipelineStoreClient, type StoredPipeline } from '@weft/proto';
import { ROOT, cleanup, clients, startServer, tempDir, type ServerProc } from './helpers.js';

const PYTHON = process.env['WEFT_PYTHON'] || '/usr/bin/python3';
const EXAMPLE = join(ROOT, 'examples', 'python-client');

let server: ServerProc;
let c: ReturnType<typeof clients>;
const stubs = tempDir('weft-pystubs-');

function run(cmd: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(cmd, args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
  });
  return { code: r.status, out: `${r.error ? `${String(r.error)}\n` : ''}${r.stdout}${r.stderr}` };
}

beforeAll(async () => {
  const gen = run('sh', [join(EXAMPLE, 'gen.sh'), stubs]);
  expect(gen.code, gen.out).toBe(0);
  server = await startServer();
  c = clients(server.address);
  await c.applyFile(join(ROOT, 'examples', 'numbers', 'algorithms.yaml'));
  await c.applyFile(join(ROOT, 'examples', 'numbers-mixed', 'algorithms.yaml'));
});

afterAll(async () => {
  c.close();
  await server.stop();
  cleanup(stubs);
});

describe('the Python gRPC client example', () => {
  it('stores the numbers pipeline, runs it, watches its progress and prints 30', () => {
    const r = run(PYTHON, [join(EXAMPLE, 'client.py'), '--server', server.address, '--stubs', stubs]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^stored pipeline numbers-from-python$/m);
    expect(r.out).toMatch(/^started job numbers-from-python-\S+$/m);
    expect(r.out).toMatch(/^ {2}Reduce: 50% summing 5 values$/m);
    expect(r.out).toMatch(/^ {2}job JOB_STATE_COMPLETED 100%$/m);
    expect(r.out).toMatch(/^Reduce: 30$/m);
  });

  it('runs the mixed-language algorithms with its own flow input, and the pipeline stays stored', async () => {
    const r = run(PYTHON, [
      join(EXAMPLE, 'client.py'),
      '--server',
      server.address,
      '--stubs',
      stubs,
      '--name',
      'mixed-from-python',
      '--algorithms',
      'range-py,multiply-mixed,reduce-py',
      '--data',
      '10',
      '--mul',
      '3',
    ]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^Reduce: 165$/m);
    const store = new PipelineStoreClient(server.address, credentials.createInsecure());
    const stored = await new Promise<StoredPipeline>((resolve, reject) =>
      store.get({ name: 'mixed-from-python' }, (err, v) => (err ? reject(err) : resolve(v))),
    );
    store.close();
    expect(stored.pipeline?.nodes.map((n) => n.algorithmName)).toEqual(['range-py', 'multiply-mixed', 'reduce-py']);
  });
});
