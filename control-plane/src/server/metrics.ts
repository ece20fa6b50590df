import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The control plane's Prometheus metrics, in one registry per server. */
export class Metrics {
  readonly registry = new Registry();
  readonly jobsTotal = new Counter({
    name: 'weft_jobs_total',
    help: 'Jobs that reached a final state, by state.',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly jobsActive = new Gauge({
    name: 'weft_jobs_active',
    help: 'Jobs pending or active.',
    registers: [this.registry],
  });
  readonly tasksTotal = new Counter({
    name: 'weft_tasks_total',
    help: 'Task attempts that ended, by algorithm and outcome (succeeded, failed, crashed, stopped).',
    labelNames: ['algorithm', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly tasksQueued = new Gauge({
    name: 'weft_tasks_queued',
    help: 'Tasks waiting for a worker, by algorithm.',
    labelNames: ['algorithm'] as const,
    registers: [this.registry],
  });
  readonly workers = new Gauge({
    name: 'weft_workers',
    help: 'Workers by algorithm and state (starting, ready, busy, exiting).',
    labelNames: ['algorithm', 'state'] as const,
    registers: [this.registry],
  });
  readonly workerStarts = new Counter({
    name: 'weft_worker_starts_total',
    help: 'Workers started by the executor, by algorithm.',
    labelNames: ['algorithm'] as const,
    registers: [this.registry],
  });
  readonly dispatchLatency = new Histogram({
    name: 'weft_dispatch_latency_seconds',
    help: 'Time from a task becoming runnable to its algorithm starting it.',
    labelNames: ['algorithm'] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  });
  readonly taskDuration = new Histogram({
    name: 'weft_task_duration_seconds',
    help: 'Time from dispatch to the task ending on its worker.',
    labelNames: ['algorithm'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'weft_process_' });
  }
}
