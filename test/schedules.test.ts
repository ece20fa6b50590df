/**
 * Scheduled workflows through the real path: a control-plane process,
 * command executions as real processes on warm weft-command workers, the
 * SQLite file, and a SIGKILL in the middle.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceState, type Instance } from '@weft/proto';
import {
  FIXTURES,
  clients,
  cleanup,
  rejection,
  scheduleClients,
  startServer,
  tempDir,
  until,
  weft,
  type ServerProc,
} from './helpers.js';

const FAST_RETRIES = { WEFT_RETRY_MISSING_DEPS_DELAY: '1s', WEFT_RETRY_BASE_DELAY: '1s' };

const sh = (script: string): string[] => ['/bin/sh', '-c', script];

async function finished(
  s: ReturnType<typeof scheduleClients>,
  workflowId: string,
  parameter: string,
  timeoutMs = 20_000,
): Promise<Instance> {
  let last: Instance | undefined;
  await until(
    async () => {
      last = await s.instance(workflowId, parameter).catch((err: { code?: number }) => {
        // Not triggered yet.
        if (err.code === Status.NOT_FOUND) return undefined;
        throw err;
      });
      if (!last) return false;
      return last.state === InstanceState.INSTANCE_STATE_DONE || last.state === InstanceState.INSTANCE_STATE_ERROR;
    },
    timeoutMs,
    `instance ${workflowId} ${parameter} to finish`,
  );
  return last!;
}

describe('scheduled command workflows', () => {
  let server: ServerProc;
  let s: ReturnType<typeof scheduleClients>;
  let dir: string;

  beforeAll(async () => {
    dir = tempDir('weft-sched-');
    server = await startServer({ env: FAST_RETRIES });
    s = scheduleClients(server.address);
  });
  afterAll(async () => {
    s.close();
    await server.stop();
    cleanup(dir);
  });

  it('retries exit 20 after the fixed delay, then is done on exit 0; sees WEFT_* and STYX_*', async () => {
    const script =
      `echo "$WEFT_PARAMETER|$STYX_PARAMETER|$WEFT_EXECUTION_ID|$STYX_EXECUTION_ID|$WEFT_EXECUTION_TRIES|$WEFT_TRIGGER_TYPE|$STYX_TRIGGER_ID|$WEFT_WORKFLOW_ID|$GREETING" >> ${dir}/env.txt; ` +
      `m="${dir}/seen-$WEFT_PARAMETER"; if [ -e "$m" ]; then echo second; exit 0; fi; touch "$m"; echo first; exit 20`;
    const wf = await s.apply({
      id: 'deps',
      schedule: '*/2 * * * * *',
      command: sh(script),
      env: { GREETING: 'hello' },
      enabled: true,
    });
    expect(wf.enabled).toBe(true);
    const first = wf.nextParameter;
    const inst = await finished(s, 'deps', first);
    await s.setEnabled('deps', false);
    expect(InstanceState[inst.state]).toBe('INSTANCE_STATE_DONE');
    expect(inst.tries).toBe(2);
    expect(inst.retryCost).toBeCloseTo(0.1);
    expect(inst.consecutiveFailures).toBe(0);
    expect(inst.triggerType).toBe('natural');
    expect(inst.executions.map((e) => e.exitCode)).toEqual([20, 0]);
    const [e1, e2] = inst.executions;
    // The second try waited the configured 1 s after the first ended.
    expect(e2!.started!.getTime() - e1!.ended!.getTime()).toBeGreaterThanOrEqual(900);
    expect(readFileSync(e1!.log, 'utf8')).toBe('first\n');
    expect(readFileSync(e2!.log, 'utf8')).toBe('second\n');
    const lines = readFileSync(join(dir, 'env.txt'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split('|'))
      .filter((f) => f[0] === first);
    expect(lines).toEqual([
      [first, first, e1!.executionId, e1!.executionId, '1', 'natural', 'natural-trigger', 'deps', 'hello'],
      [first, first, e2!.executionId, e2!.executionId, '2', 'natural', 'natural-trigger', 'deps', 'hello'],
    ]);
  });

  it('stops at exit 50 without retrying', async () => {
    await s.apply({ id: 'perm', schedule: 'hourly', command: sh('echo no; exit 50') });
    const inst0 = await s.trigger('perm', '2024-01-01T05');
    expect(inst0.triggerType).toBe('adhoc');
    const inst = await finished(s, 'perm', '2024-01-01T05');
    expect(InstanceState[inst.state]).toBe('INSTANCE_STATE_ERROR');
    expect(inst.tries).toBe(1);
    expect(inst.lastExitCode).toBe(50);
    expect(inst.message).toMatch(/permanent failure/);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await s.instance('perm', '2024-01-01T05')).executions).toHaveLength(1);
  });

  it('retry_condition stops retries early', async () => {
    await s.apply({ id: 'cond', schedule: 'daily', command: sh('exit 3'), retry_condition: 'tries < 2' });
    await s.trigger('cond', '2024-01-01');
    const inst = await finished(s, 'cond', '2024-01-01');
    expect(InstanceState[inst.state]).toBe('INSTANCE_STATE_ERROR');
    expect(inst.executions.map((e) => e.exitCode)).toEqual([3, 3]);
    expect(inst.message).toMatch(/retry_condition/);
  });

  it('halts a running instance and kills its process; retry is refused for a halted one', async () => {
    await s.apply({ id: 'long', schedule: 'daily', command: sh(`echo $$ > ${dir}/long.pid; exec sleep 60`) });
    await s.trigger('long', '2024-02-01');
    await until(async () => (await s.instance('long', '2024-02-01')).state === InstanceState.INSTANCE_STATE_RUNNING);
    await until(() => existsSync(join(dir, 'long.pid')));
    const pid = Number(readFileSync(join(dir, 'long.pid'), 'utf8'));
    const halted = await s.halt('long', '2024-02-01');
    expect(InstanceState[halted.state]).toBe('INSTANCE_STATE_ERROR');
    await until(() => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    }, 10_000);
    const err = await rejection(() => s.retry('long', '2024-02-01'));
    expect(err.code).toBe(Status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/weft workflow trigger long 2024-02-01/);
    // Triggering again runs it anew.
    const again = await s.trigger('long', '2024-02-01');
    expect(InstanceState[again.state]).toBe('INSTANCE_STATE_QUEUED');
    await s.halt('long', '2024-02-01');
  });

  it('a resource limits concurrency across workflows', async () => {
    await s.createResource('db', 1);
    const script = `echo "S $(date +%s%N)" >> ${dir}/db.txt; sleep 0.3; echo "E $(date +%s%N)" >> ${dir}/db.txt`;
    await s.apply({ id: 'db-a', schedule: 'daily', command: sh(script), resources: ['db'] });
    await s.apply({ id: 'db-b', schedule: 'daily', command: sh(script), resources: ['db'] });
    for (const d of ['2024-03-01', '2024-03-02']) {
      await s.trigger('db-a', d);
      await s.trigger('db-b', d);
    }
    for (const id of ['db-a', 'db-b']) for (const d of ['2024-03-01', '2024-03-02']) await finished(s, id, d);
    expect(maxOverlap(readFileSync(join(dir, 'db.txt'), 'utf8'))).toBe(1);
  });

  it('a backfill of 10 slots with concurrency 3 never runs more than 3, in reverse order', async () => {
    const script = `echo "S $(date +%s%N) $WEFT_PARAMETER" >> ${dir}/bf.txt; sleep 0.5; echo "E $(date +%s%N) $WEFT_PARAMETER" >> ${dir}/bf.txt`;
    await s.apply({ id: 'bf', schedule: 'hourly', command: sh(script) });
    const start = new Date('2024-01-01T00:00:00Z');
    const end = new Date('2024-01-01T10:00:00Z');
    const b = await s.createBackfill({ workflowId: 'bf', start, end, concurrency: 3, reverse: true });
    expect(b.slots).toBe(10);
    let maxActive = 0;
    await until(
      async () => {
        const cur = await s.backfill(b.id);
        maxActive = Math.max(maxActive, cur.active);
        return cur.done === 10;
      },
      60_000,
      `backfill ${b.id} to finish`,
    );
    const log = readFileSync(join(dir, 'bf.txt'), 'utf8');
    expect(maxOverlap(log)).toBeLessThanOrEqual(3);
    expect(maxOverlap(log)).toBe(3);
    expect(maxActive).toBeLessThanOrEqual(3);
    const starts = log
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('S'))
      .map((l) => l.split(' ')[2]);
    // Reverse: the first three started are the three latest slots.
    expect(new Set(starts.slice(0, 3))).toEqual(new Set(['2024-01-01T09', '2024-01-01T08', '2024-01-01T07']));
    const done = await s.backfill(b.id);
    expect(done.slotStates.map((x) => x.parameter)).toHaveLength(10);
    expect(done.slotStates.every((x) => x.state === InstanceState.INSTANCE_STATE_DONE)).toBe(true);
  });

  it('rejects a backfill over active slots, and halts one gracefully or not', async () => {
    await s.apply({ id: 'bf2', schedule: 'daily', command: sh('sleep 30') });
    const b = await s.createBackfill({
      workflowId: 'bf2',
      start: new Date('2024-01-01T00:00:00Z'),
      end: new Date('2024-01-05T00:00:00Z'),
      concurrency: 2,
    });
    const err = await rejection(() =>
      s.createBackfill({
        workflowId: 'bf2',
        start: new Date('2024-01-02T00:00:00Z'),
        end: new Date('2024-01-03T00:00:00Z'),
        concurrency: 1,
      }),
    );
    expect(err.code).toBe(Status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/2024-01-02/);
    await until(async () => (await s.backfill(b.id)).active === 2);
    // Graceful: nothing new starts, the two running go on.
    const g = await s.haltBackfill(b.id, true);
    expect(g.halted).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    const after = await s.backfill(b.id);
    expect(after.active).toBe(2);
    expect(after.triggered).toBe(2);
    // Not graceful: the running ones are halted too.
    const h = await s.haltBackfill(b.id, false);
    expect(h.active).toBe(0);
    expect(h.errored).toBe(2);
  });
});

describe('algorithm and pipeline workflows', () => {
  let server: ServerProc;
  let s: ReturnType<typeof scheduleClients>;
  let c: ReturnType<typeof clients>;
  let dir: string;

  beforeAll(async () => {
    dir = tempDir('weft-sched-alg-');
    server = await startServer({ env: FAST_RETRIES });
    s = scheduleClients(server.address);
    c = clients(server.address);
    await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
  });
  afterAll(async () => {
    s.close();
    c.close();
    await server.stop();
    cleanup(dir);
  });

  it('an algorithm that throws MissingDependencies is retried, then done; it sees the WEFT_* env', async () => {
    await s.apply({
      id: 'alg',
      schedule: 'daily',
      algorithm: { name: 'waitdeps', input: [{ marker: join(dir, 'alg-marker'), parameter: '{}' }] },
    });
    await s.trigger('alg', '2024-05-01');
    const inst = await finished(s, 'alg', '2024-05-01');
    expect(InstanceState[inst.state]).toBe('INSTANCE_STATE_DONE');
    expect(inst.executions.map((e) => e.exitCode)).toEqual([20, 0]);
    expect(inst.executions[0]!.error).toMatch(/MissingDependencies: .*alg-marker is not there yet/);
    expect(inst.retryCost).toBeCloseTo(0.1);
  });

  it('PermanentFailure from Python stops the instance at once (exit 50)', async () => {
    await s.apply({
      id: 'py',
      schedule: 'daily',
      algorithm: { name: 'pydeps', input: [{ marker: join(dir, 'py'), parameter: '{}', mode: 'permanent' }] },
    });
    await s.trigger('py', '2024-05-02');
    const inst = await finished(s, 'py', '2024-05-02');
    expect(InstanceState[inst.state]).toBe('INSTANCE_STATE_ERROR');
    expect(inst.executions.map((e) => e.exitCode)).toEqual([50]);
    expect(inst.executions[0]!.error).toMatch(/PermanentFailure: partition 2024-05-02 is broken/);
  });

  it('a pipeline workflow runs a stored pipeline with {} substituted; its tasks see the env', async () => {
    await c.store({
      name: 'sched-pipe',
      nodes: [{ nodeName: 'A', algorithmName: 'waitdeps', input: ['@flowInput.spec'] }],
      flowInput: { spec: { marker: 'unused', parameter: 'unused' } },
    });
    await s.apply({
      id: 'pipe',
      schedule: 'hourly',
      pipeline: { name: 'sched-pipe', flowInput: { spec: { marker: join(dir, 'pipe-marker'), parameter: '{}' } } },
    });
    await s.trigger('pipe', '2024-05-01T13');
    const inst = await finished(s, 'pipe', '2024-05-01T13');
    expect(InstanceState[inst.state]).toBe('INSTANCE_STATE_DONE');
    expect(inst.executions.map((e) => e.exitCode)).toEqual([20, 0]);
    const jobId = inst.executions[1]!.log.replace(/^job:/, '');
    expect(inst.executions[1]!.log).toMatch(/^job:sched-pipe-/);
    const [value] = await c.values(jobId);
    expect(value).toEqual({
      parameter: '2024-05-01T13',
      weftParameter: '2024-05-01T13',
      styxParameter: '2024-05-01T13',
      executionId: inst.executions[1]!.executionId,
      tries: '2',
    });
  });
});

describe('timeouts and spread', () => {
  let server: ServerProc;
  let s: ReturnType<typeof scheduleClients>;
  let dir: string;
  beforeAll(async () => {
    dir = tempDir('weft-sched-timeout-');
    server = await startServer({
      env: { ...FAST_RETRIES, WEFT_TIMEOUT_RUNNING: '1s', WEFT_RETRY_MISSING_DEPS_DELAY: '1h' },
    });
    s = scheduleClients(server.address);
  });
  afterAll(async () => {
    s.close();
    await server.stop();
    cleanup(dir);
  });

  it('a run past its state timeout is stopped, fails and follows the retry rules', async () => {
    await s.apply({
      id: 'slow',
      schedule: 'daily',
      command: sh(`echo $$ >> ${dir}/pids; exec sleep 60`),
      retry_condition: 'tries < 2',
    });
    await s.trigger('slow', '2024-06-01');
    const inst = await finished(s, 'slow', '2024-06-01', 30_000);
    expect(InstanceState[inst.state]).toBe('INSTANCE_STATE_ERROR');
    expect(inst.executions).toHaveLength(2);
    for (const e of inst.executions) expect(e.error).toMatch(/timed out after 1 s in state running/);
    const pids = readFileSync(join(dir, 'pids'), 'utf8').trim().split('\n').map(Number);
    expect(pids).toHaveLength(2);
    await until(() =>
      pids.every((pid) => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      }),
    );
  });

  it('retry runs a queued instance now instead of after its delay', async () => {
    const script = `m="${dir}/deps-$WEFT_PARAMETER"; if [ -e "$m" ]; then exit 0; fi; touch "$m"; exit 20`;
    await s.apply({ id: 'later', schedule: 'daily', command: sh(script) });
    await s.trigger('later', '2024-07-01');
    await until(async () => (await s.instance('later', '2024-07-01')).tries === 1, 20_000, 'the first try');
    await until(async () => (await s.instance('later', '2024-07-01')).state === InstanceState.INSTANCE_STATE_QUEUED);
    const queued = await s.instance('later', '2024-07-01');
    // Exit 20: the next try is an hour away (WEFT_RETRY_MISSING_DEPS_DELAY).
    expect(queued.nextAttempt!.getTime() - Date.now()).toBeGreaterThan(50 * 60_000);
    const retried = await s.retry('later', '2024-07-01');
    expect(InstanceState[retried.state]).toBe('INSTANCE_STATE_QUEUED');
    const inst = await finished(s, 'later', '2024-07-01');
    expect(InstanceState[inst.state]).toBe('INSTANCE_STATE_DONE');
    expect(inst.executions.map((e) => e.exitCode)).toEqual([20, 0]);
  });

  it('spread gives each workflow a fixed start offset within the window', async () => {
    const a = await s.apply({ id: 'spread-a', schedule: 'hourly', spread: 'PT30M', command: ['true'] });
    const b = await s.apply({ id: 'spread-b', schedule: 'hourly', spread: 'PT30M', command: ['true'] });
    const offset = (w: typeof a) => w.nextDue!.getTime() - (w.nextNaturalTrigger!.getTime() + 3_600_000);
    for (const w of [a, b]) {
      expect(offset(w)).toBeGreaterThanOrEqual(0);
      expect(offset(w)).toBeLessThan(30 * 60_000);
    }
    expect(offset(a)).not.toBe(offset(b));
    expect(offset(await s.apply({ id: 'spread-a', schedule: 'hourly', spread: 'PT30M', command: ['true'] }))).toBe(
      offset(a),
    );
  });
});

describe('bad workflow files and requests name the field', () => {
  let server: ServerProc;
  let s: ReturnType<typeof scheduleClients>;
  beforeAll(async () => {
    server = await startServer();
    s = scheduleClients(server.address);
  });
  afterAll(async () => {
    s.close();
    await server.stop();
  });

  it.each([
    [{ id: 'x', schedule: '61 * * * *', command: ['true'] }, /^schedule:/],
    [{ id: 'x', schedule: 'daily', offset: 'PT1Q', command: ['true'] }, /^offset:/],
    [{ id: 'x', schedule: 'daily', command: ['true'], resources: ['nope'] }, /^resources\[0\]:/],
    [{ id: 'x', schedule: 'daily', command: ['true'], retry_condition: 'exitCode ==' }, /^retry_condition:/],
    [{ id: 'x', schedule: 'daily', command: ['true'], retry_condition: 'exitCode + "a"' }, /^retry_condition:/],
    [{ id: 'x', schedule: 'daily', timezone: 'Mars/Olympus', command: ['true'] }, /^timezone:/],
    [{ schedule: 'daily', command: ['true'] }, /^id:/],
  ])('%j', async (doc, field) => {
    const err = await rejection(() => s.apply(doc));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toMatch(field);
  });

  it('the CLI shows a bad workflow file as one line naming the field', async () => {
    const dir = tempDir('weft-badwf-');
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'id: nightly\nschedule: "0 25 * * *"\ncommand: ["true"]\n');
    const r = await weft(['workflow', 'apply', '-f', file, '--server', server.address]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/nightly.*schedule: /);
    cleanup(dir);
  });

  it('a misaligned backfill range names start or end; the server keeps serving', async () => {
    await s.apply({ id: 'daily', schedule: 'daily', command: ['true'] });
    const err = await rejection(() =>
      s.createBackfill({
        workflowId: 'daily',
        start: new Date('2024-01-01T05:00:00Z'),
        end: new Date('2024-01-03T00:00:00Z'),
        concurrency: 1,
      }),
    );
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^start: .*not aligned/);
    const err2 = await rejection(() =>
      s.createBackfill({
        workflowId: 'daily',
        start: new Date('2024-01-01T00:00:00Z'),
        end: new Date('2024-01-03T01:00:00Z'),
        concurrency: 1,
      }),
    );
    expect(err2.details).toMatch(/^end: /);
    const err3 = await rejection(() => s.trigger('daily', '2024-13-01'));
    expect(err3.code).toBe(Status.INVALID_ARGUMENT);
    expect(err3.details).toMatch(/^parameter: /);
    expect((await s.getWorkflow('daily')).id).toBe('daily');
  });
});

describe('catch-up after a SIGKILL', () => {
  it('triggers every slot missed while the control plane was down exactly once', async () => {
    const dir = tempDir('weft-catchup-');
    const dataDir = join(dir, 'data');
    let server = await startServer({ dataDir });
    let s = scheduleClients(server.address);
    await s.apply({
      id: 'every-second',
      schedule: '* * * * * *',
      command: sh(`echo "$WEFT_PARAMETER" >> ${dir}/runs.txt`),
      enabled: true,
    });
    await s.apply({
      id: 'only-latest',
      schedule: '* * * * * *',
      command: ['true'],
      catch_up: 'latest',
      enabled: true,
    });
    await s.apply({
      id: 'skip-missed',
      schedule: '* * * * * *',
      command: ['true'],
      catch_up: 'none',
      enabled: true,
    });
    await until(
      async () =>
        (await s.instances('every-second')).filter((i) => i.state === InstanceState.INSTANCE_STATE_DONE).length >= 3,
      20_000,
    );
    await server.kill();
    s.close();
    const killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 4000));
    server = await startServer({ dataDir });
    const restartedAt = Date.now();
    s = scheduleClients(server.address);
    // Wait for the slots of the downtime and a few after it.
    await until(async () => {
      const list = await s.instances('every-second');
      const latest = Math.max(...list.map((i) => Date.parse(i.parameter)));
      return (
        latest > restartedAt + 1000 &&
        list.every((i) => i.state === InstanceState.INSTANCE_STATE_DONE || Date.parse(i.parameter) > restartedAt)
      );
    }, 20_000);
    await s.setEnabled('every-second', false);
    await s.setEnabled('skip-missed', false);
    await s.setEnabled('only-latest', false);
    const list = await s.instances('every-second');
    const seconds = list.map((i) => Date.parse(i.parameter)).sort((a, b) => a - b);
    // Contiguous: every second from the first to the last has its instance, once.
    for (let i = 1; i < seconds.length; i++) expect(seconds[i]! - seconds[i - 1]!).toBe(1000);
    expect(new Set(seconds).size).toBe(seconds.length);
    const downtime = seconds.filter((t) => t > killedAt && t < restartedAt - 1000);
    expect(downtime.length).toBeGreaterThanOrEqual(3);
    for (const i of list.filter((x) => Date.parse(x.parameter) < restartedAt)) {
      expect(i.triggerType).toBe('natural');
    }
    // Each finished instance's command ran; only one cut off by the kill may have run twice.
    const runs = readFileSync(join(dir, 'runs.txt'), 'utf8').trim().split('\n');
    const counts = new Map<string, number>();
    for (const r of runs) counts.set(r, (counts.get(r) ?? 0) + 1);
    const done = list.filter((i) => i.state === InstanceState.INSTANCE_STATE_DONE);
    for (const i of done) expect(counts.get(i.parameter) ?? 0).toBeGreaterThanOrEqual(1);
    expect([...counts.values()].filter((n) => n > 1).length).toBeLessThanOrEqual(1);
    // catch_up none: no instance for the slots of the downtime.
    const skipped = (await s.instances('skip-missed')).map((i) => Date.parse(i.parameter));
    expect(skipped.filter((t) => t > killedAt + 1000 && t < restartedAt - 1000)).toEqual([]);
    expect(skipped.some((t) => t > restartedAt)).toBe(true);
    // catch_up latest: of the slots missed, only the last one (due just before the restart) ran.
    const latest = (await s.instances('only-latest')).map((i) => Date.parse(i.parameter));
    expect(latest.filter((t) => t > killedAt + 1000 && t < restartedAt).length).toBe(1);
    s.close();
    await server.stop();
    cleanup(dir);
  });
});

/** Most runs overlapping at once, from "S <ns>" / "E <ns>" lines. */
function maxOverlap(log: string): number {
  const events = log
    .trim()
    .split('\n')
    .map((l) => l.split(' '))
    .map(([kind, t]) => ({ d: kind === 'S' ? 1 : -1, t: BigInt(t!) }))
    .sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : a.d - b.d));
  let cur = 0;
  let max = 0;
  for (const e of events) {
    cur += e.d;
    max = Math.max(max, cur);
  }
  return max;
}
