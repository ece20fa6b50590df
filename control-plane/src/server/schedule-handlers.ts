/**
 * gRPC handlers of the schedule services (Workflows, Instances, Backfills,
 * ConcurrencyLimits): conversions between messages and the scheduler.
 */
import { invalid, type Logger } from '@weft/common';
import {
  InstanceState as PbInstanceState,
  type Backfill,
  type BackfillsServer,
  type ConcurrencyLimitsServer,
  type Execution,
  type Instance,
  type InstancesServer,
  type Workflow,
  type WorkflowsServer,
} from '@weft/proto';
import type { InstanceState } from '../domain/schedule.js';
import type { BackfillView, Scheduler, WorkflowView } from '../engine/scheduler.js';
import type { ExecutionRecord, InstanceRecord } from '../ports/schedule-store.js';
import { unary } from './handlers.js';

const STATE_TO_PB: Record<InstanceState, PbInstanceState> = {
  new: PbInstanceState.INSTANCE_STATE_QUEUED,
  queued: PbInstanceState.INSTANCE_STATE_QUEUED,
  prepare: PbInstanceState.INSTANCE_STATE_PREPARE,
  submitting: PbInstanceState.INSTANCE_STATE_SUBMITTING,
  submitted: PbInstanceState.INSTANCE_STATE_SUBMITTED,
  running: PbInstanceState.INSTANCE_STATE_RUNNING,
  terminated: PbInstanceState.INSTANCE_STATE_TERMINATED,
  failed: PbInstanceState.INSTANCE_STATE_FAILED,
  done: PbInstanceState.INSTANCE_STATE_DONE,
  error: PbInstanceState.INSTANCE_STATE_ERROR,
};

const PB_TO_STATE = new Map<PbInstanceState, InstanceState>(
  (Object.entries(STATE_TO_PB) as [InstanceState, PbInstanceState][])
    .filter(([s]) => s !== 'new')
    .map(([s, p]) => [p, s]),
);

export function instanceToPb(r: InstanceRecord, executions: ExecutionRecord[] = []): Instance {
  return {
    workflowId: r.workflowId,
    parameter: r.parameter,
    state: STATE_TO_PB[r.state],
    triggerId: r.triggerId,
    triggerType: r.triggerType,
    tries: r.tries,
    consecutiveFailures: r.consecutiveFailures,
    retryCost: r.cost,
    ...(r.lastExitCode === null ? {} : { lastExitCode: r.lastExitCode }),
    message: r.message,
    executionId: r.executionId,
    nextAttempt: r.nextAttempt,
    created: r.created,
    updated: r.updated,
    executions: executions.map(executionToPb),
  };
}

function executionToPb(e: ExecutionRecord): Execution {
  return {
    executionId: e.executionId,
    try: e.try,
    triggerId: e.triggerId,
    started: e.started,
    ended: e.ended,
    ...(e.exitCode === null ? {} : { exitCode: e.exitCode }),
    error: e.error,
    log: e.log,
  };
}

function workflowToPb(v: WorkflowView): Workflow {
  return {
    id: v.rec.id,
    document: v.rec.document,
    enabled: v.rec.enabled,
    nextNaturalTrigger: v.rec.nextSlot,
    nextParameter: v.nextParameter,
    nextDue: v.nextDue,
    created: v.rec.created,
    modified: v.rec.modified,
    warnings: [...v.spec.warnings],
    activeInstances: v.activeInstances,
  };
}

function backfillToPb(v: BackfillView): Backfill {
  const r = v.rec;
  return {
    id: r.id,
    workflowId: r.workflowId,
    start: r.start,
    end: r.end,
    concurrency: r.concurrency,
    reverse: r.reverse,
    description: r.description,
    halted: r.halted,
    allTriggered: r.allTriggered,
    created: r.created,
    slots: v.slots,
    triggered: v.triggered,
    active: v.active,
    done: v.done,
    errored: v.errored,
    slotStates: (v.slotStates ?? []).map((s) => ({
      parameter: s.parameter,
      state: s.state ? STATE_TO_PB[s.state] : PbInstanceState.INSTANCE_STATE_UNSPECIFIED,
      tries: s.tries,
    })),
  };
}

function required(value: string, field: string): string {
  if (!value) throw invalid(field, 'is required');
  return value;
}

function time(d: Date | undefined, field: string): Date {
  if (!d) throw invalid(field, 'is required');
  return d;
}

export function workflows(s: Scheduler, log: Logger): WorkflowsServer {
  return {
    apply: unary(log, 'Workflows.Apply', async (req) => {
      if (!req.document) throw invalid('document', 'is required');
      return workflowToPb(await s.apply(req.document));
    }),
    get: unary(log, 'Workflows.Get', async (req) => workflowToPb(await s.getWorkflow(required(req.id, 'id')))),
    list: unary(log, 'Workflows.List', async () => ({ workflows: (await s.listWorkflows()).map(workflowToPb) })),
    delete: unary(log, 'Workflows.Delete', async (req) => workflowToPb(await s.deleteWorkflow(required(req.id, 'id')))),
    setEnabled: unary(log, 'Workflows.SetEnabled', async (req) =>
      workflowToPb(await s.setEnabled(required(req.id, 'id'), req.enabled)),
    ),
    trigger: unary(log, 'Workflows.Trigger', async (req) =>
      instanceToPb(
        await s.trigger(required(req.workflowId, 'workflow_id'), req.parameter, {
          env: req.env,
          allowFuture: req.allowFuture,
        }),
      ),
    ),
  };
}

export function instances(s: Scheduler, log: Logger): InstancesServer {
  return {
    list: unary(log, 'Instances.List', async (req) => {
      const states = req.states.map((p, i) => {
        const st = PB_TO_STATE.get(p);
        if (!st) throw invalid(`states[${i}]`, `${p} is not an instance state`);
        return st;
      });
      const list = await s.listInstances({
        ...(req.workflowId ? { workflowId: req.workflowId } : {}),
        ...(req.triggerId ? { triggerId: req.triggerId } : {}),
        ...(states.length ? { states } : {}),
        limit: req.limit,
      });
      return { instances: list.map((r) => instanceToPb(r)) };
    }),
    get: unary(log, 'Instances.Get', async (req) => {
      const { rec, executions } = await s.getInstance(
        required(req.workflowId, 'workflow_id'),
        required(req.parameter, 'parameter'),
      );
      return instanceToPb(rec, executions);
    }),
    halt: unary(log, 'Instances.Halt', async (req) =>
      instanceToPb(await s.haltInstance(required(req.workflowId, 'workflow_id'), required(req.parameter, 'parameter'))),
    ),
    retry: unary(log, 'Instances.Retry', async (req) =>
      instanceToPb(
        await s.retryInstance(
          required(req.workflowId, 'workflow_id'),
          required(req.parameter, 'parameter'),
          req.delayMs,
        ),
      ),
    ),
  };
}

export function backfills(s: Scheduler, log: Logger): BackfillsServer {
  return {
    create: unary(log, 'Backfills.Create', async (req) =>
      backfillToPb(
        await s.createBackfill({
          workflowId: req.workflowId,
          start: time(req.start, 'start'),
          end: time(req.end, 'end'),
          concurrency: req.concurrency,
          reverse: req.reverse,
          description: req.description,
          allowFuture: req.allowFuture,
          env: req.env,
        }),
      ),
    ),
    list: unary(log, 'Backfills.List', async (req) => ({
      backfills: (
        await s.listBackfills({ ...(req.workflowId ? { workflowId: req.workflowId } : {}), showAll: req.showAll })
      ).map(backfillToPb),
    })),
    get: unary(log, 'Backfills.Get', async (req) => backfillToPb(await s.getBackfill(required(req.id, 'id')))),
    edit: unary(log, 'Backfills.Edit', async (req) =>
      backfillToPb(
        await s.editBackfill(required(req.id, 'id'), {
          ...(req.concurrency !== undefined ? { concurrency: req.concurrency } : {}),
          ...(req.description !== undefined ? { description: req.description } : {}),
        }),
      ),
    ),
    halt: unary(log, 'Backfills.Halt', async (req) =>
      backfillToPb(await s.haltBackfill(required(req.id, 'id'), req.graceful)),
    ),
  };
}

export function concurrencyLimits(s: Scheduler, log: Logger): ConcurrencyLimitsServer {
  return {
    create: unary(log, 'ConcurrencyLimits.Create', (req) =>
      s.putResource({ id: req.id, concurrency: req.concurrency }, 'create'),
    ),
    list: unary(log, 'ConcurrencyLimits.List', async () => ({ resources: await s.listResources() })),
    get: unary(log, 'ConcurrencyLimits.Get', (req) => s.getResource(required(req.id, 'id'))),
    edit: unary(log, 'ConcurrencyLimits.Edit', (req) =>
      s.putResource({ id: req.id, concurrency: req.concurrency }, 'edit'),
    ),
    delete: unary(log, 'ConcurrencyLimits.Delete', (req) => s.deleteResource(required(req.id, 'id'))),
  };
}
