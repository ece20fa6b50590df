import { Cron } from 'croner';
import type { Logger } from '@weft/common';
import type { Descriptor } from '../domain/pipeline.js';
import type { JobEngine } from './jobs.js';

interface TriggerSpec {
  cron?: { pattern?: string; enabled?: boolean };
  pipelines?: string[];
}

function triggersOf(d: Descriptor): TriggerSpec {
  return (d as unknown as { triggers?: TriggerSpec }).triggers ?? {};
}

/**
 * HKube's triggers on stored pipelines: a cron pattern that runs the pipeline,
 * and a list of other stored pipelines whose successful completion runs it.
 */
export class Triggers {
  private readonly crons = new Map<string, Cron>();

  constructor(
    private readonly engine: JobEngine,
    private readonly log: Logger,
  ) {
    engine.onCompleted = (pipelineName, jobId) => this.completed(pipelineName, jobId);
  }

  /** (Re)arms the triggers of a stored pipeline; undefined when it was deleted. */
  sync(name: string, d: Descriptor | undefined): void {
    this.crons.get(name)?.stop();
    this.crons.delete(name);
    const cron = d ? triggersOf(d).cron : undefined;
    if (!cron?.enabled || !cron.pattern) return;
    const job = new Cron(cron.pattern, { protect: true, catch: true }, () => {
      this.engine.execStored(name).then(
        (jobId) => this.log.info('cron trigger started a job', { pipeline: name, jobId }),
        (err: unknown) => this.log.warn('cron trigger could not start a job', { pipeline: name, err }),
      );
    });
    this.crons.set(name, job);
  }

  private completed(pipelineName: string, jobId: string): void {
    const targets = [...this.engine.storedPipelines()].filter(([, d]) =>
      (triggersOf(d).pipelines ?? []).includes(pipelineName),
    );
    if (targets.length === 0) return;
    void this.engine.lineage(jobId).then((chain) => {
      for (const [name] of targets) {
        // A pipeline already in this chain of triggered jobs would start the loop again.
        if (chain.includes(name)) {
          this.log.warn('pipeline trigger skipped: it would close a cycle', {
            pipeline: name,
            chain: chain.join(' <- '),
          });
          continue;
        }
        this.fire(name, jobId);
      }
    });
  }

  private fire(name: string, jobId: string): void {
    this.engine.execStored(name, undefined, { parentJobId: jobId }).then(
      (child) => this.log.info('pipeline trigger started a job', { pipeline: name, after: jobId, jobId: child }),
      (err: unknown) => this.log.warn('pipeline trigger could not start a job', { pipeline: name, err }),
    );
  }

  stop(): void {
    for (const c of this.crons.values()) c.stop();
    this.crons.clear();
  }
}
