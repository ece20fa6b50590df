import { ListResourcesResponse, Resource } from '@weft/proto';
import { parsePositiveInt } from '../args.js';
import { unary } from '../client.js';
import { arg, noneFound, printLines, type Context } from '../context.js';
import { formatJson, formatTable } from '../output.js';
import { required } from './shared.js';

/** The table of `weft resource ls`, header included. */
export function resourceTable(resources: readonly Resource[]): string[] {
  const rows = resources.map((r) => [r.id, String(r.concurrency), String(r.used)]);
  return formatTable([['ID', 'CONCURRENCY', 'USED'], ...rows]);
}

function printResource(ctx: Context, resource: Resource, line: string): void {
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(Resource.toJSON(resource)));
  else printLines(ctx, [line]);
}

/** `weft resource create ID CONCURRENCY`. */
export async function resourceCreate(ctx: Context): Promise<number> {
  const id = arg(ctx, 0);
  const concurrency = parsePositiveInt('CONCURRENCY', arg(ctx, 1));
  const r = await unary<Resource>((cb) => ctx.clients.resources.create({ id, concurrency, used: 0 }, cb));
  printResource(ctx, r, `resource ${r.id} created (concurrency ${r.concurrency})`);
  return 0;
}

/** `weft resource ls`. */
export async function resourceList(ctx: Context): Promise<number> {
  const res = await unary<ListResourcesResponse>((cb) => ctx.clients.resources.list({}, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(ListResourcesResponse.toJSON(res)));
    return 0;
  }
  if (res.resources.length === 0) {
    noneFound(ctx, 'resources');
    return 0;
  }
  printLines(ctx, resourceTable(res.resources));
  return 0;
}

/** `weft resource edit ID --concurrency N`. */
export async function resourceEdit(ctx: Context): Promise<number> {
  const id = arg(ctx, 0);
  const concurrency = parsePositiveInt('--concurrency', required(ctx.flags.concurrency, 'concurrency'));
  const r = await unary<Resource>((cb) => ctx.clients.resources.edit({ id, concurrency, used: 0 }, cb));
  printResource(ctx, r, `resource ${r.id} edited (concurrency ${r.concurrency}, ${r.used} in use)`);
  return 0;
}

/** `weft resource delete ID`. */
export async function resourceDelete(ctx: Context): Promise<number> {
  const r = await unary<Resource>((cb) => ctx.clients.resources.delete({ id: arg(ctx, 0) }, cb));
  printResource(ctx, r, `resource ${r.id} deleted`);
  return 0;
}
