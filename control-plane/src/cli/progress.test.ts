import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { JobState, NodeState, type JobEvent, type NodeStatus } from '@weft/proto';
import {
  JobProgress,
  ProgressReporter,
  renderAlgorithmProgress,
  renderBar,
  renderNode,
  renderProgressLine,
} from './progress.js';

function node(partial: Partial<NodeStatus> & { nodeName: string }): NodeStatus {
  return {
    algorithmName: partial.nodeName.toLowerCase(),
    state: NodeState.NODE_STATE_ACTIVE,
    total: 0,
    pending: 0,
    active: 0,
    succeeded: 0,
    failed: 0,
    batch: false,
    errors: [],
    skipped: 0,
    parents: [],
    ...partial,
  };
}

const range = node({ nodeName: 'Range', state: NodeState.NODE_STATE_SUCCEEDED, total: 1, succeeded: 1 });
const multiply = node({ nodeName: 'Multiply', total: 5, succeeded: 2, active: 3, batch: true });
const reduce = node({ nodeName: 'Reduce', state: NodeState.NODE_STATE_PENDING, total: 1 });

describe('rendering', () => {
  it('draws the bar', () => {
    expect(renderBar(0)).toBe('[--------------------]');
    expect(renderBar(40)).toBe('[########------------]');
    expect(renderBar(100)).toBe('[####################]');
    expect(renderBar(250)).toBe('[####################]');
  });

  it('renders the live line', () => {
    expect(
      renderProgressLine({ state: JobState.JOB_STATE_ACTIVE, percent: 40, nodes: [range, multiply, reduce] }),
    ).toBe('[########------------] 40%  Range 1/1 ✓  Multiply 2/5  Reduce 0/1');
    expect(renderProgressLine({ state: JobState.JOB_STATE_PENDING, percent: 0, nodes: [] })).toBe(
      '[--------------------] 0%  pending',
    );
    expect(renderProgressLine({ state: JobState.JOB_STATE_PAUSED, percent: 40, nodes: [range] })).toBe(
      '[########------------] 40%  paused  Range 1/1 ✓',
    );
  });

  it('marks node outcomes', () => {
    expect(renderNode(node({ nodeName: 'A', state: NodeState.NODE_STATE_FAILED, total: 2, succeeded: 1 }))).toBe(
      'A 1/2 ✗',
    );
    expect(renderNode(node({ nodeName: 'A', total: 4, succeeded: 1, failed: 1 }))).toBe('A 1/4 (1 failed)');
    expect(renderNode(node({ nodeName: 'A', total: 4, succeeded: 1, failed: 1, skipped: 2 }))).toBe(
      'A 1/4 (1 failed, 2 skipped)',
    );
    expect(renderNode(node({ nodeName: 'A', state: NodeState.NODE_STATE_SKIPPED }))).toBe('A skipped');
    expect(renderNode(node({ nodeName: 'A' }))).toBe('A 0/?');
  });

  it('renders algorithm progress reports', () => {
    const p = { nodeName: 'Multiply', taskId: 't', batchIndex: 3, percent: 50, message: 'halfway' };
    expect(renderAlgorithmProgress(p)).toBe('Multiply#3: 50% halfway');
    expect(renderAlgorithmProgress({ ...p, batchIndex: -1, message: '' })).toBe('Multiply: 50%');
  });
});

describe('JobProgress', () => {
  it('takes snapshots from status events and counts from node events', () => {
    const progress = new JobProgress();
    const status: JobEvent = {
      event: {
        $case: 'status',
        value: {
          jobId: 'j',
          pipelineName: 'p',
          state: JobState.JOB_STATE_ACTIVE,
          progress: 20,
          nodes: [range, { ...multiply, succeeded: 0 }, reduce],
          error: '',
          priority: 3,
          tags: [],
          childJobIds: [],
          parentJobId: '',
        },
      },
    };
    expect(progress.apply(status)).toBeUndefined();
    // Range done, Multiply 0 of 5, Reduce not started: one node of three.
    expect(progress.view().percent).toBeCloseTo(100 / 3);
    expect(progress.apply({ event: { $case: 'node', value: multiply } })).toBeUndefined();
    // Range done, Multiply 2 of 5, Reduce not started.
    expect(progress.view().percent).toBeCloseTo((100 * (1 + 2 / 5)) / 3);
    expect(progress.view().nodes.map((n) => n.nodeName)).toEqual(['Range', 'Multiply', 'Reduce']);
    const message = progress.apply({
      event: {
        $case: 'progress',
        value: { nodeName: 'Multiply', taskId: 't', batchIndex: 1, percent: 10, message: 'go' },
      },
    });
    expect(message).toBe('Multiply#1: 10% go');
    expect(progress.apply({})).toBeUndefined();
  });

  it('counts a node of unknown size as not started, and never moves backwards as sizes become known', () => {
    const progress = new JobProgress();
    progress.apply({ event: { $case: 'node', value: range } });
    progress.apply({
      event: { $case: 'node', value: node({ nodeName: 'Multiply', state: NodeState.NODE_STATE_PENDING }) },
    });
    expect(progress.view().percent).toBe(50);
    progress.apply({
      event: {
        $case: 'node',
        value: node({ nodeName: 'Multiply', state: NodeState.NODE_STATE_ACTIVE, total: 100, succeeded: 0 }),
      },
    });
    expect(progress.view().percent).toBe(50);
  });

  it('falls back to the server progress without nodes', () => {
    const progress = new JobProgress();
    progress.apply({
      event: {
        $case: 'status',
        value: {
          jobId: 'j',
          pipelineName: 'p',
          state: 2,
          progress: 12,
          nodes: [],
          error: '',
          priority: 0,
          tags: [],
          childJobIds: [],
          parentJobId: '',
        },
      },
    });
    expect(progress.view().percent).toBe(12);
  });
});

/** A stream that records what is written to it. */
function sink(
  tty: boolean,
  columns?: number,
): { chunks: string[]; write(s: string): boolean; isTTY: boolean; columns?: number } {
  const chunks: string[] = [];
  return { chunks, write: (s: string) => chunks.push(s) > 0, isTTY: tty, ...(columns ? { columns } : {}) };
}

describe('ProgressReporter', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('prints at most five plain lines a second, keeping the newest line', () => {
    const out = sink(false);
    const r = new ProgressReporter(out);
    r.update('a');
    r.update('b');
    r.update('c');
    expect(out.chunks).toEqual(['a\n']);
    vi.advanceTimersByTime(199);
    expect(out.chunks).toEqual(['a\n']);
    vi.advanceTimersByTime(1);
    expect(out.chunks).toEqual(['a\n', 'c\n']);
    r.update('c');
    vi.advanceTimersByTime(1000);
    expect(out.chunks).toEqual(['a\n', 'c\n']);
    r.update('d');
    r.finish();
    expect(out.chunks).toEqual(['a\n', 'c\n', 'd\n']);
    r.update('e');
    expect(out.chunks).toHaveLength(3);
  });

  it('interleaves messages with the progress line when not a TTY', () => {
    const out = sink(false);
    const r = new ProgressReporter(out);
    r.update('line1');
    r.message('m1');
    r.message('m2');
    r.update('line2');
    vi.advanceTimersByTime(200);
    vi.advanceTimersByTime(200);
    vi.advanceTimersByTime(200);
    expect(out.chunks).toEqual(['line1\n', 'm1\n', 'line2\n', 'm2\n']);
    r.finish();
    expect(out.chunks).toHaveLength(4);
  });

  it('rewrites one line on a TTY and prints messages above it', () => {
    const out = sink(true, 80);
    const r = new ProgressReporter(out);
    r.update('one');
    r.update('two');
    expect(out.chunks).toEqual(['\r\x1b[2Kone']);
    vi.advanceTimersByTime(100);
    expect(out.chunks).toEqual(['\r\x1b[2Kone', '\r\x1b[2Ktwo']);
    r.message('Multiply#0: 50%');
    expect(out.chunks.slice(2)).toEqual(['\r\x1b[2KMultiply#0: 50%\n', '\r\x1b[2Ktwo']);
    r.update('three');
    r.finish();
    expect(out.chunks.at(-1)).toBe('\r\x1b[2Kthree\n');
  });

  it('ends a TTY line already on screen with a newline only', () => {
    const out = sink(true, 80);
    const r = new ProgressReporter(out);
    r.update('done');
    r.finish();
    expect(out.chunks).toEqual(['\r\x1b[2Kdone', '\n']);
  });

  it('cuts the TTY line to the terminal width', () => {
    const out = sink(true, 12);
    const r = new ProgressReporter(out);
    r.update('0123456789abcdef');
    expect(out.chunks).toEqual(['\r\x1b[2K0123456789…']);
  });
});
