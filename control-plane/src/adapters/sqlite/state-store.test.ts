import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JobRecord, TaskRecord } from '../../ports/state-store.js';
import { SqliteStateStore } from './state-store.js';

let dir: string;
let store: SqliteStateStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'weft-store-'));
  store = new SqliteStateStore(join(dir, 'weft.db'));
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const job = (jobId: string, over: Partial<JobRecord> = {}): JobRecord => ({
  jobId,
  pipelineName: 'p',
  descriptor: { name: 'p', nodes: [] },
  flowInput: Buffer.from([0x80]),
  state: 'pending',
  priority: 3,
  tags: ['t'],
  error: '',
  created: new Date(1000),
  started: undefined,
  ended: undefined,
  nodes: undefined,
  parentJobId: '',
  ...over,
});

const task = (batchIndex: number, over: Partial<TaskRecord> = {}): TaskRecord => ({
  jobId: 'j1',
  nodeName: 'A',
  batchIndex,
  taskId: `j1:0:${batchIndex}`,
  state: 'succeeded',
  attempts: 1,
  resultInline: Buffer.from([batchIndex]),
  resultKey: undefined,
  resultSize: 1,
  meta: {},
  error: undefined,
  started: new Date(2000),
  ended: new Date(3000),
  ...over,
});

describe('SqliteStateStore', () => {
  it('stores, replaces, lists and deletes algorithms and pipelines', async () => {
    await store.putAlgorithm('a', { name: 'a', env: 'nodejs' });
    const first = await store.putAlgorithm('a', { name: 'a', env: 'python' });
    expect(first.spec).toEqual({ name: 'a', env: 'python' });
    await store.putAlgorithm('b', { name: 'b' });
    expect((await store.listAlgorithms()).map((a) => a.name)).toEqual(['a', 'b']);
    expect(await store.deleteAlgorithm('a')).toBe(true);
    expect(await store.deleteAlgorithm('a')).toBe(false);
    expect(await store.getAlgorithm('a')).toBeUndefined();

    await store.putPipeline('p', { name: 'p', nodes: [] });
    expect((await store.getPipeline('p'))?.descriptor).toEqual({ name: 'p', nodes: [] });
    expect(await store.listPipelines()).toHaveLength(1);
    expect(await store.deletePipeline('p')).toBe(true);
  });

  it('creates, updates, filters and lists jobs newest first', async () => {
    await store.createJob(job('j1'));
    await store.createJob(job('j2', { pipelineName: 'q', created: new Date(2000) }));
    await store.updateJob('j1', { state: 'failed', error: 'boom', started: new Date(1500), ended: new Date(1600) });
    const j1 = await store.getJob('j1');
    expect(j1).toMatchObject({ state: 'failed', error: 'boom', tags: ['t'] });
    expect(j1?.ended?.getTime()).toBe(1600);
    expect([...(j1?.flowInput ?? [])]).toEqual([0x80]);
    expect((await store.listJobs({})).map((j) => j.jobId)).toEqual(['j2', 'j1']);
    expect((await store.listJobs({ states: ['pending'] })).map((j) => j.jobId)).toEqual(['j2']);
    expect((await store.listJobs({ pipelineName: 'p' })).map((j) => j.jobId)).toEqual(['j1']);
    expect(await store.listJobs({ limit: 1 })).toHaveLength(1);
  });

  it('filters by tag, creation time, parent and end time; keeps node summaries', async () => {
    await store.createJob(job('a', { tags: ['nightly', 'x'], created: new Date(1000) }));
    await store.createJob(job('b', { tags: ['weekly'], created: new Date(5000), parentJobId: 'a' }));
    await store.updateJob('a', { state: 'completed', ended: new Date(2000), nodes: [{ nodeName: 'N', total: 3 }] });
    expect((await store.listJobs({ tag: 'nightly' })).map((j) => j.jobId)).toEqual(['a']);
    expect((await store.listJobs({ tag: 'night' })).map((j) => j.jobId)).toEqual([]);
    expect((await store.listJobs({ from: new Date(2000) })).map((j) => j.jobId)).toEqual(['b']);
    expect((await store.listJobs({ to: new Date(2000) })).map((j) => j.jobId)).toEqual(['a']);
    expect((await store.listJobs({ parentJobId: 'a' })).map((j) => j.jobId)).toEqual(['b']);
    expect((await store.listJobs({ endedBefore: new Date(3000) })).map((j) => j.jobId)).toEqual(['a']);
    expect((await store.getJob('a'))?.nodes).toEqual([{ nodeName: 'N', total: 3 }]);
    expect((await store.getJob('b'))?.parentJobId).toBe('a');
  });

  it('drops stored results and deletes jobs for retention', async () => {
    await store.createJob(job('j1'));
    await store.recordTask(task(0, { resultInline: undefined, resultKey: 'jobs/j1/0/0', resultSize: 9 }));
    await store.dropTaskResult('j1', 'A');
    const [t] = await store.listTasks('j1');
    expect(t?.resultKey).toBeUndefined();
    expect(t?.meta).toHaveProperty('expired');
    await store.deleteJob('j1');
    expect(await store.getJob('j1')).toBeUndefined();
    expect(await store.listTasks('j1')).toEqual([]);
  });

  it('records each task once: the first record wins, even within one batch', async () => {
    const results = await Promise.all([
      store.recordTask(task(0)),
      store.recordTask(task(1)),
      store.recordTask(task(0, { resultInline: Buffer.from([99]) })),
    ]);
    expect(results).toEqual([true, true, false]);
    expect(await store.recordTask(task(1, { state: 'failed' }))).toBe(false);
    const tasks = await store.listTasks('j1');
    expect(tasks.map((t) => [t.batchIndex, t.state, [...(t.resultInline ?? [])]])).toEqual([
      [0, 'succeeded', [0]],
      [1, 'succeeded', [1]],
    ]);
  });

  it('keeps failures and blob references', async () => {
    await store.recordTask(
      task(-1, {
        nodeName: 'B',
        state: 'failed',
        resultInline: undefined,
        error: { type: 'TypeError', message: 'x', stack: 's', crash: false },
      }),
    );
    await store.recordTask(
      task(-1, {
        resultInline: undefined,
        resultKey: 'jobs/j1/0/0',
        resultSize: 5,
        meta: { '': { type: 'array', size: 3 } },
      }),
    );
    const [a, b] = await store.listTasks('j1');
    expect(a).toMatchObject({
      nodeName: 'A',
      resultKey: 'jobs/j1/0/0',
      resultSize: 5,
      meta: { '': { type: 'array', size: 3 } },
    });
    expect(b?.error).toEqual({ type: 'TypeError', message: 'x', stack: 's', crash: false });
  });

  it('survives reopening the file', async () => {
    await store.createJob(job('j1'));
    await store.recordTask(task(0));
    await store.close();
    store = new SqliteStateStore(join(dir, 'weft.db'));
    expect((await store.getJob('j1'))?.state).toBe('pending');
    expect(await store.listTasks('j1')).toHaveLength(1);
  });
});
