import { stringify } from 'yaml';
import { Algorithm, AlgorithmSpec, ListAlgorithmsResponse, type DeleteAlgorithmResponse } from '@weft/proto';
import { unary } from '../client.js';
import { arg, noneFound, printLines, warn, type Context } from '../context.js';
import { CliError } from '../errors.js';
import { loadAlgorithmSpecs } from '../files.js';
import { formatJson, formatTable, formatTime } from '../output.js';
import { rejectedAs, required } from './shared.js';

/** `weft algorithm apply -f FILE`: applies every spec in the file, in order. */
export async function algorithmApply(ctx: Context): Promise<number> {
  const { specs, many, warnings } = await loadAlgorithmSpecs(required(ctx.flags.file, 'file'));
  for (const w of warnings) warn(ctx, w);
  const applied: Algorithm[] = [];
  // Loaded here, not at start: the other commands need neither the stager nor tar.
  const [{ ClosuresStageStore }, { stageAlgorithmCode }] = await Promise.all([
    import('@weft/stage'),
    import('../code.js'),
  ]);
  const store = new ClosuresStageStore(ctx.clients.closures);
  for (const local of specs) {
    const what = `algorithm "${local.name}"`;
    let spec = local;
    let note = '';
    try {
      // Local code goes to the server's blob store first, so the server need not see this machine's disk.
      const code = await stageAlgorithmCode(local, store, what);
      spec = code.spec;
      if (code.staged) {
        const s = code.staged;
        note = ` (code: ${s.files} files, ${s.newlyUploaded} uploaded, ${s.uploadedBytes} bytes)`;
      }
      applied.push(await unary<Algorithm>((cb) => ctx.clients.algorithms.apply({ spec }, cb)));
    } catch (err) {
      throw rejectedAs(what, err);
    }
    // Report as we go in text mode, so a failure halfway shows what was applied.
    if (ctx.output === 'text') printLines(ctx, [`algorithm ${spec.name} applied${note}`]);
  }
  if (ctx.output === 'json') {
    const docs = applied.map((a) => Algorithm.toJSON(a));
    ctx.io.stdout.write(formatJson(many ? docs : docs[0]));
  }
  return 0;
}

/** `weft algorithm get NAME`: the spec as YAML that `apply` accepts back. */
export async function algorithmGet(ctx: Context): Promise<number> {
  const name = arg(ctx, 0);
  const algorithm = await unary<Algorithm>((cb) => ctx.clients.algorithms.get({ name }, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(Algorithm.toJSON(algorithm)));
  } else {
    ctx.io.stdout.write(stringify(AlgorithmSpec.toJSON(algorithm.spec ?? AlgorithmSpec.fromJSON({ name }))));
  }
  return 0;
}

/** `weft algorithm ls`. */
export async function algorithmList(ctx: Context): Promise<number> {
  const res = await unary<ListAlgorithmsResponse>((cb) => ctx.clients.algorithms.list({}, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(ListAlgorithmsResponse.toJSON(res)));
    return 0;
  }
  if (res.algorithms.length === 0) {
    noneFound(ctx, 'algorithms');
    return 0;
  }
  const rows = res.algorithms.map(({ spec, modified }) => [
    spec?.name ?? '',
    spec?.env || '-',
    String(spec?.minHotWorkers ?? 0),
    spec?.maxWorkers ? String(spec.maxWorkers) : '-',
    formatTime(modified),
    spec?.code?.path ||
      (spec?.code?.stage ? `stage ${spec.code.stage.slice(0, 12)}` : '') ||
      spec?.algorithmImage ||
      '-',
  ]);
  printLines(ctx, formatTable([['NAME', 'ENV', 'HOT', 'MAX', 'MODIFIED', 'CODE'], ...rows]));
  return 0;
}

/** `weft algorithm delete NAME`. */
export async function algorithmDelete(ctx: Context): Promise<number> {
  const name = arg(ctx, 0);
  const res = await unary<DeleteAlgorithmResponse>((cb) => ctx.clients.algorithms.delete({ name }, cb));
  if (!res.deleted) throw new CliError(`algorithm ${name} not found`);
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson({ name, deleted: true }));
  else printLines(ctx, [`algorithm ${name} deleted`]);
  return 0;
}
