import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { create as createTar } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlgorithmSpec, JobState, type AlgorithmCode } from '@weft/proto';
import { FIXTURES, cleanup, clients, startServer, tempDir, until, weft, type ServerProc } from './helpers.js';

let server: ServerProc;
let c: ReturnType<typeof clients>;
const dir = tempDir('weft-pools-');
const code = (name: string) => join(FIXTURES, 'algorithms', name);

/** weft_workers{algorithm, state} and weft_worker_starts_total{algorithm} from /metrics. */
async function workers(algorithm: string): Promise<{ live: number; starts: number; byState: Record<string, number> }> {
  const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  const byState: Record<string, number> = {};
  for (const m of text.matchAll(
    new RegExp(`^weft_workers\\{algorithm="${algorithm}",state="(\\w+)"\\} (\\d+)`, 'gm'),
  )) {
    byState[m[1]!] = Number(m[2]);
  }
  const starts = new RegExp(`^weft_worker_starts_total\\{algorithm="${algorithm}"\\} (\\d+)`, 'm').exec(text);
  const live = (byState['starting'] ?? 0) + (byState['ready'] ?? 0) + (byState['busy'] ?? 0);
  return { live, starts: Number(starts?.[1] ?? 0), byState };
}

beforeAll(async () => {
  // One core and 1 GiB for workers, whatever this machine has; idle workers leave after 400 ms.
  server = await startServer({ env: { WEFT_CPUS: '1', WEFT_MEMORY: '1Gi', WEFT_IDLE_TIMEOUT_MS: '400' } });
  c = clients(server.address);
});

afterAll(async () => {
  c.close();
  await server.stop();
  cleanup(dir);
});

const apply = (spec: Omit<Partial<AlgorithmSpec>, 'code'> & { code?: Partial<AlgorithmCode> }) =>
  c.applyAlgorithm({ spec: AlgorithmSpec.fromPartial(spec) });

describe('worker pools', () => {
  it('keeps minHotWorkers warm, caps at maxWorkers, and lets idle extra workers go', async () => {
    await apply({ name: 'capped', code: { path: code('slowsum'), entryPoint: '' }, minHotWorkers: 1, maxWorkers: 2 });
    await until(async () => (await workers('capped')).byState['ready'] === 1, 20_000, 'one hot worker');

    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'S', algorithmName: 'capped', input: ['#@flowInput.items', 150] }],
      flowInput: { items: [1, 2, 3, 4, 5, 6, 7, 8] },
    });
    let peak = 0;
    for (;;) {
      peak = Math.max(peak, (await workers('capped')).live);
      const st = await c.status({ jobId });
      if (st.state >= JobState.JOB_STATE_COMPLETED) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await c.values(jobId)).toEqual([2, 4, 6, 8, 10, 12, 14, 16]);
    expect(peak).toBe(2);
    expect((await workers('capped')).starts).toBe(2);
    // The extra worker leaves after the idle timeout; the hot one stays.
    await until(async () => (await workers('capped')).live === 1, 10_000, 'the extra worker to exit');
    await new Promise((r) => setTimeout(r, 1000));
    expect((await workers('capped')).live).toBe(1);
  });

  it('accounts cpu requests against the capacity: two 0.6-cpu workers never run on one core', async () => {
    await apply({ name: 'heavy', code: { path: code('slowsum'), entryPoint: '' }, cpu: 0.6, maxWorkers: 3 });
    // The hot 'capped' worker (0.1 cpu) leaves 0.9: room for exactly one 'heavy'.
    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'H', algorithmName: 'heavy', input: ['#@flowInput.items', 100] }],
      flowInput: { items: [1, 2, 3, 4] },
    });
    let peak = 0;
    for (;;) {
      peak = Math.max(peak, (await workers('heavy')).live);
      if ((await c.status({ jobId })).state >= JobState.JOB_STATE_COMPLETED) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await c.values(jobId)).toEqual([2, 4, 6, 8]);
    expect(peak).toBe(1);
  });

  it('replaces a crashed worker once its resources are free, even when it alone fills the machine', async () => {
    // The hot 'capped' worker holds 0.1 of the one cpu: 0.9 is room for exactly one of these.
    await apply({ name: 'filler', code: { path: code('crashonce'), entryPoint: '' }, cpu: 0.9 });
    const jobId = await c.exec({
      name: 'p',
      nodes: [{ nodeName: 'F', algorithmName: 'filler', input: [join(dir, 'crash-once')] }],
    });
    const st = await c.wait(jobId, 20_000);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toEqual(['survived']);
  });

  it('evicts an idle worker of another algorithm when only one fits', async () => {
    await apply({ name: 'left', code: { path: code('echo'), entryPoint: '' }, cpu: 0.9 });
    await apply({ name: 'right', code: { path: code('echo'), entryPoint: '' }, cpu: 0.9 });
    const jobId = await c.exec({
      name: 'p',
      nodes: [
        { nodeName: 'L', algorithmName: 'left', input: ['x'] },
        { nodeName: 'R', algorithmName: 'right', input: ['@L'] },
      ],
    });
    const st = await c.wait(jobId, 20_000);
    expect(st.state, st.error).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toEqual(['x']);
  });

  it('retires warm workers when their algorithm is applied again', async () => {
    expect((await workers('capped')).live).toBe(1);
    await apply({ name: 'capped', code: { path: code('slowsum'), entryPoint: '' }, minHotWorkers: 0, maxWorkers: 2 });
    await until(async () => (await workers('capped')).live === 0, 10_000, 'the old hot worker to exit');
  });

  it('fails a job whose algorithm can never fit, saying what it asked for', async () => {
    await apply({ name: 'huge', code: { path: code('echo'), entryPoint: '' }, mem: '64Gi' });
    const jobId = await c.exec({ name: 'p', nodes: [{ nodeName: 'X', algorithmName: 'huge', input: [1] }] });
    const st = await c.wait(jobId);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.error).toMatch(/node "X".*Unschedulable: algorithm "huge" requests cpu 0.1 and memory 68719476736 bytes/);
  });

  it('fails a job whose python algorithm has no entry point file, saying its workers never started', async () => {
    // env python runs `python3 -m weft_shim`, which exits 1 when main.py is missing (the echo fixture is Node).
    await apply({ name: 'snake', env: 'python', code: { path: code('echo'), entryPoint: 'main.py' } });
    const jobId = await c.exec({ name: 'p', nodes: [{ nodeName: 'P', algorithmName: 'snake', input: [1] }] });
    const st = await c.wait(jobId);
    expect(st.state).toBe(JobState.JOB_STATE_FAILED);
    expect(st.error).toMatch(/node "P".*WorkerStartFailed: .*algorithm process exited \(code 1/);
  });

  it('runs code shipped as a .tar.gz, which the CLI unpacks and uploads', async () => {
    const tgz = join(dir, 'echo.tar.gz');
    await createTar({ gzip: true, file: tgz, cwd: code('echo') }, ['index.js']);
    const spec = join(dir, 'packed.yaml');
    writeFileSync(spec, 'name: packed\ncode: { path: ./echo.tar.gz, entryPoint: index.js }\n');
    const r = await weft(['algorithm', 'apply', '-f', spec, '--server', server.address]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/algorithm packed applied \(code: 1 files/);
    const jobId = await c.exec({ name: 'p', nodes: [{ nodeName: 'E', algorithmName: 'packed', input: ['packed!'] }] });
    expect((await c.wait(jobId)).state).toBe(JobState.JOB_STATE_COMPLETED);
    expect(await c.values(jobId)).toEqual(['packed!']);
  });
});
