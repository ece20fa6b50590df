import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlgorithmSpec, JobState } from '@weft/proto';
import { FIXTURES, ROOT, cleanup, clients, startServer, tempDir, weft, type ServerProc } from './helpers.js';

let server: ServerProc;
let c: ReturnType<typeof clients>;
const dir = tempDir('weft-bad-');

beforeAll(async () => {
  server = await startServer();
  c = clients(server.address);
  await c.applyFile(join(ROOT, 'examples', 'numbers', 'algorithms.yaml'));
  await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
});

afterAll(async () => {
  c.close();
  await server.stop();
  cleanup(dir);
});

const node = (nodeName: string, algorithmName: string, input: unknown[]) => ({ nodeName, algorithmName, input });

const cases: [string, Record<string, unknown>, RegExp][] = [
  ['a cycle', { name: 'p', nodes: [node('A', 'echo', ['@B']), node('B', 'echo', ['@A'])] }, /cycle: A -> B -> A/],
  [
    'an unknown node',
    { name: 'p', nodes: [node('A', 'echo', [1]), node('B', 'echo', ['@Nope'])] },
    /nodes\[1\]\.input\[0\].*"B".*unknown node "Nope"/,
  ],
  [
    'an unknown algorithm',
    { name: 'p', nodes: [node('A', 'no-such-algorithm', [1])] },
    /nodes\[0\]\.algorithmName.*no-such-algorithm/,
  ],
  [
    'a malformed reference',
    { name: 'p', nodes: [node('A', 'echo', [1]), node('B', 'echo', [{ deep: ['@A..x'] }])] },
    /nodes\[1\]\.input\[0\]\.deep\[0\]/,
  ],
  ['a malformed literal batch', { name: 'p', nodes: [node('A', 'echo', ['#[1, 2'])] }, /nodes\[0\]\.input\[0\]/],
  [
    'a missing flowInput key',
    { name: 'p', nodes: [node('A', 'echo', ['@flowInput.nope'])], flowInput: {} },
    /nodes\[0\]\.input\[0\]/,
  ],
  ['no nodes', { name: 'p', nodes: [] }, /nodes/],
  [
    'an unknown retry policy',
    { name: 'p', nodes: [{ ...node('A', 'echo', [1]), retry: { policy: 'Sometimes' } }] },
    /nodes\[0\]\.retry\.policy: node "A": "Sometimes" is not one of Never, Always, OnError, OnCrash/,
  ],
  [
    'a retry limit out of range',
    { name: 'p', nodes: [{ ...node('A', 'echo', [1]), retry: { policy: 'Always', limit: 1000 } }] },
    /nodes\[0\]\.retry\.limit/,
  ],
  [
    'an unknown batchOperation',
    { name: 'p', nodes: [{ ...node('A', 'echo', ['#[1]', '#[2]']), batchOperation: 'zip' }] },
    /nodes\[0\]\.batchOperation.*"A"/,
  ],
  ['a descending range', { name: 'p', nodes: [node('A', 'echo', ['#[5...1]'])] }, /nodes\[0\]\.input\[0\]/],
  [
    'a wait-any input on a node that is not a batch',
    { name: 'p', nodes: [node('A', 'echo', [1]), node('B', 'echo', ['*@A'])] },
    /nodes\[1\]\.input\[0\].*"B".*wait-any input "\*@A" needs A to be a batch node/,
  ],
  [
    'an output node that is not a leaf',
    {
      name: 'p',
      nodes: [{ nodeName: 'O', kind: 'output', input: [1] }, node('B', 'echo', ['@O'])],
    },
    /nodes\[0\]\.kind.*"O".*leaf/,
  ],
  [
    'a sub-pipeline that is not stored',
    { name: 'p', nodes: [{ nodeName: 'S', kind: 'pipeline', spec: { name: 'nowhere' }, input: [] }] },
    /nodes\[0\]\.spec\.name.*nowhere/,
  ],
  [
    'a batchTolerance over 100',
    { name: 'p', nodes: [node('A', 'echo', [1])], options: { batchTolerance: 101 } },
    /options\.batchTolerance/,
  ],
  [
    'a concurrentPipelines amount of 0',
    { name: 'p', nodes: [node('A', 'echo', [1])], options: { concurrentPipelines: { amount: 0 } } },
    /options\.concurrentPipelines\.amount/,
  ],
  ['a priority of 9', { name: 'p', nodes: [node('A', 'echo', [1])], priority: 9 }, /priority/],
  [
    'a webhook that is not a URL',
    { name: 'p', nodes: [node('A', 'echo', [1])], webhooks: { result: 'not a url' } },
    /webhooks\.result/,
  ],
  [
    'a bad cron trigger',
    { name: 'p', nodes: [node('A', 'echo', [1])], triggers: { cron: { pattern: 'every day', enabled: true } } },
    /triggers\.cron\.pattern/,
  ],
];

describe('malformed descriptors', () => {
  for (const [what, descriptor, message] of cases) {
    it(`rejects ${what} with INVALID_ARGUMENT naming the place`, async () => {
      const err = (await c.exec(descriptor).then(
        () => undefined,
        (e: unknown) => e,
      )) as ServiceError | undefined;
      expect(err?.code).toBe(Status.INVALID_ARGUMENT);
      expect(err?.details).toMatch(message);

      // The CLI prints it in one line and exits non-zero.
      const file = join(dir, `${what.replace(/\W+/g, '-')}.json`);
      writeFileSync(file, JSON.stringify(descriptor));
      const r = await weft(['exec', 'raw', '-f', file, '--server', server.address]);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  it('fails the job, naming node and input path, when a batch source is not an array at run time', async () => {
    const jobId = await c.exec({
      name: 'p',
      nodes: [node('A', 'echo', ['@flowInput.n']), node('B', 'echo', ['#@A'])],
      flowInput: { n: 5 },
    });
    const st = await c.wait(jobId);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.error).toMatch(/nodes\[1\]\.input\[0\].*"B".*#@A.*not an array/);
    const r = await weft(['exec', 'result', jobId, '--server', server.address]);
    expect(r.code).not.toBe(0);
  });

  it('rejects a bad algorithm spec naming the field, and keeps serving', async () => {
    const err = (await c
      .applyAlgorithm({ spec: AlgorithmSpec.fromPartial({ name: 'Bad Name', env: 'nodejs', code: { path: '/tmp' } }) })
      .then(
        () => undefined,
        (e: unknown) => e,
      )) as ServiceError | undefined;
    expect(err?.code).toBe(Status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/^name:/);
    const err2 = (await c
      .applyAlgorithm({
        spec: AlgorithmSpec.fromPartial({ name: 'ok', env: 'nodejs', mem: 'lots', code: { path: '/tmp' } }),
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      )) as ServiceError | undefined;
    expect(err2?.details).toMatch(/^mem: "lots" is not a memory quantity/);
    const r = await weft(['exec', 'status', 'no-such-job', '--server', server.address]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no-such-job not found/);
    // Still serving.
    const jobId = await c.exec({ name: 'p', nodes: [node('A', 'echo', [42])] });
    expect((await c.wait(jobId)).state).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toEqual([42]);
  });

  it('gives the CLI a clear one-line error when no control plane is running', async () => {
    const r = await weft(['exec', 'status', 'x', '--server', '127.0.0.1:1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toMatch(/cannot reach the control plane at 127\.0\.0\.1:1/);
  });
});
