import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, cleanup, startServer, tempDir, weft, type ServerProc } from './helpers.js';

const require = createRequire(import.meta.url);
let server: ServerProc;
const dir = tempDir('weft-api-');
const env = () => ({ WEFT_SERVER: server.address });

beforeAll(async () => {
  server = await startServer();
  const r = await weft(['algorithm', 'apply', '-f', 'examples/numbers/algorithms.yaml'], env());
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await server.stop();
  cleanup(dir);
});

type Ctor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;

function serviceClient(protoFile: string, includeDirs: string[], path: string[]): Client {
  const def = loadPackageDefinition(loadSync(protoFile, { includeDirs, keepCase: true, enums: String })) as Record<
    string,
    unknown
  >;
  let node: unknown = def;
  for (const p of path) node = (node as Record<string, unknown>)[p];
  return new (node as Ctor)(server.address, credentials.createInsecure());
}

describe('standard gRPC services', () => {
  it('answers grpc.health.v1 Check with SERVING', async () => {
    const proto = join(
      dirname(require.resolve('grpc-health-check/package.json')),
      'proto',
      'health',
      'v1',
      'health.proto',
    );
    const health = serviceClient(proto, [], ['grpc', 'health', 'v1', 'Health']) as Client & {
      check(req: { service: string }, cb: (e: ServiceError | null, r: { status: string }) => void): void;
    };
    for (const service of ['', 'weft.v1.Jobs']) {
      const res = await new Promise<{ status: string }>((ok, ko) =>
        health.check({ service }, (e, r) => (e ? ko(e) : ok(r))),
      );
      expect(res.status).toBe('SERVING');
    }
    health.close();
  });

  it('lists weft.v1 services through server reflection', async () => {
    const base = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto');
    const reflection = serviceClient(
      join(base, 'grpc', 'reflection', 'v1', 'reflection.proto'),
      [base],
      ['grpc', 'reflection', 'v1', 'ServerReflection'],
    ) as Client & { serverReflectionInfo(): NodeJS.ReadWriteStream & { write(m: unknown): boolean; end(): void } };
    const call = reflection.serverReflectionInfo();
    const reply = new Promise<{ list_services_response: { service: { name: string }[] } }>((ok, ko) => {
      call.on('data', ok);
      call.on('error', ko);
    });
    call.write({ list_services: '*' });
    const names = (await reply).list_services_response.service.map((s) => s.name);
    call.end();
    reflection.close();
    expect(names).toEqual(
      expect.arrayContaining(['weft.v1.Jobs', 'weft.v1.PipelineStore', 'weft.v1.AlgorithmStore', 'weft.v1.Workers']),
    );
  });
});

describe('Jobs.Watch', () => {
  it('answers NOT_FOUND for an unknown job instead of hanging', async () => {
    const r = await weft(['exec', 'watch', 'no-such-job'], env());
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/job no-such-job not found/);
  });
});

describe('the CLI against a server', () => {
  it('stores, lists, gets, runs (with an input override) and deletes a pipeline', async () => {
    const store = await weft(['pipeline', 'store', '-f', join(ROOT, 'examples/numbers/pipeline.yaml')], env());
    expect(store.code, store.stderr).toBe(0);
    const ls = await weft(['pipeline', 'ls', '-o', 'json'], env());
    expect(ls.code).toBe(0);
    expect(ls.stdout).toContain('"numbers"');
    const get = await weft(['pipeline', 'get', 'numbers'], env());
    expect(get.stdout).toMatch(/nodeName: Multiply/);

    const input = join(dir, 'input.yaml');
    writeFileSync(input, 'data: 4\nmul: 10\n');
    const run = await weft(['exec', 'stored', 'numbers', '--input', input, '--wait', '-o', 'json'], env());
    expect(run.code, run.stderr).toBe(0);
    const doc = JSON.parse(run.stdout) as { status: string; result: { result: unknown }[] };
    expect(doc.status).toBe('completed');
    expect(doc.result[0]?.result).toBe(100);

    // watch on an ended job prints its result and exits 0 because it completed.
    const jobId = (JSON.parse(run.stdout) as { jobId: string }).jobId;
    const watch = await weft(['exec', 'watch', jobId], env());
    expect(watch.code).toBe(0);
    expect(watch.stdout).toMatch(/Reduce: 100/);
    const status = await weft(['exec', 'status', jobId], env());
    expect(status.stdout).toMatch(/Multiply/);

    expect((await weft(['pipeline', 'delete', 'numbers'], env())).code).toBe(0);
    const gone = await weft(['pipeline', 'get', 'numbers'], env());
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toMatch(/pipeline "numbers" not found/);
  });

  it('gets and deletes algorithms', async () => {
    const get = await weft(['algorithm', 'get', 'range', '-o', 'json'], env());
    expect(get.code).toBe(0);
    expect(JSON.parse(get.stdout)).toMatchObject({ spec: { name: 'range', env: 'nodejs' } });
    expect((await weft(['algorithm', 'delete', 'range'], env())).code).toBe(0);
    const run = await weft(['exec', 'raw', '-f', 'examples/numbers/pipeline.yaml'], env());
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/unknown algorithm "range"/);
  });
});
