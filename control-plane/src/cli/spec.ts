/**
 * The command tree of `weft` as data: the parser validates against it and the
 * help text is rendered from it, so the two cannot drift apart.
 */

/** How a flag is parsed and shown in help. */
export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  /** One-letter alias, e.g. `f` for `-f`. */
  readonly short?: string;
  /** Placeholder of the value in help, e.g. `FILE`. */
  readonly value?: string;
}

/** Every flag any command accepts. One type per name across all commands. */
export const FLAGS = {
  server: { type: 'string', value: 'HOST:PORT' },
  output: { type: 'string', short: 'o', value: 'FORMAT' },
  help: { type: 'boolean', short: 'h' },
  file: { type: 'string', short: 'f', value: 'FILE' },
  input: { type: 'string', value: 'FILE' },
  wait: { type: 'boolean' },
  reason: { type: 'string', value: 'TEXT' },
  pipeline: { type: 'string', value: 'NAME' },
  status: { type: 'string', value: 'STATE' },
  port: { type: 'string', value: 'N' },
  host: { type: 'string', value: 'HOST' },
  'data-dir': { type: 'string', value: 'DIR' },
  'metrics-port': { type: 'string', value: 'N' },
  register: { type: 'string', value: 'DIR' },
  tag: { type: 'string', value: 'TAG' },
  from: { type: 'string', value: 'TIME' },
  to: { type: 'string', value: 'TIME' },
  download: { type: 'string', value: 'DIR' },
} as const satisfies Record<string, FlagSpec>;

/** Name of a flag, without dashes. */
export type FlagName = keyof typeof FLAGS;

/** Flags accepted by every command that talks to the control plane. */
export const GLOBAL_FLAGS: readonly [FlagName, string][] = [
  ['server', 'Control plane address (default: $WEFT_SERVER, else localhost:50051)'],
  ['output', 'Output format: text (default) or json'],
  ['help', 'Show help'],
];

/** A command that runs, e.g. `weft exec status JOB`. */
export interface CommandSpec {
  /** Words after `weft`, e.g. `['exec', 'status']`. */
  readonly path: readonly string[];
  /** One line for command lists. */
  readonly summary: string;
  /** Extra help paragraphs. */
  readonly details?: string;
  /** Positional arguments, all required, e.g. `['JOB']`. */
  readonly args: readonly string[];
  /** Command flags with their help text; the global flags are not listed here. */
  readonly flags: readonly [FlagName, string][];
  /** Flags that must be given. */
  readonly required?: readonly FlagName[];
  /** False for commands that do not talk to a control plane (no --server, -o). */
  readonly globals: boolean;
}

/** A word that only groups commands, e.g. `weft algorithm`. */
export interface GroupSpec {
  readonly name: string;
  readonly summary: string;
  readonly commands: readonly CommandSpec[];
}

const WAIT = 'Follow progress on stderr, then print the result; exit 0 only if the job completes';
const INPUT = 'YAML or JSON file whose content replaces flowInput';

/** The top level of the tree, in help order. */
export const TREE: readonly (GroupSpec | CommandSpec)[] = [
  {
    path: ['server'],
    summary: 'Run the control plane in the foreground',
    details: 'Stops gracefully on SIGINT or SIGTERM.',
    args: [],
    flags: [
      ['port', 'gRPC port; 0 picks a free one (env WEFT_PORT, default 50051)'],
      ['host', 'Address to listen on (env WEFT_HOST, default 127.0.0.1)'],
      ['data-dir', 'Database, blobs, logs and unpacked code (env WEFT_DATA_DIR, default .weft)'],
      ['metrics-port', 'Port of /metrics; -1 turns it off (env WEFT_METRICS_PORT, default 9464)'],
      ['register', 'Apply DIR/*/algorithms.yaml at start, e.g. examples (env WEFT_REGISTER)'],
    ],
    globals: false,
  },
  {
    name: 'algorithm',
    summary: 'Apply, get, list and delete algorithms',
    commands: [
      {
        path: ['algorithm', 'apply'],
        summary: 'Create or replace algorithms from a file',
        details:
          'FILE holds one algorithm spec in HKube form, or a list or multi-document\n' +
          'stream of them. A relative code.path is resolved against the directory of FILE.',
        args: [],
        flags: [['file', 'YAML or JSON file of algorithm specs']],
        required: ['file'],
        globals: true,
      },
      { path: ['algorithm', 'get'], summary: 'Print an algorithm spec', args: ['NAME'], flags: [], globals: true },
      { path: ['algorithm', 'ls'], summary: 'List algorithms', args: [], flags: [], globals: true },
      { path: ['algorithm', 'delete'], summary: 'Delete an algorithm', args: ['NAME'], flags: [], globals: true },
    ],
  },
  {
    name: 'pipeline',
    summary: 'Store, get, list and delete pipelines',
    commands: [
      {
        path: ['pipeline', 'store'],
        summary: 'Create or replace pipelines from a file',
        details: 'FILE holds one pipeline descriptor in HKube form, or a list or multi-document stream of them.',
        args: [],
        flags: [['file', 'YAML or JSON file of pipeline descriptors']],
        required: ['file'],
        globals: true,
      },
      { path: ['pipeline', 'get'], summary: 'Print a stored pipeline', args: ['NAME'], flags: [], globals: true },
      { path: ['pipeline', 'ls'], summary: 'List stored pipelines', args: [], flags: [], globals: true },
      { path: ['pipeline', 'delete'], summary: 'Delete a stored pipeline', args: ['NAME'], flags: [], globals: true },
    ],
  },
  {
    name: 'exec',
    summary: 'Run pipelines and follow their jobs',
    commands: [
      {
        path: ['exec', 'raw'],
        summary: 'Run a pipeline descriptor from a file',
        details: 'Prints the job id, or with --wait the result.',
        args: [],
        flags: [
          ['file', 'YAML or JSON pipeline descriptor'],
          ['input', INPUT],
          ['wait', WAIT],
        ],
        required: ['file'],
        globals: true,
      },
      {
        path: ['exec', 'stored'],
        summary: 'Run a stored pipeline',
        details: 'Prints the job id, or with --wait the result.',
        args: ['NAME'],
        flags: [
          ['input', INPUT],
          ['wait', WAIT],
        ],
        globals: true,
      },
      {
        path: ['exec', 'status'],
        summary: "Show a job's state and per-node progress",
        details: 'Exits 0 only if the job completed.',
        args: ['JOB'],
        flags: [],
        globals: true,
      },
      {
        path: ['exec', 'result'],
        summary: "Print a job's result",
        details:
          'Exits 0 only if the job completed.\n\n' +
          'With --download, writes each result to DIR/<node>.msgpack (DIR/<node>-<index>.msgpack for\n' +
          'a batch item) as stored, or to .bin with the raw bytes when the value is binary data.\n' +
          'Stored (large) results are streamed to disk.',
        args: ['JOB'],
        flags: [['download', 'Write the results to files in DIR (created if missing) instead of printing them']],
        globals: true,
      },
      {
        path: ['exec', 'graph'],
        summary: "Show a job's nodes as a graph, in the order they run",
        details:
          'Each node is drawn below a node it reads from; "(after A, B)" lists the parents of\n' +
          'a node that reads from several. -o json prints\n' +
          '{"nodes": [{nodeName, state, total, succeeded, failed, skipped, parents}]}.',
        args: ['JOB'],
        flags: [],
        globals: true,
      },
      {
        path: ['exec', 'pause'],
        summary: 'Pause a job: hold its queued tasks back',
        details: 'Tasks already running finish. `weft exec resume JOB` continues the job.',
        args: ['JOB'],
        flags: [],
        globals: true,
      },
      { path: ['exec', 'resume'], summary: 'Resume a paused job', args: ['JOB'], flags: [], globals: true },
      {
        path: ['exec', 'rerun'],
        summary: "Run an ended job's pipeline and flowInput again, as a new job",
        details: 'Prints the new job id, or with --wait the result.',
        args: ['JOB'],
        flags: [['wait', WAIT]],
        globals: true,
      },
      {
        path: ['exec', 'from-node'],
        summary: 'Run NODE and everything after it again, as a new job',
        details:
          "The other nodes' outputs are taken from JOB's stored results instead of being\n" +
          'computed again (HKube\'s "caching"). Prints the new job id, or with --wait the result.',
        args: ['JOB', 'NODE'],
        flags: [['wait', WAIT]],
        globals: true,
      },
      {
        path: ['exec', 'stop'],
        summary: 'Stop a job',
        args: ['JOB'],
        flags: [['reason', 'Why the job is stopped (kept on the job)']],
        globals: true,
      },
      {
        path: ['exec', 'watch'],
        summary: "Follow a job's progress until it ends, then print its result",
        details: 'Exits 0 only if the job completed.',
        args: ['JOB'],
        flags: [],
        globals: true,
      },
      {
        path: ['exec', 'ls'],
        summary: 'List jobs',
        args: [],
        details:
          'TIME is ISO 8601 (2024-05-01, 2024-05-01T12:00:00Z; local time without an offset)\n' +
          'or an age: 90s, 30m, 1h, 2d, 1w, 1h30m mean that long ago.',
        flags: [
          ['pipeline', 'Only jobs of this pipeline'],
          ['status', 'Only jobs in this state: pending, active, paused, completed, failed or stopped'],
          ['tag', 'Only jobs with this tag'],
          ['from', 'Only jobs created at or after TIME'],
          ['to', 'Only jobs created before TIME'],
        ],
        globals: true,
      },
    ],
  },
];

/** True for a group entry of {@link TREE}. */
export function isGroup(entry: GroupSpec | CommandSpec): entry is GroupSpec {
  return 'commands' in entry;
}

/** The word that names an entry at its level of the tree. */
export function entryName(entry: GroupSpec | CommandSpec): string {
  return isGroup(entry) ? entry.name : (entry.path[entry.path.length - 1] ?? '');
}
