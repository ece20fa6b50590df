/**
 * Algorithm code through the blob store, as a user applies it: `weft
 * algorithm apply -f` uploads a local code.path content-addressed, the
 * control plane keeps only the stage id, and the sidecar lays the code out
 * in its cache before it starts the algorithm there.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Status } from '@weft/common';
import { credentials } from '@grpc/grpc-js';
import { AlgorithmSpec, AlgorithmStoreClient, JobState, type Algorithm } from '@weft/proto';
import { cleanup, clients, startServer, tempDir, weft, type ServerProc } from './helpers.js';

let server: ServerProc;
let c: ReturnType<typeof clients>;
const dir = tempDir('weft-code-stage-');
const cacheDir = join(dir, 'worker-cache');

/** An algorithm outside any checkout: a relative import, and the wrapper's code API, which the worker provides. */
function writeCode(codeDir: string): void {
  mkdirSync(join(codeDir, 'lib'), { recursive: true });
  writeFileSync(join(codeDir, 'package.json'), JSON.stringify({ type: 'module' }));
  writeFileSync(join(codeDir, 'lib', 'answer.js'), 'export const answer = 42;\n');
  writeFileSync(
    join(codeDir, 'index.js'),
    [
      "import { answer } from './lib/answer.js';",
      "import { PermanentFailure } from '@weft/wrapper';",
      'export function start(args) {',
      '  return {',
      '    cwd: process.cwd(),',
      '    path: process.env.WEFT_ALGORITHM_PATH,',
      '    answer,',
      "    wrapper: typeof PermanentFailure === 'function',",
      '    input: args.input[0],',
      '  };',
      '}',
      '',
    ].join('\n'),
  );
}

beforeAll(async () => {
  server = await startServer({ env: { WEFT_CACHE_DIR: cacheDir } });
  c = clients(server.address);
});

afterAll(async () => {
  c.close();
  await server.stop();
  cleanup(dir);
});

describe('algorithm code through the blob store', () => {
  it('uploads a code directory on apply and runs it from the laid-out stage, not from where it was', async () => {
    const codeDir = join(dir, 'project', 'staged-answer');
    writeCode(codeDir);
    const spec = join(dir, 'project', 'algorithms.yaml');
    writeFileSync(spec, 'name: staged-answer\ncode: { path: ./staged-answer }\n');
    const applied = await weft(['algorithm', 'apply', '-f', spec, '--server', server.address]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toMatch(/^algorithm staged-answer applied \(code: 3 files, 3 uploaded, \d+ bytes\)$/m);

    // The server has what it needs without this directory.
    rmSync(codeDir, { recursive: true, force: true });
    const store = new AlgorithmStoreClient(server.address, credentials.createInsecure());
    const stored = await new Promise<Algorithm>((resolve, reject) =>
      store.get({ name: 'staged-answer' }, (e, a) => (e ? reject(e) : resolve(a))),
    );
    store.close();
    const stage = stored.spec?.code?.stage ?? '';
    expect(stage).toMatch(/^[0-9a-f]{64}$/);

    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'A', algorithmName: 'staged-answer', input: ['hi'] }],
    });
    const st = await c.wait(jobId);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    const [result] = (await c.values(jobId)) as { cwd: string; path: string; answer: number; wrapper: boolean }[];
    expect(result).toMatchObject({ answer: 42, wrapper: true, input: 'hi' });
    expect(result!.cwd).toBe(result!.path);
    expect(result!.cwd.startsWith(join(cacheDir, 'code'))).toBe(true);
    expect(result!.cwd.endsWith(stage)).toBe(true);

    // The same content applied again uploads nothing: the store is content-addressed.
    writeCode(codeDir);
    const again = await weft(['algorithm', 'apply', '-f', spec, '--server', server.address]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/\(code: 3 files, 0 uploaded, 0 bytes\)/);
  });

  it('fails the job, naming the algorithm, when the worker cannot lay its code out', async () => {
    const codeDir = join(dir, 'lost', 'code');
    mkdirSync(codeDir, { recursive: true });
    writeFileSync(join(codeDir, 'index.js'), `export const start = () => 'lost ${Date.now()}';\n`);
    const spec = join(dir, 'lost', 'algorithms.yaml');
    writeFileSync(spec, 'name: lost-code\ncode: { path: ./code }\n');
    const applied = await weft(['algorithm', 'apply', '-f', spec, '--server', server.address]);
    expect(applied.code, applied.stderr).toBe(0);
    // The stored content goes missing (a store emptied by hand, say): the worker cannot lay the code out.
    rmSync(join(server.dataDir, 'blobs', 'cas'), { recursive: true, force: true });
    const jobId = await c.exec({ name: 'p', nodes: [{ nodeName: 'L', algorithmName: 'lost-code', input: [] }] });
    const st = await c.wait(jobId);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.error).toMatch(/algorithm "lost-code": cannot lay out its code \(stage [0-9a-f]{64}\)/);
  });

  it('names the entry point when it is not in the code directory, and refuses a stage that was never uploaded', async () => {
    const codeDir = join(dir, 'noentry', 'code');
    mkdirSync(codeDir, { recursive: true });
    writeFileSync(join(codeDir, 'other.js'), 'export const start = () => 1;\n');
    const spec = join(dir, 'noentry', 'algorithms.yaml');
    writeFileSync(spec, 'name: noentry\ncode: { path: ./code, entryPoint: main.js }\n');
    const r = await weft(['algorithm', 'apply', '-f', spec, '--server', server.address]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /algorithm "noentry": code\.entryPoint: entry point "main\.js" is not a file in .*noentry\/code/,
    );

    const err = await c
      .applyAlgorithm({ spec: AlgorithmSpec.fromPartial({ name: 'ghost', code: { stage: 'a'.repeat(64) } }) })
      .then(
        () => undefined,
        (e: unknown) => e as { code: number; details: string },
      );
    expect(err?.code).toBe(Status.FAILED_PRECONDITION);
    expect(err?.details).toMatch(/code\.stage: stage a{64} has not been uploaded/);
  });
});
