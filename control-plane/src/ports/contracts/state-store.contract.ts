/**
 * The state store contract (see ports/state-store.ts), as a suite every
 * adapter runs: `stateStoreContract('sqlite', async () => fixture)`.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JobRecord, StateStore, TaskRecord } from '../state-store.js';
import type { StoreFixture } from './fixture.js';

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
  resultInline: Buffer.from([batchIndex & 0xff]),
  resultKey: undefined,
  resultSize: 1,
  meta: {},
  error: undefined,
  started: new Date(2000),
  ended: new Date(3000),
  ...over,
});

/** Declares the state store contract's tests for one adapter; `factory` makes a fresh, empty fixture per test. */
export function stateStoreContract(name: string, factory: () => Promise<StoreFixture<StateStore>>): void {
  describe(`StateStore contract: ${name}`, () => {
    let fixture: StoreFixture<StateStore>;
    let store: StateStore;
    const opened: StateStore[] = [];
    const open = async (): Promise<StateStore> => {
      const s = await fixture.open();
      opened.push(s);
      return s;
    };
    /** Closes the store and opens its storage again: what a restart sees. */
    const reopen = async (): Promise<StateStore> => {
      await store.close();
      opened.splice(opened.indexOf(store), 1);
      store = await open();
      return store;
    };

    beforeEach(async () => {
      fixture = await factory();
      store = await open();
    });

    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
      await fixture.cleanup();
    });

    it('upserts algorithms: the spec is replaced, created is kept, modified moves; listed by name', async () => {
      const first = await store.putAlgorithm('b', { name: 'b', env: 'nodejs' });
      const again = await store.putAlgorithm('b', { name: 'b', env: 'python' });
      expect(again.spec).toEqual({ name: 'b', env: 'python' });
      expect(again.created.getTime()).toBe(first.created.getTime());
      expect(again.modified.getTime()).toBeGreaterThanOrEqual(first.modified.getTime());
      await store.putAlgorithm('a', { name: 'a' });
      expect((await store.listAlgorithms()).map((a) => a.name)).toEqual(['a', 'b']);
      expect((await store.getAlgorithm('b'))?.spec).toEqual({ name: 'b', env: 'python' });
      expect(await store.deleteAlgorithm('b')).toBe(true);
      expect(await store.deleteAlgorithm('b')).toBe(false);
      expect(await store.getAlgorithm('b')).toBeUndefined();
      expect(await store.getAlgorithm('nope')).toBeUndefined();
    });

    it('upserts pipelines and lists them by name', async () => {
      await store.putPipeline('q', { name: 'q', nodes: [{ nodeName: 'x' }] });
      const p1 = await store.putPipeline('p', { name: 'p', nodes: [] });
      const p2 = await store.putPipeline('p', { name: 'p', nodes: [{ nodeName: 'y' }] });
      expect(p2.created.getTime()).toBe(p1.created.getTime());
      expect((await store.getPipeline('p'))?.descriptor).toEqual({ name: 'p', nodes: [{ nodeName: 'y' }] });
      expect((await store.listPipelines()).map((p) => p.name)).toEqual(['p', 'q']);
      expect(await store.deletePipeline('p')).toBe(true);
      expect(await store.deletePipeline('p')).toBe(false);
      expect(await store.getPipeline('p')).toBeUndefined();
    });

    it('creates jobs, patches only the given fields, and keeps every field as written', async () => {
      await store.createJob(job('j1', { tags: ['a', 'b'], priority: 5, parentJobId: 'j0' }));
      await store.updateJob('j1', { state: 'active', started: new Date(1500) });
      await store.updateJob('j1', { state: 'failed', error: 'boom', ended: new Date(1600), nodes: [{ n: 1 }] });
      await store.updateJob('j1', {});
      const j = await store.getJob('j1');
      expect(j).toMatchObject({
        jobId: 'j1',
        pipelineName: 'p',
        descriptor: { name: 'p', nodes: [] },
        state: 'failed',
        priority: 5,
        tags: ['a', 'b'],
        error: 'boom',
        nodes: [{ n: 1 }],
        parentJobId: 'j0',
      });
      expect([...j!.flowInput]).toEqual([0x80]);
      expect(j!.created.getTime()).toBe(1000);
      expect(j!.started?.getTime()).toBe(1500);
      expect(j!.ended?.getTime()).toBe(1600);
      const fresh = await store.getJob('j1');
      expect(fresh).not.toBe(j);
      expect(await store.getJob('nope')).toBeUndefined();
      const other = job('j2');
      await store.createJob(other);
      const j2 = await store.getJob('j2');
      expect(j2?.started).toBeUndefined();
      expect(j2?.ended).toBeUndefined();
      expect(j2?.nodes).toBeUndefined();
    });

    it('refuses a second job with the same id', async () => {
      await store.createJob(job('j1'));
      await expect(store.createJob(job('j1', { pipelineName: 'other' }))).rejects.toThrow();
      expect((await store.getJob('j1'))?.pipelineName).toBe('p');
    });

    it('lists jobs newest first, each filter narrowing the result', async () => {
      await store.createJob(job('a', { tags: ['nightly', 'x'], created: new Date(1000) }));
      await store.createJob(
        job('b', { tags: ['weekly'], created: new Date(5000), parentJobId: 'a', pipelineName: 'q' }),
      );
      await store.createJob(job('c', { tags: ['50%_off'], created: new Date(3000) }));
      await store.updateJob('a', { state: 'completed', ended: new Date(2000) });
      await store.updateJob('c', { state: 'active' });
      expect((await store.listJobs({})).map((j) => j.jobId)).toEqual(['b', 'c', 'a']);
      expect((await store.listJobs({ limit: 2 })).map((j) => j.jobId)).toEqual(['b', 'c']);
      expect((await store.listJobs({ pipelineName: 'p' })).map((j) => j.jobId)).toEqual(['c', 'a']);
      expect((await store.listJobs({ states: ['completed', 'active'] })).map((j) => j.jobId)).toEqual(['c', 'a']);
      expect((await store.listJobs({ tag: 'nightly' })).map((j) => j.jobId)).toEqual(['a']);
      // Whole tags only, and LIKE's wildcards in a tag are literal.
      expect((await store.listJobs({ tag: 'night' })).map((j) => j.jobId)).toEqual([]);
      expect((await store.listJobs({ tag: '50%_off' })).map((j) => j.jobId)).toEqual(['c']);
      expect((await store.listJobs({ tag: '5%' })).map((j) => j.jobId)).toEqual([]);
      expect((await store.listJobs({ from: new Date(3000) })).map((j) => j.jobId)).toEqual(['b', 'c']);
      expect((await store.listJobs({ to: new Date(3000) })).map((j) => j.jobId)).toEqual(['a']);
      expect((await store.listJobs({ parentJobId: 'a' })).map((j) => j.jobId)).toEqual(['b']);
      expect((await store.listJobs({ endedBefore: new Date(3000) })).map((j) => j.jobId)).toEqual(['a']);
      expect((await store.listJobs({ endedBefore: new Date(1000) })).map((j) => j.jobId)).toEqual([]);
      expect(
        (await store.listJobs({ pipelineName: 'p', states: ['active'], from: new Date(2000) })).map((j) => j.jobId),
      ).toEqual(['c']);
    });

    it('records each task once: the first record wins, also among calls of one turn', async () => {
      await store.createJob(job('j1'));
      const results = await Promise.all([
        store.recordTask(task(0)),
        store.recordTask(task(1)),
        store.recordTask(task(0, { taskId: 'again', resultInline: Buffer.from([99]) })),
      ]);
      expect(results).toEqual([true, true, false]);
      expect(await store.recordTask(task(1, { state: 'failed', attempts: 3 }))).toBe(false);
      // The same node and index in another job, or another node, is another task.
      expect(await store.recordTask(task(0, { jobId: 'j2' }))).toBe(true);
      expect(await store.recordTask(task(0, { nodeName: 'B' }))).toBe(true);
      const tasks = await store.listTasks('j1');
      expect(
        tasks.map((t) => [t.nodeName, t.batchIndex, t.taskId, t.state, t.attempts, [...(t.resultInline ?? [])]]),
      ).toEqual([
        ['A', 0, 'j1:0:0', 'succeeded', 1, [0]],
        ['A', 1, 'j1:0:1', 'succeeded', 1, [1]],
        ['B', 0, 'j1:0:0', 'succeeded', 1, [0]],
      ]);
    });

    it('lists tasks by node name, then batch index, with failures, blob references and metadata intact', async () => {
      await store.recordTask(task(10, { nodeName: 'B' }));
      await store.recordTask(task(2, { nodeName: 'B' }));
      await store.recordTask(
        task(-1, {
          nodeName: 'C',
          state: 'failed',
          resultInline: undefined,
          resultSize: 0,
          error: { type: 'TypeError', message: 'x', stack: 's', crash: true, exitCode: 3 },
          started: undefined,
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
      const tasks = await store.listTasks('j1');
      expect(tasks.map((t) => `${t.nodeName}#${t.batchIndex}`)).toEqual(['A#-1', 'B#2', 'B#10', 'C#-1']);
      expect(tasks[0]).toMatchObject({
        resultKey: 'jobs/j1/0/0',
        resultSize: 5,
        meta: { '': { type: 'array', size: 3 } },
      });
      expect(tasks[0]!.resultInline).toBeUndefined();
      expect(tasks[3]!.error).toEqual({ type: 'TypeError', message: 'x', stack: 's', crash: true, exitCode: 3 });
      expect(tasks[3]!.started).toBeUndefined();
      expect(tasks[3]!.ended.getTime()).toBe(3000);
      expect(await store.listTasks('nope')).toEqual([]);
    });

    it('applies records made before a retention call: dropTaskResult and deleteJob never miss or resurrect one', async () => {
      await store.createJob(job('j1'));
      // Not awaited on purpose: the drop must see the records called before it.
      const recorded = [
        store.recordTask(task(0, { resultInline: undefined, resultKey: 'jobs/j1/0/0' })),
        store.recordTask(task(0, { nodeName: 'B' })),
      ];
      await store.dropTaskResult('j1', 'A');
      expect(await Promise.all(recorded)).toEqual([true, true]);
      const [a, b] = await store.listTasks('j1');
      expect(a?.resultKey).toBeUndefined();
      expect(a?.resultInline).toBeUndefined();
      expect(a?.meta).toHaveProperty('expired');
      expect([...(b?.resultInline ?? [])]).toEqual([0]);

      const late = store.recordTask(task(5));
      await store.deleteJob('j1');
      await late;
      expect(await store.getJob('j1')).toBeUndefined();
      expect(await store.listTasks('j1')).toEqual([]);
    });

    it('a resolved write is committed: another store on the same storage sees it at once', async () => {
      await store.createJob(job('j1'));
      expect(await store.recordTask(task(0))).toBe(true);
      await store.putPipeline('p', { name: 'p' });
      const other = await open();
      expect((await other.getJob('j1'))?.state).toBe('pending');
      expect(await other.listTasks('j1')).toHaveLength(1);
      expect(await other.getPipeline('p')).toBeDefined();
      // First record wins across stores too.
      expect(await other.recordTask(task(0, { taskId: 'other' }))).toBe(false);
    });

    it('survives a restart: everything written is there after close and reopen', async () => {
      await store.putAlgorithm('a', { name: 'a' });
      await store.putPipeline('p', { name: 'p' });
      await store.createJob(job('j1'));
      await store.updateJob('j1', { state: 'active', started: new Date(1234) });
      // Not awaited: close must still commit it.
      const pending = store.recordTask(task(7));
      store = await reopen();
      expect(await pending).toBe(true);
      expect((await store.getAlgorithm('a'))?.spec).toEqual({ name: 'a' });
      expect((await store.getPipeline('p'))?.descriptor).toEqual({ name: 'p' });
      const j = await store.getJob('j1');
      expect(j?.state).toBe('active');
      expect(j?.started?.getTime()).toBe(1234);
      expect((await store.listTasks('j1')).map((t) => t.batchIndex)).toEqual([7]);
      expect(await store.recordTask(task(7))).toBe(false);
    });
  });
}
