import { describe, expect, it } from 'vitest';
import { PriorityQueue } from './queue.js';

describe('PriorityQueue', () => {
  it('pops higher priority first, then older first', () => {
    const q = new PriorityQueue<{ priority: number; seq: number; id: string }>();
    q.push({ priority: 1, seq: 1, id: 'a' });
    q.push({ priority: 5, seq: 2, id: 'b' });
    q.push({ priority: 5, seq: 3, id: 'c' });
    q.push({ priority: 3, seq: 4, id: 'd' });
    q.push({ priority: 5, seq: 0, id: 'retried' });
    expect([q.pop(), q.pop(), q.pop(), q.pop(), q.pop(), q.pop()].map((x) => x?.id)).toEqual([
      'retried',
      'b',
      'c',
      'd',
      'a',
      undefined,
    ]);
  });

  it('keeps heap order across many random items', () => {
    const q = new PriorityQueue<{ priority: number; seq: number }>();
    const items = Array.from({ length: 500 }, (_, seq) => ({ priority: (seq * 7919) % 5, seq }));
    for (const it of items) q.push(it);
    const out: { priority: number; seq: number }[] = [];
    for (let x = q.pop(); x; x = q.pop()) out.push(x);
    const sorted = [...items].sort((a, b) => b.priority - a.priority || a.seq - b.seq);
    expect(out).toEqual(sorted);
  });

  it('removeWhere drops matching items and keeps order', () => {
    const q = new PriorityQueue<{ priority: number; seq: number; job: string }>();
    for (let i = 0; i < 10; i++) q.push({ priority: 3, seq: i, job: i % 2 ? 'x' : 'y' });
    const removed = q.removeWhere((i) => i.job === 'x');
    expect(removed).toHaveLength(5);
    expect(q.size).toBe(5);
    expect([q.pop(), q.pop()].map((i) => i?.seq)).toEqual([0, 2]);
  });
});
