import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';
import {
  FLAGS,
  GLOBAL_FLAGS,
  TREE,
  entryName,
  isGroup,
  type CommandSpec,
  type FlagName,
  type FlagSpec,
} from './spec.js';
import { flagSynopsis, usageLine } from './help.js';

/** Where the CLI looks for the control plane when neither --server nor WEFT_SERVER is set. */
export const DEFAULT_SERVER = 'localhost:50051';

/** How results are printed on stdout. */
export type OutputFormat = 'text' | 'json';

/** The flags of one invocation, typed. Only flags the command accepts can be set. */
export interface Flags {
  file?: string;
  input?: string;
  wait: boolean;
  reason?: string;
  pipeline?: string;
  status?: string;
  port?: string;
  host?: string;
  'data-dir'?: string;
  'metrics-port'?: string;
  register?: string;
  blobs?: string;
  executor?: string;
  tag?: string;
  from?: string;
  to?: string;
  download?: string;
  /** Every --env given, in order; see {@link parseEnv}. */
  env?: string[];
  /** Every --from-file given, in order. */
  'from-file'?: string[];
  replace?: boolean;
  'allow-future'?: boolean;
  workflow?: string;
  state?: string;
  trigger?: string;
  delay?: string;
  reverse?: boolean;
  description?: string;
  all?: boolean;
  concurrency?: string;
  graceful?: boolean;
}

/** What the command line asks for. */
export type Invocation =
  | {
      kind: 'help';
      /** Command words to describe; see helpText. */
      path: string[];
      /** 0 when help was asked for (stdout), 2 when the command was incomplete (stderr). */
      exitCode: 0 | 2;
    }
  | {
      kind: 'run';
      command: CommandSpec;
      /** Positional arguments after the command words, one per `command.args`. */
      args: string[];
      flags: Flags;
      output: OutputFormat;
      /** Control plane address, HOST:PORT. */
      server: string;
    };

const PARSE_OPTIONS = Object.fromEntries(
  Object.entries(FLAGS).map(([name, spec]) => [
    name,
    'short' in spec ? { type: spec.type, short: spec.short } : { type: spec.type },
  ]),
) as Record<FlagName, { type: 'string' | 'boolean'; short?: string }>;

function isFlagName(name: string): name is FlagName {
  return Object.hasOwn(FLAGS, name);
}

/** Levenshtein distance, for "did you mean" hints on short words. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The closest candidate to a mistyped word, if one is close enough to be a likely typo. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = candidate.startsWith(word) && word.length > 0 ? 0 : distance(word, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

function unknownWord(kind: string, word: string, candidates: readonly string[], helpPath: string): UsageError {
  const guess = suggest(word, candidates);
  const hint = guess ? ` (did you mean "${guess}"?)` : '';
  return new UsageError(`unknown ${kind} "${word}"${hint}; run '${helpPath} --help'`);
}

/**
 * Resolves the address of the control plane: the --server flag, else
 * WEFT_SERVER, else localhost:50051. A bare host gets the default port.
 */
export function resolveServer(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): string {
  const raw = (flag ?? env['WEFT_SERVER'] ?? '').trim();
  if (raw === '') return DEFAULT_SERVER;
  // grpc-js would otherwise pick port 443 for a bare host name.
  return /:\d+$/.test(raw) ? raw : `${raw}:50051`;
}

/**
 * Parses a port flag such as --port: an integer from 0 to 65535, or -1 when
 * `allowDisable` (the metrics endpoint reads -1 as "off"). Throws a UsageError otherwise.
 */
export function parsePort(flag: string, value: string | undefined, allowDisable = false): number | undefined {
  if (value === undefined) return undefined;
  if (allowDisable && value === '-1') return -1;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new UsageError(`--${flag} must be a port number, got "${value}"`);
  return n;
}

const UNIT_MS: Readonly<Record<string, number>> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

// A date, optionally with a time and an offset. Date.parse alone would also
// take "May 1" or "1", which are more likely typos than intended times.
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)(Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;

function parseIso(text: string): Date | undefined {
  const m = ISO_TIME.exec(text);
  if (!m) return undefined;
  const [, year, month, day, time, offset] = m;
  // Date rolls 2024-02-30 over into March; a typo should not silently move the range.
  const probe = new Date(Date.UTC(Number(year), Number(month) - 1, Number(day)));
  if (probe.getUTCMonth() !== Number(month) - 1 || probe.getUTCDate() !== Number(day)) return undefined;
  let iso = `${year}-${month}-${day}`;
  if (time !== undefined) {
    iso += `T${time.replace(',', '.')}`;
    // Without an offset the time is local, as ISO 8601 says; "+02" needs minutes for Date.
    if (offset !== undefined) iso += /^[+-]\d{2}$/.test(offset) ? `${offset}:00` : offset.toUpperCase();
  }
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** `90s`, `30m`, `1h`, `2d`, `1w`, `1h30m` in milliseconds; undefined for anything else. */
function durationMs(text: string): number | undefined {
  if (!/^(?:\d+[smhdw])+$/i.test(text)) return undefined;
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)([smhdw])/gi)) {
    ms += Number(n) * (UNIT_MS[(unit ?? '').toLowerCase()] ?? 0);
  }
  return ms;
}

/**
 * Parses a duration flag such as --delay: a number with a unit (`s`, `m`,
 * `h`, `d`, `w`) or several (`1h30m`), in milliseconds. Throws a UsageError
 * otherwise.
 */
export function parseDuration(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = durationMs(value.trim());
  if (ms === undefined || !Number.isSafeInteger(ms)) {
    throw new UsageError(`--${flag} must be a duration such as 90s, 5m or 1h30m, got "${value}"`);
  }
  return ms;
}

/** Largest count a uint32 field of the contract carries. */
const MAX_UINT32 = 0xffff_ffff;

/**
 * Parses a count given on the command line, such as CONCURRENCY or
 * --concurrency: a whole number from 1 up. `name` is how the user wrote the
 * argument, so the error points at it. Throws a UsageError otherwise.
 */
export function parsePositiveInt(name: string, value: string): number {
  const n = Number(value);
  // Number() alone would also take "1e3", "0x10" and " 5 ", none of which look like a count.
  if (!/^\d+$/.test(value) || n < 1) throw new UsageError(`${name} must be a positive integer, got "${value}"`);
  if (n > MAX_UINT32) throw new UsageError(`${name} must be at most ${MAX_UINT32}, got ${value}`);
  return n;
}

// The names a process environment accepts everywhere (the workflow document's env uses the same rule).
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Turns the values of a repeatable `--env K=V` flag into a map. The value may
 * be empty and may contain `=`; a later K replaces an earlier one, as with
 * `docker run -e`. Throws a UsageError for a value without `=` or a bad name.
 */
export function parseEnv(values: readonly string[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of values ?? []) {
    const eq = pair.indexOf('=');
    if (eq < 0) throw new UsageError(`--env must be NAME=VALUE, got "${pair}"`);
    const name = pair.slice(0, eq);
    if (!ENV_NAME.test(name)) {
      throw new UsageError(`--env "${pair}": "${name}" is not a valid environment variable name`);
    }
    env[name] = pair.slice(eq + 1);
  }
  return env;
}

/**
 * Parses an ISO 8601 time that names one instant: a date and a time with `Z`
 * or an offset (`2024-01-01T00:00:00Z`, `2024-01-01T02:00+02:00`). Without an
 * offset the instant would depend on where the CLI runs, so it is refused:
 * returns undefined, as for anything else.
 */
export function parseInstant(text: string): Date | undefined {
  const m = ISO_TIME.exec(text.trim());
  if (!m || m[4] === undefined || m[5] === undefined) return undefined;
  return parseIso(text.trim());
}

/**
 * Parses a time flag such as --from: an ISO 8601 date or time, or an age
 * (`90s`, `30m`, `1h`, `2d`, `1w`, `1h30m`) meaning that long before `now`.
 * A date alone is midnight UTC; a time without an offset is local time.
 * Throws a UsageError otherwise.
 */
export function parseTime(flag: string, value: string | undefined, now: Date): Date | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  const age = durationMs(text);
  if (age !== undefined) return new Date(now.getTime() - age);
  const date = parseIso(text);
  if (date) return date;
  throw new UsageError(
    `--${flag} must be an ISO 8601 time (2024-05-01T12:00:00Z) or an age such as 30m, 1h or 2d, got "${value}"`,
  );
}

/**
 * Parses the arguments after `weft` against the command tree. Throws
 * {@link UsageError} for anything it cannot make sense of, with a hint.
 */
export function parseCommandLine(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Invocation {
  // strict: false so an unknown flag becomes a token we can report with a hint
  // pointing at the right help page, instead of Node's generic message.
  const { positionals, tokens } = parseArgs({
    args: [...argv],
    options: PARSE_OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const options = tokens.filter((t) => t.kind === 'option');
  const wantsHelp = options.some((t) => t.name === 'help');

  // Resolve the command words.
  const first = positionals[0];
  if (first === undefined) {
    const stray = options.find((t) => t.name !== 'help');
    if (stray && !isFlagName(stray.name))
      throw unknownFlag(
        stray.rawName,
        'weft',
        GLOBAL_FLAGS.map(([name]) => name),
      );
    return { kind: 'help', path: [], exitCode: wantsHelp ? 0 : 2 };
  }
  // `weft help [COMMAND...]` is `weft [COMMAND...] --help`, as in git and go.
  if (first === 'help' && !TREE.some((entry) => entryName(entry) === 'help')) {
    return { kind: 'help', path: checkedHelpPath(positionals.slice(1)), exitCode: 0 };
  }
  const top = TREE.find((entry) => entryName(entry) === first);
  if (!top) {
    throw unknownWord(
      'command',
      first,
      TREE.map((entry) => entryName(entry)),
      'weft',
    );
  }
  let command: CommandSpec;
  let depth: number;
  if (isGroup(top)) {
    const second = positionals[1];
    if (second === undefined) return { kind: 'help', path: [top.name], exitCode: wantsHelp ? 0 : 2 };
    const found = top.commands.find((c) => entryName(c) === second);
    if (!found) {
      throw unknownWord(
        `${top.name} command`,
        second,
        top.commands.map((c) => entryName(c)),
        `weft ${top.name}`,
      );
    }
    command = found;
    depth = 2;
  } else {
    command = top;
    depth = 1;
  }
  const where = `weft ${command.path.join(' ')}`;
  if (wantsHelp) return { kind: 'help', path: [...command.path], exitCode: 0 };

  // Validate the flags against this command.
  const allowed = new Set<FlagName>(command.flags.map(([name]) => name));
  if (command.globals) for (const [name] of GLOBAL_FLAGS) allowed.add(name);
  const given = new Map<FlagName, string | boolean>();
  const repeated = new Map<FlagName, string[]>();
  for (const token of options) {
    if (!isFlagName(token.name) || !allowed.has(token.name)) throw unknownFlag(token.rawName, where, [...allowed]);
    const name = token.name;
    const spec: FlagSpec = FLAGS[name];
    if (spec.type === 'string') {
      if (token.value === undefined) throw new UsageError(`${token.rawName} needs a value; run '${where} --help'`);
      given.set(name, token.value);
      if (spec.repeatable) repeated.set(name, [...(repeated.get(name) ?? []), token.value]);
    } else {
      if (token.value !== undefined) throw new UsageError(`${token.rawName} takes no value`);
      given.set(name, true);
    }
  }

  const args = positionals.slice(depth);
  if (args.length < command.args.length) {
    throw new UsageError(`missing ${command.args.slice(args.length).join(' ')}; usage: ${usageLine(command)}`);
  }
  if (args.length > command.args.length) {
    throw new UsageError(`unexpected argument "${args[command.args.length]}"; usage: ${usageLine(command)}`);
  }
  for (const name of command.required ?? []) {
    if (!given.has(name)) throw new UsageError(`missing ${flagSynopsis(name)}; usage: ${usageLine(command)}`);
  }

  const str = (name: FlagName): string | undefined => {
    const v = given.get(name);
    return typeof v === 'string' ? v : undefined;
  };
  const output = str('output') ?? 'text';
  if (output !== 'text' && output !== 'json') {
    throw new UsageError(`unknown output format "${output}"; use -o json or -o text`);
  }
  const flags: Flags = { wait: given.get('wait') === true };
  for (const name of ['allow-future', 'reverse', 'all', 'graceful', 'replace'] as const) {
    if (given.get(name) === true) flags[name] = true;
  }
  const envPairs = repeated.get('env');
  if (envPairs !== undefined) flags.env = envPairs;
  const fromFiles = repeated.get('from-file');
  if (fromFiles !== undefined) flags['from-file'] = fromFiles;
  for (const name of [
    'file',
    'input',
    'reason',
    'pipeline',
    'status',
    'port',
    'host',
    'data-dir',
    'metrics-port',
    'register',
    'blobs',
    'executor',
    'tag',
    'from',
    'to',
    'download',
    'workflow',
    'state',
    'trigger',
    'delay',
    'description',
    'concurrency',
  ] as const) {
    const v = str(name);
    if (v !== undefined) flags[name] = v;
  }
  return { kind: 'run', command, args, flags, output, server: resolveServer(str('server'), env) };
}

/** The words after `weft help`, checked like a command line so a typo gets a hint rather than the top page. */
function checkedHelpPath(words: readonly string[]): string[] {
  const [first, second] = words;
  if (first === undefined) return [];
  const top = TREE.find((entry) => entryName(entry) === first);
  if (!top) {
    throw unknownWord(
      'command',
      first,
      TREE.map((entry) => entryName(entry)),
      'weft',
    );
  }
  if (!isGroup(top) || second === undefined) return [first];
  if (!top.commands.some((c) => entryName(c) === second)) {
    throw unknownWord(
      `${top.name} command`,
      second,
      top.commands.map((c) => entryName(c)),
      `weft ${top.name}`,
    );
  }
  return [first, second];
}

function unknownFlag(raw: string, where: string, allowed: readonly FlagName[]): UsageError {
  const guess = raw.startsWith('--')
    ? suggest(
        raw,
        allowed.map((name) => `--${name}`),
      )
    : undefined;
  const hint = guess ? ` (did you mean ${guess}?)` : '';
  return new UsageError(`unknown flag ${raw}${hint}; run '${where} --help'`);
}
