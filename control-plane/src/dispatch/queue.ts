/**
 * A priority queue of work: higher priority first; within a priority, the
 * older entry (lower sequence number) first. A retried task keeps its original
 * sequence number, so it goes back ahead of newer work and is never starved.
 */
export interface Queued {
  priority: number;
  seq: number;
}

export class PriorityQueue<T extends Queued> {
  private heap: T[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(item: T): void {
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  pop(): T | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last !== undefined) {
      h[0] = last;
      this.sift(0);
    }
    return top;
  }

  peek(): T | undefined {
    return this.heap[0];
  }

  /** Removes every item matching pred; returns them. O(n). */
  removeWhere(pred: (item: T) => boolean): T[] {
    const removed: T[] = [];
    const kept: T[] = [];
    for (const it of this.heap) (pred(it) ? removed : kept).push(it);
    if (removed.length > 0) {
      this.heap = [];
      for (const it of kept) this.push(it);
    }
    return removed;
  }

  private before(a: T, b: T): boolean {
    return a.priority !== b.priority ? a.priority > b.priority : a.seq < b.seq;
  }

  private sift(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.before(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.before(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}
