import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { ListSecretsResponse, ListVolumesResponse, SecretInfo, VolumeInfo } from '@weft/proto';
import { unary } from '../client.js';
import { arg, noneFound, printLines, type Context } from '../context.js';
import { CliError } from '../errors.js';
import { formatJson, formatTable, formatTime } from '../output.js';

/** `weft secret create NAME --from-file FILE [--from-file FILE2] [--replace]`. */
export async function secretCreate(ctx: Context): Promise<number> {
  const name = arg(ctx, 0);
  const files: Record<string, Buffer> = {};
  for (const path of ctx.flags['from-file'] ?? []) {
    const key = basename(path);
    if (files[key]) throw new CliError(`two --from-file files are named ${key}`);
    try {
      files[key] = readFileSync(path);
    } catch (err) {
      throw new CliError(`--from-file ${path}: ${(err as Error).message}`);
    }
  }
  const info = await unary<SecretInfo>((cb) =>
    ctx.clients.secrets.create({ name, files, replace: ctx.flags.replace === true }, cb),
  );
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(SecretInfo.toJSON(info)));
  else printLines(ctx, [`secret ${info.name} stored (${info.files.join(', ')})`]);
  return 0;
}

/** `weft secret ls`: names and file names, never contents. */
export async function secretList(ctx: Context): Promise<number> {
  const res = await unary<ListSecretsResponse>((cb) => ctx.clients.secrets.list({}, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(ListSecretsResponse.toJSON(res)));
    return 0;
  }
  if (res.secrets.length === 0) {
    noneFound(ctx, 'secrets');
    return 0;
  }
  printLines(
    ctx,
    formatTable([
      ['NAME', 'FILES', 'CREATED'],
      ...res.secrets.map((s) => [s.name, s.files.join(','), formatTime(s.created)]),
    ]),
  );
  return 0;
}

/** `weft secret delete NAME`. */
export async function secretDelete(ctx: Context): Promise<number> {
  const info = await unary<SecretInfo>((cb) => ctx.clients.secrets.delete({ name: arg(ctx, 0) }, cb));
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(SecretInfo.toJSON(info)));
  else printLines(ctx, [`secret ${info.name} deleted`]);
  return 0;
}

/** `weft volume ls`. */
export async function volumeList(ctx: Context): Promise<number> {
  const res = await unary<ListVolumesResponse>((cb) => ctx.clients.volumes.list({}, cb));
  if (ctx.output === 'json') {
    ctx.io.stdout.write(formatJson(ListVolumesResponse.toJSON(res)));
    return 0;
  }
  if (res.volumes.length === 0) {
    noneFound(ctx, 'volumes');
    return 0;
  }
  const rows = res.volumes.map((v) => [
    v.name,
    v.kind,
    v.storageClass,
    v.size,
    String(v.mountedBy),
    formatTime(v.created),
  ]);
  printLines(ctx, formatTable([['NAME', 'KIND', 'CLASS', 'SIZE', 'MOUNTED', 'CREATED'], ...rows]));
  return 0;
}

/** `weft volume delete NAME`. */
export async function volumeDelete(ctx: Context): Promise<number> {
  const info = await unary<VolumeInfo>((cb) => ctx.clients.volumes.delete({ name: arg(ctx, 0) }, cb));
  if (ctx.output === 'json') ctx.io.stdout.write(formatJson(VolumeInfo.toJSON(info)));
  else printLines(ctx, [`volume ${info.name} deleted`]);
  return 0;
}
