import {
  FLAGS,
  GLOBAL_FLAGS,
  TREE,
  entryName,
  isGroup,
  type CommandSpec,
  type FlagName,
  type FlagSpec,
  type GroupSpec,
} from './spec.js';

/** How a flag is written in help, e.g. `-f, --file FILE`. */
export function flagLabel(name: FlagName): string {
  const spec: FlagSpec = FLAGS[name];
  const long = `--${name}${spec.value ? ` ${spec.value}` : ''}`;
  return spec.short ? `-${spec.short}, ${long}` : long;
}

/** Two-column list with the second column aligned. */
function columns(rows: readonly [string, string][]): string[] {
  const width = Math.max(...rows.map(([left]) => left.length)) + 3;
  return rows.map(([left, right]) => `  ${left.padEnd(width)}${right}`.trimEnd());
}

/** A flag as written in a synopsis, e.g. `-f FILE`. */
export function flagSynopsis(name: FlagName): string {
  const spec: FlagSpec = FLAGS[name];
  return `${spec.short ? `-${spec.short}` : `--${name}`} ${spec.value ?? ''}`.trimEnd();
}

/** The synopsis of a command, e.g. `weft exec raw -f FILE [flags]`. */
export function usageLine(cmd: CommandSpec): string {
  return ['weft', ...cmd.path, ...cmd.args, ...(cmd.required ?? []).map(flagSynopsis), '[flags]'].join(' ');
}

/** One line describing a command within a list, e.g. `status JOB`. */
function commandLabel(cmd: CommandSpec): string {
  return [entryName(cmd), ...cmd.args].join(' ');
}

function topHelp(): string {
  return [
    'weft runs HKube-style pipelines and Styx-style scheduled workflows on a gRPC control plane.',
    '',
    'Usage: weft <command> [flags]',
    '',
    'Commands:',
    ...columns(TREE.map((entry) => [entryName(entry), entry.summary])),
    '',
    'Global flags:',
    ...columns(GLOBAL_FLAGS.map(([name, text]) => [flagLabel(name), text])),
    '',
    "Run 'weft <command> --help' for more.",
  ].join('\n');
}

function groupHelp(group: GroupSpec): string {
  return [
    `${group.summary}.`,
    '',
    `Usage: weft ${group.name} <command> [flags]`,
    '',
    ...(group.details ? [group.details, ''] : []),
    'Commands:',
    ...columns(group.commands.map((cmd) => [commandLabel(cmd), cmd.summary])),
    '',
    'Global flags:',
    ...columns(GLOBAL_FLAGS.map(([name, text]) => [flagLabel(name), text])),
    '',
    `Run 'weft ${group.name} <command> --help' for a command's flags.`,
  ].join('\n');
}

function commandHelp(cmd: CommandSpec): string {
  const lines = [`${cmd.summary}.`, '', `Usage: ${usageLine(cmd)}`];
  if (cmd.details) lines.push('', cmd.details);
  const own: [string, string][] = cmd.flags.map(([name, text]) => [flagLabel(name), text]);
  if (cmd.globals) {
    if (own.length > 0) lines.push('', 'Flags:', ...columns(own));
    lines.push('', 'Global flags:', ...columns(GLOBAL_FLAGS.map(([name, text]) => [flagLabel(name), text])));
  } else {
    own.push([flagLabel('help'), 'Show help']);
    lines.push('', 'Flags:', ...columns(own));
  }
  return lines.join('\n');
}

/**
 * Help text for a path of command words: `[]` for weft itself, `['exec']`
 * for a group, `['exec', 'raw']` for a command. Unknown words are ignored
 * from the first one on, so the nearest known level is described.
 */
export function helpText(path: readonly string[]): string {
  const top = TREE.find((entry) => entryName(entry) === path[0]);
  if (!top) return topHelp() + '\n';
  if (!isGroup(top)) return commandHelp(top) + '\n';
  const cmd = top.commands.find((c) => entryName(c) === path[1]);
  return (cmd ? commandHelp(cmd) : groupHelp(top)) + '\n';
}
