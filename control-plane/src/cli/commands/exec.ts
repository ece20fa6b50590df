import {
  JobState,
  type DataChunk,
  type ExecResponse,
  type JobEvent,
  type JobResult,
  type JobStatus,
  type ListJobsResponse,
} from '@weft/proto';
import { parseTime } from '../args.js';
import { unary } from '../client.js';
import { arg, noneFound, printLines, warn, type Context } from '../context.js';
import { downloadResults, type OpenDownload, type WrittenFile } from '../download.js';
import { CliError, UsageError } from '../errors.js';
import { flowInputFields, isMapping, loadFlowInput, loadPipelines } from '../files.js';
import { graphJson, graphLines } from '../graph.js';
import {
  formatJson,
  formatPercent,
  formatTable,
  formatTime,
  isFinalState,
  jobResultJson,
  jobStateName,
  jobStatusJson,
  leafLabel,
  parseJobState,
  resultLines,
  statusLines,
  type Json,
} from '../output.js';
import { JobProgress, ProgressReporter, renderProgressLine } from '../progress.js';
import { rejectedAs, required } from './shared.js';

/** Exit code when the user interrupts `--wait` or `watch` (128 + SIGINT). */
const INTERRUPTED = 130;

/** `weft exec raw -f FILE [--input FILE] [--wait]`. */
export async function execRaw(ctx: Context): Promise<number> {
  const file = required(ctx.flags.file, 'file');
  const { pipelines, flowInputs, warnings } = await loadPipelines(file);
  for (const w of warnings) warn(ctx, w);
  const pipeline = pipelines[0];
  if (!pipeline || pipelines.length > 1) {
    throw new CliError(`${file}: exec raw runs one pipeline, the file holds ${pipelines.length}`);
  }

  let flowInputMsgpack: Buffer = Buffer.alloc(0);
  const flowInput = ctx.flags.input === undefined ? flowInputs[0] : await loadFlowInput(ctx.flags.input);
  if (isMapping(flowInput)) {
    const fields = flowInputFields(flowInput);
    if ('flowInput' in fields) {
      pipeline.flowInput = fields.flowInput;
    } else {
      // Binary data cannot ride in the Struct; the msgpack field replaces it.
      pipeline.flowInput = undefined;
      flowInputMsgpack = fields.flowInputMsgpack;
    }
  } else if (flowInput !== undefined && flowInput !== null) {
    throw new CliError(`${file}: flowInput must be a mapping`);
  }

  let res: ExecResponse;
  try {
    res = await unary<ExecResponse>((cb) => ctx.clients.jobs.execRaw({ pipeline, flowInputMsgpack }, cb));
  } catch (err) {
    throw rejectedAs(pipeline.name ? `pipeline "${pipeline.name}"` : file, err);
  }
  return started(ctx, res.jobId);
}

/** `weft exec stored NAME [--input FILE] [--wait]`. */
export async function execStored(ctx: Context): Promise<number> {
  const name = arg(ctx, 0);
  let fields: { flowInput?: Record<string, unknown>; flowInputMsgpack?: Buffer } = {};
  if (ctx.flags.input !== undefined) fields = flowInputFields(await loadFlowInput(ctx.flags.input));
  const res = await unary<ExecResponse>((cb) =>
    ctx.clients.jobs.execStored(
      { name, flowInput: fields.flowInput, flowInputMsgpack: fields.flowInputMsgpack ?? Buffer.alloc(0) },
      cb,
    ),
  );
  return started(ctx, res.jobId);
}

// After exec: print the job id, or follow the job and print its result.
async function started(ctx: Context, jobId: string): Promise<number> {
  if (!ctx.flags.wait) {
    if (ctx.output === 'json') ctx.io.stdout.write(formatJson({ jobId }));
    else printLines(ctx, [jobId]);
    return 0;
  }
  ctx.io.stderr.write(`started job ${jobId}\n`);
  return watchAndPrint(ctx, jobId);
}

/** `weft exec status JOB`. Exits 0 only if the job completed. */
export async function execStatus(ctx: Context): Promise<number> {
  const jobId = arg(ctx, 0);
  const status = await unary<JobStatus>((cb) => ctx.clients.jobs.getStatus({ jobId }, cb));
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(jobStatusJson(status)));
  else printLines(ctx, statusLines(status));
  return status.state === JobState.JOB_STATE_COMPLETED ? 0 : 1;
}

/** `weft exec result JOB [--download DIR]`. Exits 0 only if the job completed. */
export async function execResult(ctx: Context): Promise<number> {
  const jobId = arg(ctx, 0);
  const result = await unary<JobResult>((cb) => ctx.clients.jobs.getResult({ jobId }, cb));
  if (ctx.flags.download === undefined) return printResult(ctx, result, jobId);

  // grpc-js streams are object-mode Readables; their iterator is typed any.
  const open: OpenDownload = (leaf) =>
    ctx.clients.jobs.downloadResult({
      jobId,
      nodeName: leaf.nodeName,
      batchIndex: leaf.batchIndex,
    }) as AsyncIterable<DataChunk>;
  const written = await downloadResults(ctx.flags.download, result.results, open, {
    // Text reports each file as it lands, so a failure halfway shows what was written.
    written: (file) => {
      if (ctx.output === 'text') printLines(ctx, [`${file.file}  ${file.bytes} bytes`]);
    },
    skipped: (leaf) => warn(ctx, `${leafLabel(leaf)} has no result; nothing written`),
  });
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(written.map(writtenJson)));
  return reportIncomplete(ctx, result, jobId);
}

function writtenJson(file: WrittenFile): Json {
  const out: { [key: string]: Json } = { nodeName: file.nodeName };
  if (file.batchIndex >= 0) out['batchIndex'] = file.batchIndex;
  out['file'] = file.file;
  out['bytes'] = file.bytes;
  out['format'] = file.binary ? 'bin' : 'msgpack';
  return out;
}

/** `weft exec graph JOB`: the job's nodes in topological order, each below a parent. */
export async function execGraph(ctx: Context): Promise<number> {
  const jobId = arg(ctx, 0);
  const status = await unary<JobStatus>((cb) => ctx.clients.jobs.getStatus({ jobId }, cb));
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(graphJson(status.nodes)));
  else if (status.nodes.length === 0) noneFound(ctx, 'nodes');
  else printLines(ctx, graphLines(status.nodes));
  return 0;
}

/** `weft exec pause JOB`. */
export async function execPause(ctx: Context): Promise<number> {
  const jobId = arg(ctx, 0);
  const status = await unary<JobStatus>((cb) => ctx.clients.jobs.pause({ jobId }, cb));
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(jobStatusJson(status)));
  else printLines(ctx, [`job ${jobId} ${jobStateName(status.state)}`]);
  return 0;
}

/** `weft exec resume JOB`. */
export async function execResume(ctx: Context): Promise<number> {
  const jobId = arg(ctx, 0);
  const status = await unary<JobStatus>((cb) => ctx.clients.jobs.resume({ jobId }, cb));
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(jobStatusJson(status)));
  else if (status.state === JobState.JOB_STATE_PAUSED || isFinalState(status.state)) {
    printLines(ctx, [`job ${jobId} ${jobStateName(status.state)}`]);
  } else printLines(ctx, [`job ${jobId} resumed (${jobStateName(status.state)})`]);
  return 0;
}

/** `weft exec rerun JOB [--wait]`: the job's pipeline and flowInput again, as a new job. */
export async function execRerun(ctx: Context): Promise<number> {
  const jobId = arg(ctx, 0);
  const res = await unary<ExecResponse>((cb) => ctx.clients.jobs.rerun({ jobId }, cb));
  return started(ctx, res.jobId);
}

/** `weft exec from-node JOB NODE [--wait]`: NODE and everything after it, as a new job. */
export async function execFromNode(ctx: Context): Promise<number> {
  const jobId = arg(ctx, 0);
  const nodeName = arg(ctx, 1);
  const res = await unary<ExecResponse>((cb) => ctx.clients.jobs.runFromNode({ jobId, nodeName }, cb));
  return started(ctx, res.jobId);
}

/** `weft exec stop JOB [--reason R]`. */
export async function execStop(ctx: Context): Promise<number> {
  const jobId = arg(ctx, 0);
  const status = await unary<JobStatus>((cb) => ctx.clients.jobs.stop({ jobId, reason: ctx.flags.reason ?? '' }, cb));
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(jobStatusJson(status)));
  else printLines(ctx, [`job ${jobId} ${isFinalState(status.state) ? jobStateName(status.state) : 'stopping'}`]);
  return 0;
}

/** `weft exec watch JOB`. Exits 0 only if the job completed. */
export async function execWatch(ctx: Context): Promise<number> {
  return watchAndPrint(ctx, arg(ctx, 0));
}

/** `weft exec ls [--pipeline NAME] [--status STATE] [--tag TAG] [--from TIME] [--to TIME]`. */
export async function execList(ctx: Context): Promise<number> {
  let state = JobState.JOB_STATE_UNSPECIFIED;
  if (ctx.flags.status !== undefined) {
    const parsed = parseJobState(ctx.flags.status);
    if (parsed === undefined) {
      throw new UsageError(
        `unknown state "${ctx.flags.status}"; use pending, active, paused, completed, failed or stopped`,
      );
    }
    state = parsed;
  }
  const now = new Date();
  const from = parseTime('from', ctx.flags.from, now);
  const to = parseTime('to', ctx.flags.to, now);
  if (from && to && from.getTime() > to.getTime()) {
    throw new UsageError(`--from (${from.toISOString()}) is after --to (${to.toISOString()})`);
  }
  const res = await unary<ListJobsResponse>((cb) =>
    ctx.clients.jobs.list(
      { pipelineName: ctx.flags.pipeline ?? '', state, limit: 0, tag: ctx.flags.tag ?? '', from, to },
      cb,
    ),
  );
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson({ jobs: res.jobs.map(jobStatusJson) }));
    return 0;
  }
  if (res.jobs.length === 0) {
    noneFound(ctx, 'jobs');
    return 0;
  }
  const rows = res.jobs.map((job) => [
    job.jobId,
    job.pipelineName,
    jobStateName(job.state),
    formatPercent(job.progress),
    formatTime(job.created),
  ]);
  printLines(ctx, formatTable([['JOB', 'PIPELINE', 'STATE', 'PROGRESS', 'CREATED'], ...rows]));
  return 0;
}

async function watchAndPrint(ctx: Context, jobId: string): Promise<number> {
  await follow(ctx, jobId);
  const result = await unary<JobResult>((cb) => ctx.clients.jobs.getResult({ jobId }, cb));
  return printResult(ctx, result, jobId);
}

/**
 * Streams a job's events to the progress reporter on stderr until the job
 * ends (or the server ends the stream). Ctrl-C stops watching, not the job.
 */
async function follow(ctx: Context, jobId: string): Promise<void> {
  const call = ctx.clients.jobs.watch({ jobId });
  const progress = new JobProgress();
  const reporter = new ProgressReporter(ctx.io.stderr);
  let interrupted = false;
  const onInterrupt = (): void => {
    interrupted = true;
    call.cancel();
  };
  process.once('SIGINT', onInterrupt);
  try {
    // grpc-js streams are object-mode Readables; their iterator is typed any.
    for await (const event of call as AsyncIterable<JobEvent>) {
      const message = progress.apply(event);
      if (message !== undefined) reporter.message(message);
      if (progress.state !== JobState.JOB_STATE_UNSPECIFIED) reporter.update(renderProgressLine(progress.view()));
      // The server ends the stream after the final status; no need to wait for it.
      if (event.event?.$case === 'status' && isFinalState(progress.state)) break;
    }
  } catch (err) {
    if (!interrupted) throw err;
  } finally {
    process.off('SIGINT', onInterrupt);
    reporter.finish();
  }
  if (interrupted) {
    throw new CliError(`stopped watching; job ${jobId} keeps running (weft exec stop ${jobId} stops it)`, INTERRUPTED);
  }
}

/**
 * Prints a job's result: text lines or one JSON document on stdout, and in
 * text mode why the job did not complete on stderr. Returns the exit code.
 */
export function printResult(ctx: Context, result: JobResult, jobId: string): number {
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(jobResultJson(result, jobId)));
  else printLines(ctx, resultLines(result.results));
  return reportIncomplete(ctx, result, jobId);
}

/** In text mode, says on stderr why the job did not complete. Returns the exit code. */
function reportIncomplete(ctx: Context, result: JobResult, jobId: string): number {
  if (result.state === JobState.JOB_STATE_COMPLETED) return 0;
  if (ctx.output === 'text') {
    const state = jobStateName(result.state);
    const ended = isFinalState(result.state);
    const why = result.error ? `: ${result.error}` : '';
    ctx.io.stderr.write(`weft: job ${jobId} ${ended ? state : `is still ${state}`}${why}\n`);
  }
  return 1;
}
