/**
 * The schedule store contract (see ports/schedule-store.ts), as a suite every
 * adapter runs: `scheduleStoreContract('sqlite', async () => fixture)`.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type {
  BackfillRecord,
  ExecutionRecord,
  InstanceRecord,
  ScheduleStore,
  WorkflowRecord,
} from '../schedule-store.js';
import type { StoreFixture } from './fixture.js';

const HOUR = 3_600_000;

const workflow = (id: string, over: Partial<WorkflowRecord> = {}): WorkflowRecord => ({
  id,
  document: { id, schedule: 'hourly', command: ['true'] },
  enabled: true,
  nextSlot: new Date(10 * HOUR),
  created: new Date(1000),
  modified: new Date(1000),
  ...over,
});

const instance = (workflowId: string, slotHour: number, over: Partial<InstanceRecord> = {}): InstanceRecord => ({
  workflowId,
  parameter: `p${slotHour}`,
  slot: new Date(slotHour * HOUR),
  state: 'queued',
  triggerId: 'natural-trigger',
  triggerType: 'natural',
  triggerEnv: {},
  tries: 0,
  consecutiveFailures: 0,
  cost: 0,
  lastExitCode: null,
  message: '',
  executionId: '',
  nextAttempt: new Date(slotHour * HOUR),
  stateSince: new Date(slotHour * HOUR),
  created: new Date(slotHour * HOUR),
  updated: new Date(slotHour * HOUR),
  ...over,
});

const backfill = (id: string, over: Partial<BackfillRecord> = {}): BackfillRecord => ({
  id,
  workflowId: 'w',
  start: new Date(0),
  end: new Date(10 * HOUR),
  concurrency: 2,
  reverse: false,
  description: 'd',
  halted: false,
  allTriggered: false,
  nextIndex: 0,
  env: { A: '1' },
  created: new Date(5000),
  ...over,
});

const execution = (executionId: string, over: Partial<ExecutionRecord> = {}): ExecutionRecord => ({
  executionId,
  workflowId: 'w',
  parameter: 'p1',
  try: 1,
  triggerId: 't',
  started: undefined,
  ended: undefined,
  exitCode: null,
  error: '',
  log: `/logs/${executionId}.log`,
  ...over,
});

/** Declares the schedule store contract's tests for one adapter; `factory` makes a fresh, empty fixture per test. */
export function scheduleStoreContract(name: string, factory: () => Promise<StoreFixture<ScheduleStore>>): void {
  describe(`ScheduleStore contract: ${name}`, () => {
    let fixture: StoreFixture<ScheduleStore>;
    let store: ScheduleStore;
    const opened: ScheduleStore[] = [];
    const open = async (): Promise<ScheduleStore> => {
      const s = await fixture.open();
      opened.push(s);
      return s;
    };
    const reopen = async (): Promise<ScheduleStore> => {
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

    it('stores, updates, lists by id and deletes workflows', async () => {
      await store.putWorkflow(workflow('b'));
      await store.putWorkflow(workflow('a', { enabled: false }));
      await store.putWorkflow(workflow('b', { document: { id: 'b', v: 2 }, modified: new Date(2000) }));
      expect((await store.listWorkflows()).map((w) => w.id)).toEqual(['a', 'b']);
      const b = await store.getWorkflow('b');
      expect(b).toMatchObject({ id: 'b', document: { id: 'b', v: 2 }, enabled: true });
      expect(b?.nextSlot.getTime()).toBe(10 * HOUR);
      await store.updateWorkflow('b', { enabled: false, nextSlot: new Date(11 * HOUR) });
      await store.updateWorkflow('a', { enabled: true });
      const [a2, b2] = await store.listWorkflows();
      expect(a2).toMatchObject({ id: 'a', enabled: true });
      expect(b2?.enabled).toBe(false);
      expect(b2?.nextSlot.getTime()).toBe(11 * HOUR);
      expect(await store.deleteWorkflow('a')).toBe(true);
      expect(await store.deleteWorkflow('a')).toBe(false);
      expect(await store.getWorkflow('a')).toBeUndefined();
    });

    it('trigger creates the instance and moves the natural cursor with it', async () => {
      await store.putWorkflow(workflow('w'));
      expect(await store.trigger(instance('w', 10), { replaceFinal: false, nextSlot: new Date(11 * HOUR) })).toBe(
        'created',
      );
      const inst = await store.getInstance('w', 'p10');
      expect(inst).toMatchObject({ workflowId: 'w', parameter: 'p10', state: 'queued', triggerType: 'natural' });
      expect(inst?.slot.getTime()).toBe(10 * HOUR);
      expect((await store.getWorkflow('w'))?.nextSlot.getTime()).toBe(11 * HOUR);
    });

    it('trigger is idempotent per (workflow, parameter): an active instance is kept, the cursor still moves', async () => {
      await store.putWorkflow(workflow('w'));
      await store.trigger(instance('w', 10, { triggerId: 'first' }), {
        replaceFinal: false,
        nextSlot: new Date(11 * HOUR),
      });
      const again = await store.trigger(instance('w', 10, { triggerId: 'second', state: 'new' }), {
        replaceFinal: true,
        nextSlot: new Date(12 * HOUR),
      });
      expect(again).toBe('active');
      expect((await store.getInstance('w', 'p10'))?.triggerId).toBe('first');
      expect((await store.getWorkflow('w'))?.nextSlot.getTime()).toBe(12 * HOUR);
      expect(await store.listInstances({ workflowId: 'w' })).toHaveLength(1);
    });

    it('trigger leaves a final instance unless replaceFinal, and replaces it when asked', async () => {
      await store.putWorkflow(workflow('w'));
      await store.trigger(instance('w', 10, { triggerId: 'first' }), { replaceFinal: false });
      await store.updateInstance('w', 'p10', { state: 'done' });
      expect(await store.trigger(instance('w', 10, { triggerId: 'second' }), { replaceFinal: false })).toBe('final');
      expect((await store.getInstance('w', 'p10'))?.triggerId).toBe('first');
      expect(await store.trigger(instance('w', 10, { triggerId: 'third' }), { replaceFinal: true })).toBe('created');
      expect(await store.getInstance('w', 'p10')).toMatchObject({ triggerId: 'third', state: 'queued' });
      await store.updateInstance('w', 'p10', { state: 'error' });
      expect(await store.trigger(instance('w', 10), { replaceFinal: false })).toBe('final');
    });

    it('trigger moves a backfill cursor atomically with the instance', async () => {
      await store.putWorkflow(workflow('w'));
      await store.putBackfill(backfill('bf'));
      const inst = instance('w', 3, { triggerId: 'bf', triggerType: 'backfill', triggerEnv: { A: '1' } });
      expect(
        await store.trigger(inst, { replaceFinal: true, backfill: { id: 'bf', nextIndex: 1, allTriggered: false } }),
      ).toBe('created');
      expect(
        await store.trigger(instance('w', 4, { triggerId: 'bf' }), {
          replaceFinal: true,
          backfill: { id: 'bf', nextIndex: 2, allTriggered: true },
        }),
      ).toBe('created');
      const b = await store.getBackfill('bf');
      expect(b).toMatchObject({ nextIndex: 2, allTriggered: true });
      expect((await store.getInstance('w', 'p3'))?.triggerEnv).toEqual({ A: '1' });
      // Committed when resolved: another store on the same storage sees instance and cursor together.
      const other = await open();
      expect((await other.getBackfill('bf'))?.nextIndex).toBe(2);
      expect((await other.listInstances({ triggerId: 'bf' })).map((i) => i.parameter)).toEqual(['p3', 'p4']);
    });

    it('trigger sees write-behind updates made before it (they are never reordered after it)', async () => {
      await store.putWorkflow(workflow('w'));
      await store.trigger(instance('w', 10), { replaceFinal: false });
      // Not awaited: the trigger right after must already see the instance as final.
      void store.updateInstance('w', 'p10', { state: 'done' });
      expect(await store.trigger(instance('w', 10, { triggerId: 'x' }), { replaceFinal: false })).toBe('final');
    });

    it('updates instances (read your writes) and lists them by workflow then slot, filtered', async () => {
      await store.putWorkflow(workflow('w'));
      await store.putWorkflow(workflow('v'));
      await store.trigger(instance('w', 12), { replaceFinal: false });
      await store.trigger(instance('w', 10, { triggerId: 'adhoc-1', triggerType: 'adhoc' }), { replaceFinal: false });
      await store.trigger(instance('v', 11), { replaceFinal: false });
      void store.updateInstance('w', 'p12', {
        state: 'running',
        tries: 2,
        consecutiveFailures: 1,
        cost: 1.5,
        lastExitCode: 20,
        message: 'm',
        executionId: 'e1',
        nextAttempt: new Date(99),
        stateSince: new Date(98),
        triggerEnv: { K: 'v' },
      });
      const got = await store.getInstance('w', 'p12');
      expect(got).toMatchObject({
        state: 'running',
        tries: 2,
        consecutiveFailures: 1,
        cost: 1.5,
        lastExitCode: 20,
        message: 'm',
        executionId: 'e1',
        triggerEnv: { K: 'v' },
      });
      expect(got?.nextAttempt.getTime()).toBe(99);
      expect(got?.stateSince.getTime()).toBe(98);
      await store.updateInstance('w', 'p10', { state: 'done' });
      const keys = (l: InstanceRecord[]): string[] => l.map((i) => `${i.workflowId}/${i.parameter}`);
      expect(keys(await store.listInstances({}))).toEqual(['v/p11', 'w/p10', 'w/p12']);
      expect(keys(await store.listInstances({ workflowId: 'w' }))).toEqual(['w/p10', 'w/p12']);
      expect(keys(await store.listInstances({ states: ['running', 'queued'] }))).toEqual(['v/p11', 'w/p12']);
      expect(keys(await store.listInstances({ triggerId: 'adhoc-1' }))).toEqual(['w/p10']);
      expect(keys(await store.listInstances({ active: true }))).toEqual(['v/p11', 'w/p12']);
      expect(keys(await store.listInstances({ limit: 2 }))).toEqual(['v/p11', 'w/p10']);
      expect(await store.getInstance('w', 'nope')).toBeUndefined();
    });

    it('write-behind writes apply in call order and are committed by close', async () => {
      await store.putWorkflow(workflow('w'));
      await store.trigger(instance('w', 10), { replaceFinal: false });
      void store.updateInstance('w', 'p10', { state: 'prepare', message: 'a' });
      void store.updateInstance('w', 'p10', { state: 'running' });
      void store.updateWorkflow('w', { nextSlot: new Date(20 * HOUR) });
      void store.putExecution(execution('e1', { parameter: 'p10', started: new Date(5) }));
      store = await reopen();
      expect(await store.getInstance('w', 'p10')).toMatchObject({ state: 'running', message: 'a' });
      expect((await store.getWorkflow('w'))?.nextSlot.getTime()).toBe(20 * HOUR);
      expect((await store.listExecutions('w', 'p10')).map((e) => e.executionId)).toEqual(['e1']);
    });

    it("a read applies the store's write-behind writes for every reader", async () => {
      await store.putWorkflow(workflow('w'));
      await store.trigger(instance('w', 10), { replaceFinal: false });
      const other = await open();
      await store.updateInstance('w', 'p10', { state: 'running' });
      await store.getInstance('w', 'p10');
      expect((await other.getInstance('w', 'p10'))?.state).toBe('running');
    });

    it('upserts executions and lists an instance’s by start, unstarted last, then try', async () => {
      await store.putExecution(execution('e3', { try: 3 }));
      await store.putExecution(execution('e2', { try: 2, started: new Date(200) }));
      await store.putExecution(execution('e1', { try: 1, started: new Date(100) }));
      await store.putExecution(execution('other', { parameter: 'p2' }));
      await store.putExecution(
        execution('e1', {
          try: 1,
          started: new Date(100),
          ended: new Date(150),
          exitCode: 1,
          error: 'bad',
          log: 'job:j',
        }),
      );
      const list = await store.listExecutions('w', 'p1');
      expect(list.map((e) => e.executionId)).toEqual(['e1', 'e2', 'e3']);
      expect(list[0]).toMatchObject({ exitCode: 1, error: 'bad', log: 'job:j', try: 1, triggerId: 't' });
      expect(list[0]?.ended?.getTime()).toBe(150);
      expect(list[2]?.started).toBeUndefined();
      expect(list[2]?.exitCode).toBeNull();
      expect(await store.listExecutions('w', 'nope')).toEqual([]);
    });

    it('stores backfills, updates their progress fields, lists by creation then id', async () => {
      await store.putBackfill(backfill('b2', { created: new Date(10) }));
      await store.putBackfill(backfill('b1', { created: new Date(10) }));
      await store.putBackfill(backfill('b0', { created: new Date(20), reverse: true }));
      await store.putBackfill(
        backfill('b2', { created: new Date(10), halted: true, concurrency: 5, description: 'x', nextIndex: 4 }),
      );
      expect((await store.listBackfills()).map((b) => b.id)).toEqual(['b1', 'b2', 'b0']);
      const b2 = await store.getBackfill('b2');
      expect(b2).toMatchObject({
        halted: true,
        concurrency: 5,
        description: 'x',
        nextIndex: 4,
        env: { A: '1' },
        reverse: false,
      });
      expect(b2?.end.getTime()).toBe(10 * HOUR);
      expect((await store.getBackfill('b0'))?.reverse).toBe(true);
      expect(await store.getBackfill('nope')).toBeUndefined();
    });

    it('stores, replaces, lists by id and deletes resources', async () => {
      await store.putResource({ id: 'r2', concurrency: 1 });
      await store.putResource({ id: 'r1', concurrency: 3 });
      await store.putResource({ id: 'r2', concurrency: 4 });
      expect(await store.listResources()).toEqual([
        { id: 'r1', concurrency: 3 },
        { id: 'r2', concurrency: 4 },
      ]);
      expect(await store.getResource('r2')).toEqual({ id: 'r2', concurrency: 4 });
      expect(await store.deleteResource('r2')).toBe(true);
      expect(await store.deleteResource('r2')).toBe(false);
      expect(await store.getResource('r2')).toBeUndefined();
    });

    it('survives a restart: workflows, instances, backfills and resources are there after reopen', async () => {
      await store.putWorkflow(workflow('w'));
      await store.putBackfill(backfill('bf'));
      await store.putResource({ id: 'r', concurrency: 2 });
      await store.trigger(instance('w', 1), { replaceFinal: false, nextSlot: new Date(2 * HOUR) });
      store = await reopen();
      expect((await store.getWorkflow('w'))?.nextSlot.getTime()).toBe(2 * HOUR);
      expect((await store.getInstance('w', 'p1'))?.state).toBe('queued');
      expect(await store.getBackfill('bf')).toBeDefined();
      expect(await store.getResource('r')).toEqual({ id: 'r', concurrency: 2 });
    });
  });
}
