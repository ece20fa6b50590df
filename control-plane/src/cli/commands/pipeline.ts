import { stringify } from 'yaml';
import { ListPipelinesResponse, PipelineDescriptor, StoredPipeline, type DeletePipelineResponse } from '@weft/proto';
import { unary } from '../client.js';
import { arg, noneFound, printLines, warn, type Context } from '../context.js';
import { CliError } from '../errors.js';
import { loadPipelines, needsMsgpack } from '../files.js';
import { formatJson, formatTable, formatTime } from '../output.js';
import { rejectedAs, required } from './shared.js';

/** `weft pipeline store -f FILE`: stores every descriptor in the file, in order. */
export async function pipelineStore(ctx: Context): Promise<number> {
  const file = required(ctx.flags.file, 'file');
  const { pipelines, flowInputs, many, warnings } = await loadPipelines(file);
  for (const w of warnings) warn(ctx, w);
  pipelines.forEach((pipeline, i) => {
    const where = many ? `${file}[${i}]` : file;
    if (!pipeline.name) throw new CliError(`${where}: name is missing`);
    // A stored flowInput is a protobuf Struct: JSON values only.
    if (needsMsgpack(flowInputs[i])) {
      throw new CliError(`${where}: a stored flowInput cannot hold binary data; pass it with exec --input instead`);
    }
  });
  const stored: StoredPipeline[] = [];
  for (const pipeline of pipelines) {
    try {
      stored.push(await unary<StoredPipeline>((cb) => ctx.clients.pipelines.store({ pipeline }, cb)));
    } catch (err) {
      throw rejectedAs(`pipeline "${pipeline.name}"`, err);
    }
    if (ctx.output === 'text') printLines(ctx, [`pipeline ${pipeline.name} stored`]);
  }
  if (ctx.output === 'json') {
    const docs = stored.map((p) => StoredPipeline.toJSON(p));
    ctx.io.stdout.write(formatJson(many ? docs : docs[0]));
  }
  return 0;
}

/** `weft pipeline get NAME`: the descriptor as YAML that `store` and `exec raw` accept back. */
export async function pipelineGet(ctx: Context): Promise<number> {
  const name = arg(ctx, 0);
  const stored = await unary<StoredPipeline>((cb) => ctx.clients.pipelines.get({ name }, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(StoredPipeline.toJSON(stored)));
  } else {
    ctx.io.stdout.write(stringify(PipelineDescriptor.toJSON(stored.pipeline ?? PipelineDescriptor.fromJSON({ name }))));
  }
  return 0;
}

/** `weft pipeline ls`. */
export async function pipelineList(ctx: Context): Promise<number> {
  const res = await unary<ListPipelinesResponse>((cb) => ctx.clients.pipelines.list({}, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(ListPipelinesResponse.toJSON(res)));
    return 0;
  }
  if (res.pipelines.length === 0) {
    noneFound(ctx, 'pipelines');
    return 0;
  }
  const rows = res.pipelines.map(({ pipeline, modified }) => [
    pipeline?.name ?? '',
    String(pipeline?.nodes.length ?? 0),
    formatTime(modified),
    pipeline?.description ?? '',
  ]);
  printLines(ctx, formatTable([['NAME', 'NODES', 'MODIFIED', 'DESCRIPTION'], ...rows]));
  return 0;
}

/** `weft pipeline delete NAME`. */
export async function pipelineDelete(ctx: Context): Promise<number> {
  const name = arg(ctx, 0);
  const res = await unary<DeletePipelineResponse>((cb) => ctx.clients.pipelines.delete({ name }, cb));
  if (!res.deleted) throw new CliError(`pipeline ${name} not found`);
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson({ name, deleted: true }));
  else printLines(ctx, [`pipeline ${name} deleted`]);
  return 0;
}
