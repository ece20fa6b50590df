/**
 * The worker link contract (see ports/worker-link.ts), run against every
 * link: the gRPC stream and the in-memory fake. The factory gives the link
 * as the dispatcher sees it plus the worker's end of it, which the test
 * plays.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { WorkerCommand, WorkerEvent } from '@weft/proto';
import type { WorkerLink } from '../worker-link.js';

/** The worker's end of a link. */
export interface WorkerEnd {
  emit(ev: WorkerEvent): void;
  /** The worker ends its side normally. */
  end(): void;
  /** Commands received so far, in order. */
  received(): WorkerCommand[];
  /** Resolves with how the control plane ended the link: 'ended', or 'refused: <reason>'. */
  closed(): Promise<string>;
}

export interface LinkUnderTest {
  link: WorkerLink;
  worker: WorkerEnd;
  dispose(): Promise<void>;
}

const hello = (id: string): WorkerEvent => ({
  event: { $case: 'hello', value: { workerId: id, algorithmName: 'a', protocolVersion: 1, pid: 1, hostname: 'h' } },
});
const heartbeat: WorkerEvent = { event: { $case: 'heartbeat', value: {} } };
const start = (taskId: string): WorkerCommand => ({ command: { $case: 'start', value: { taskId } } });

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export function workerLinkContract(name: string, make: () => Promise<LinkUnderTest>): void {
  describe(`worker link contract: ${name}`, () => {
    const open: LinkUnderTest[] = [];
    afterEach(async () => {
      for (const l of open.splice(0)) await l.dispose();
    });
    const fresh = async (): Promise<LinkUnderTest> => {
      const l = await make();
      open.push(l);
      return l;
    };

    it('delivers the worker’s events in order, and the commands to the worker in order', async () => {
      const { link, worker } = await fresh();
      const events: string[] = [];
      link.onEvent((ev) => events.push(ev.event?.$case ?? ''));
      link.onClose(() => undefined);
      worker.emit(hello('w1'));
      worker.emit(heartbeat);
      worker.emit({ event: { $case: 'ready', value: {} } });
      await until(() => events.length === 3, 'three events');
      expect(events).toEqual(['hello', 'heartbeat', 'ready']);
      expect(link.send(start('t1'))).toBe(true);
      expect(link.send(start('t2'))).toBe(true);
      await until(() => worker.received().length === 2, 'two commands');
      expect(worker.received().map((c) => (c.command?.$case === 'start' ? c.command.value.taskId : ''))).toEqual([
        't1',
        't2',
      ]);
    });

    it('calls onClose exactly once when the worker goes, and drops what is sent after', async () => {
      const { link, worker } = await fresh();
      const closes: string[] = [];
      const events: string[] = [];
      link.onEvent((ev) => events.push(ev.event?.$case ?? ''));
      link.onClose((why) => closes.push(why));
      worker.emit(hello('w2'));
      await until(() => events.length === 1, 'the hello');
      worker.end();
      await until(() => closes.length === 1, 'onClose');
      expect(link.send(start('late'))).toBe(false);
      link.close();
      link.refuse('too late');
      expect(closes).toHaveLength(1);
      expect(events).toEqual(['hello']);
    });

    it('ends the worker’s side on close(), once, however often it is called', async () => {
      const { link, worker } = await fresh();
      const closes: string[] = [];
      link.onEvent(() => undefined);
      link.onClose((why) => closes.push(why));
      worker.emit(hello('w3'));
      link.close();
      link.close();
      expect(await worker.closed()).toBe('ended');
      expect(closes).toHaveLength(1);
      expect(link.send(start('after'))).toBe(false);
    });

    it('refuses a worker with a reason it can show', async () => {
      const { link, worker } = await fresh();
      const closes: string[] = [];
      link.onEvent(() => undefined);
      link.onClose((why) => closes.push(why));
      worker.emit(hello('w4'));
      link.refuse('protocol version 9 is not supported');
      expect(await worker.closed()).toBe('refused: protocol version 9 is not supported');
      await until(() => closes.length === 1, 'onClose');
      link.refuse('again');
      expect(closes).toHaveLength(1);
    });
  });
}
