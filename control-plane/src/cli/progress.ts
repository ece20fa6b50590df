import { JobState, NodeState, type AlgorithmProgress, type JobEvent, type NodeStatus } from '@weft/proto';
import { formatPercent, leafLabel, nodeCounts } from './output.js';

/** What the progress line shows. */
export interface ProgressView {
  state: JobState;
  /** 0-100. */
  percent: number;
  /** In pipeline order. */
  nodes: readonly NodeStatus[];
}

/** Width of the bar between the brackets. */
const BAR_WIDTH = 20;

/** `[########------------]` for 40%. */
export function renderBar(percent: number, width = BAR_WIDTH): string {
  const p = Number.isFinite(percent) ? Math.min(100, Math.max(0, percent)) : 0;
  const filled = Math.floor((p / 100) * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

/** One node on the progress line: `Range 1/1 ✓`, `Multiply 2/5`, `Reduce 0/?`. */
export function renderNode(node: NodeStatus): string {
  const base = `${node.nodeName} ${nodeCounts(node)}`;
  switch (node.state) {
    case NodeState.NODE_STATE_SUCCEEDED:
      return `${base} ✓`;
    case NodeState.NODE_STATE_FAILED:
      return `${base} ✗`;
    case NodeState.NODE_STATE_SKIPPED:
      return `${node.nodeName} skipped`;
    case NodeState.NODE_STATE_STOPPED:
      return `${base} stopped`;
    default: {
      const extra: string[] = [];
      if (node.failed > 0) extra.push(`${node.failed} failed`);
      if (node.skipped > 0) extra.push(`${node.skipped} skipped`);
      return extra.length > 0 ? `${base} (${extra.join(', ')})` : base;
    }
  }
}

/** The live progress line, e.g. `[########------------] 40%  Range 1/1 ✓  Multiply 2/5  Reduce 0/1`. */
export function renderProgressLine(view: ProgressView): string {
  const parts = [`${renderBar(view.percent)} ${formatPercent(view.percent)}`];
  // A job waits in pending while workers start; say so, or the bar looks stuck.
  if (view.state === JobState.JOB_STATE_PENDING) parts.push('pending');
  else if (view.state === JobState.JOB_STATE_PAUSED) parts.push('paused');
  parts.push(...view.nodes.map(renderNode));
  return parts.join('  ');
}

/** An algorithm's own progress report, e.g. `Multiply#3: 50% halfway`. */
export function renderAlgorithmProgress(p: AlgorithmProgress): string {
  const text = `${leafLabel(p)}: ${formatPercent(p.percent)}`;
  return p.message ? `${text} ${p.message}` : text;
}

/**
 * Folds the events of `Jobs.Watch` into the view the progress line shows:
 * status events replace everything, node events update one node.
 */
export class JobProgress {
  state: JobState = JobState.JOB_STATE_UNSPECIFIED;
  percent = 0;
  /** Error text of the last status snapshot. */
  error = '';
  private readonly nodes = new Map<string, NodeStatus>();

  /**
   * Applies one event. Returns the line to print for an algorithm progress
   * report, undefined for other events.
   */
  apply(event: JobEvent): string | undefined {
    const e = event.event;
    if (!e) return undefined;
    switch (e.$case) {
      case 'status':
        this.state = e.value.state;
        this.error = e.value.error;
        this.nodes.clear();
        for (const node of e.value.nodes) this.nodes.set(node.nodeName, node);
        this.percent = this.estimate() ?? e.value.progress;
        return undefined;
      case 'node':
        this.nodes.set(e.value.nodeName, e.value);
        this.percent = this.estimate() ?? this.percent;
        return undefined;
      case 'progress':
        return renderAlgorithmProgress(e.value);
    }
  }

  /** The current view. */
  view(): ProgressView {
    return { state: this.state, percent: this.percent, nodes: [...this.nodes.values()] };
  }

  // Between status snapshots only node counts arrive, so the CLI computes
  // progress itself, as the mean of each node's completed fraction. A count of
  // all tasks (the server's HKube-compatible figure) would jump backwards
  // whenever a batch's size became known; this one only moves forward.
  private estimate(): number | undefined {
    if (this.nodes.size === 0) return undefined;
    let sum = 0;
    for (const node of this.nodes.values()) {
      if (node.state === NodeState.NODE_STATE_SUCCEEDED || node.state === NodeState.NODE_STATE_SKIPPED) sum += 1;
      else if (node.total > 0) sum += Math.min(node.total, node.succeeded + node.failed + node.skipped) / node.total;
    }
    return (100 * sum) / this.nodes.size;
  }
}

/** Where progress is written: stderr, or a fake in tests. */
export interface ProgressSink {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Fastest redraw of the live line on a terminal. */
const TTY_INTERVAL_MS = 100;
/** At most 5 lines per second when the output is a file or a pipe. */
const PLAIN_INTERVAL_MS = 200;
/** Algorithm messages kept while throttled; older ones are dropped. */
const MAX_QUEUED = 100;
const CLEAR_LINE = '\r\x1b[2K';

/**
 * Writes job progress. On a terminal one line is rewritten in place and
 * algorithm messages scroll above it; elsewhere each change is a plain line,
 * at most five a second, so logs stay readable.
 */
export class ProgressReporter {
  private readonly tty: boolean;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private lastEmit = -Infinity;
  /** TTY: the line on screen. Plain: the newest line not yet printed. */
  private line: string | undefined;
  private lastPrinted: string | undefined;
  /** TTY: the line as last drawn. */
  private onScreen: string | undefined;
  private readonly queue: string[] = [];
  private preferLine = false;
  private finished = false;

  constructor(
    private readonly out: ProgressSink,
    options: { tty?: boolean; now?: () => number } = {},
  ) {
    this.tty = options.tty ?? out.isTTY === true;
    this.now = options.now ?? Date.now;
  }

  /** Sets the progress line. */
  update(line: string): void {
    if (this.finished) return;
    if (this.tty) {
      this.line = line;
      this.schedule(TTY_INTERVAL_MS, () => this.draw());
    } else if (line !== this.lastPrinted || this.line !== undefined) {
      this.line = line;
      this.pump();
    }
  }

  /** Prints a message line, e.g. an algorithm's progress report. */
  message(text: string): void {
    if (this.finished) return;
    if (this.tty) {
      this.out.write(`${CLEAR_LINE}${this.fit(text)}\n`);
      this.onScreen = undefined;
      if (this.line !== undefined) this.draw();
      return;
    }
    this.queue.push(text);
    if (this.queue.length > MAX_QUEUED) this.queue.shift();
    this.pump();
  }

  /** Prints whatever is pending and leaves the last line in place. Idempotent. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.tty) {
      if (this.line === undefined) return;
      this.out.write(this.line === this.onScreen ? '\n' : `${CLEAR_LINE}${this.fit(this.line)}\n`);
      return;
    }
    for (const text of this.queue.splice(0)) this.out.write(`${text}\n`);
    if (this.line !== undefined && this.line !== this.lastPrinted) this.out.write(`${this.line}\n`);
    this.line = undefined;
  }

  // Runs fn now if the interval since the last output has passed, else once
  // when it has (a pending timer already covers later calls).
  private schedule(interval: number, fn: () => void): void {
    if (this.timer) return;
    const wait = this.lastEmit + interval - this.now();
    if (wait <= 0) {
      fn();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      fn();
    }, wait);
    this.timer.unref();
  }

  private draw(): void {
    if (this.line === undefined || this.line === this.onScreen) return;
    this.lastEmit = this.now();
    this.onScreen = this.line;
    this.out.write(`${CLEAR_LINE}${this.fit(this.line)}`);
  }

  private pump(): void {
    this.schedule(PLAIN_INTERVAL_MS, () => {
      this.emitOne();
      if (this.queue.length > 0 || this.line !== undefined) this.pump();
    });
  }

  // One plain line: alternate between queued messages and the progress line
  // so neither starves the other when both change quickly.
  private emitOne(): void {
    const takeLine = this.line !== undefined && (this.queue.length === 0 || this.preferLine);
    if (takeLine && this.line !== undefined) {
      if (this.line !== this.lastPrinted) this.out.write(`${this.line}\n`);
      this.lastPrinted = this.line;
      this.line = undefined;
    } else {
      const text = this.queue.shift();
      if (text === undefined) return;
      this.out.write(`${text}\n`);
    }
    this.preferLine = !takeLine;
    this.lastEmit = this.now();
  }

  // A line longer than the terminal wraps, and \r then only returns to the
  // start of the last row: the rewrite would leave debris above.
  private fit(text: string): string {
    const cols = this.out.columns;
    if (!this.tty || !cols || cols < 10) return text;
    const chars = [...text];
    return chars.length < cols ? text : `${chars.slice(0, cols - 2).join('')}…`;
  }
}
