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
  /** A string flag that may be given several times; its values are kept in order. */
  readonly repeatable?: boolean;
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
  blobs: { type: 'string', value: 'URL' },
  executor: { type: 'string', value: 'NAME' },
  tag: { type: 'string', value: 'TAG' },
  from: { type: 'string', value: 'TIME' },
  to: { type: 'string', value: 'TIME' },
  download: { type: 'string', value: 'DIR' },
  env: { type: 'string', value: 'K=V', repeatable: true },
  'from-file': { type: 'string', value: 'FILE', repeatable: true },
  replace: { type: 'boolean' },
  'allow-future': { type: 'boolean' },
  workflow: { type: 'string', value: 'ID' },
  state: { type: 'string', value: 'STATE' },
  trigger: { type: 'string', value: 'ID' },
  delay: { type: 'string', value: 'DURATION' },
  reverse: { type: 'boolean' },
  description: { type: 'string', value: 'TEXT' },
  all: { type: 'boolean' },
  concurrency: { type: 'string', value: 'N' },
  graceful: { type: 'boolean' },
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
  /** Extra help paragraphs, shown by `weft GROUP --help`. */
  readonly details?: string;
  readonly commands: readonly CommandSpec[];
}

const WAIT = 'Follow progress on stderr, then print the result; exit 0 only if the job completes';
const INPUT = 'YAML or JSON file whose content replaces flowInput';

const ENV = 'Extra environment variable of the run; repeat for more';
const WORKFLOW_FIELDS =
  "Fields: Styx's id, schedule, offset, docker_image, docker_args, env, running_timeout,\n" +
  "retry_condition, resources and commit_sha, and weft's timezone, enabled, catch_up, spread,\n" +
  'command, algorithm and pipeline.';
const INSTANCE_STATES =
  'STATE is queued, prepare, submitting, submitted, running, terminated, failed, done or\n' +
  'error; done and error are final.';

/** The groups of scheduled workflows (Styx's model); they follow the pipeline groups in help. */
const SCHEDULE_GROUPS: readonly GroupSpec[] = [
  {
    name: 'workflow',
    summary: 'Apply, list, enable and trigger scheduled workflows',
    details:
      'A workflow runs a command, an algorithm or a pipeline on a schedule. Each slot of the\n' +
      'schedule becomes one instance, named by its parameter (2024-01-31 for a daily workflow,\n' +
      '2024-01-31T05 for an hourly one), and is retried until it succeeds or runs out of retries.\n' +
      'New workflows start disabled.',
    commands: [
      {
        path: ['workflow', 'apply'],
        summary: 'Create or replace workflows from a file',
        details:
          'FILE holds one workflow document, or a list or multi-document stream of them.\n' +
          WORKFLOW_FIELDS +
          '\nA document without enabled keeps the workflow as it is (a new one starts disabled).',
        args: [],
        flags: [['file', 'YAML or JSON file of workflow documents']],
        required: ['file'],
        globals: true,
      },
      {
        path: ['workflow', 'get'],
        summary: 'Print a workflow document and its state',
        details: 'The document is printed as YAML that apply accepts back; the state follows as comments.',
        args: ['ID'],
        flags: [],
        globals: true,
      },
      { path: ['workflow', 'ls'], summary: 'List workflows', args: [], flags: [], globals: true },
      {
        path: ['workflow', 'delete'],
        summary: 'Delete a workflow',
        details: 'Its active instances are halted.',
        args: ['ID'],
        flags: [],
        globals: true,
      },
      {
        path: ['workflow', 'enable'],
        summary: 'Start triggering a workflow on its schedule',
        details:
          'Triggering starts from now: slots that passed while the workflow was disabled are\n' +
          'skipped (weft backfill create runs them).',
        args: ['ID'],
        flags: [],
        globals: true,
      },
      {
        path: ['workflow', 'disable'],
        summary: 'Stop triggering a workflow on its schedule',
        details: 'Active instances keep running.',
        args: ['ID'],
        flags: [],
        globals: true,
      },
      {
        path: ['workflow', 'trigger'],
        summary: 'Run one parameter of a workflow now',
        details:
          'PARAMETER names a slot of the schedule: 2024-01-31 for a daily workflow, 2024-01-31T05\n' +
          'for an hourly one, 2024-01 for a monthly one. An instance that has ended runs again;\n' +
          'an active one is an error. Prints the instance.',
        args: ['ID', 'PARAMETER'],
        flags: [
          ['env', ENV],
          ['allow-future', 'Allow a parameter whose slot is in the future'],
        ],
        globals: true,
      },
    ],
  },
  {
    name: 'instance',
    summary: 'List, show, halt and retry workflow instances',
    details: 'An instance is the run of one workflow for one parameter, with all its tries.\n' + INSTANCE_STATES,
    commands: [
      {
        path: ['instance', 'ls'],
        summary: 'List instances by workflow and parameter',
        details: INSTANCE_STATES + '\nAt most 1000 instances are listed (the first by workflow and parameter).',
        args: [],
        flags: [
          ['workflow', 'Only instances of this workflow'],
          ['state', 'Only instances in this state; several as running,failed'],
          ['trigger', 'Only instances started by this trigger: natural-trigger, adhoc-..., a backfill id'],
        ],
        globals: true,
      },
      {
        path: ['instance', 'show'],
        summary: 'Show an instance and its executions',
        details:
          "LOG is where an execution's output is: a log file, or job:<id> for algorithm and\n" +
          'pipeline workflows (weft exec status <id>).',
        args: ['WORKFLOW', 'PARAMETER'],
        flags: [],
        globals: true,
      },
      {
        path: ['instance', 'halt'],
        summary: 'Stop an active instance for good',
        details: 'Its running execution is stopped and the instance ends in state error.',
        args: ['WORKFLOW', 'PARAMETER'],
        flags: [],
        globals: true,
      },
      {
        path: ['instance', 'retry'],
        summary: 'Run a queued, terminated or failed instance again',
        details: 'DURATION is a number with a unit, s, m, h, d or w: 90s, 5m, 1h30m.',
        args: ['WORKFLOW', 'PARAMETER'],
        flags: [['delay', 'Wait this long before the next try (default: none)']],
        globals: true,
      },
    ],
  },
  {
    name: 'backfill',
    summary: 'Run a workflow over a range of past slots',
    commands: [
      {
        path: ['backfill', 'create'],
        summary: "Trigger every slot of a workflow's schedule from START up to END",
        details:
          'START is included, END is not. Each is a parameter of the workflow (2024-01-01 for a\n' +
          'daily workflow, 2024-01-01T05 for an hourly one) or an ISO 8601 time with an offset on a\n' +
          'slot (2024-01-01T00:00:00Z). At most CONCURRENCY instances are active at once. Slots\n' +
          'that already have an active instance are an error. Prints the backfill.',
        args: ['WORKFLOW', 'START', 'END', 'CONCURRENCY'],
        flags: [
          ['reverse', 'Trigger the newest slot first'],
          ['description', 'Why the backfill runs (kept on it)'],
          ['allow-future', 'Allow an END in the future'],
          ['env', ENV],
        ],
        globals: true,
      },
      {
        path: ['backfill', 'ls'],
        summary: 'List backfills that are still running',
        args: [],
        flags: [
          ['workflow', 'Only backfills of this workflow'],
          ['all', 'Include halted and finished backfills'],
        ],
        globals: true,
      },
      {
        path: ['backfill', 'show'],
        summary: 'Show a backfill and the state of each of its slots',
        details: 'A slot not triggered yet shows "-".',
        args: ['ID'],
        flags: [],
        globals: true,
      },
      {
        path: ['backfill', 'edit'],
        summary: "Change a backfill's concurrency or description",
        details: 'Give --concurrency, --description or both.',
        args: ['ID'],
        flags: [
          ['concurrency', 'Keep at most N instances active'],
          ['description', 'Replace the description'],
        ],
        globals: true,
      },
      {
        path: ['backfill', 'halt'],
        summary: 'Stop a backfill',
        details: 'Slots not triggered yet are left alone; active instances are halted unless --graceful.',
        args: ['ID'],
        flags: [['graceful', 'Let the active instances finish']],
        globals: true,
      },
    ],
  },
  {
    name: 'resource',
    summary: 'Create, list, edit and delete concurrency limits',
    details:
      'A resource caps how many instances of the workflows that list it under resources: run\n' +
      'at once. A resource named global, when it exists, limits every workflow.',
    commands: [
      {
        path: ['resource', 'create'],
        summary: 'Create a resource',
        details:
          'At most CONCURRENCY instances of the workflows that list it run at once.\n' +
          'A resource named global limits every workflow.',
        args: ['ID', 'CONCURRENCY'],
        flags: [],
        globals: true,
      },
      {
        path: ['resource', 'ls'],
        summary: 'List resources and how many instances hold each',
        args: [],
        flags: [],
        globals: true,
      },
      {
        path: ['resource', 'edit'],
        summary: "Change a resource's concurrency",
        args: ['ID'],
        flags: [['concurrency', 'At most N instances holding it run at once']],
        required: ['concurrency'],
        globals: true,
      },
      {
        path: ['resource', 'delete'],
        summary: 'Delete a resource',
        details: 'A resource that a workflow still lists cannot be deleted.',
        args: ['ID'],
        flags: [],
        globals: true,
      },
    ],
  },
  {
    name: 'secret',
    summary: 'Store, list and delete secrets that closures mount',
    details:
      "A closure whose environment has withSecret(NAME, PATH) sees the secret's files under PATH.\n" +
      'On the embedded default they are kept under the data directory, readable by its owner only.',
    commands: [
      {
        path: ['secret', 'create'],
        summary: 'Store a secret from files',
        details: 'Each --from-file becomes one file of the secret, under its base name.',
        args: ['NAME'],
        flags: [
          ['from-file', 'A file to include; repeat for more'],
          ['replace', 'Replace the secret if it exists'],
        ],
        required: ['from-file'],
        globals: true,
      },
      { path: ['secret', 'ls'], summary: 'List secrets and their file names', args: [], flags: [], globals: true },
      { path: ['secret', 'delete'], summary: 'Delete a secret', args: ['NAME'], flags: [], globals: true },
    ],
  },
  {
    name: 'volume',
    summary: 'List and delete the volumes closures mount',
    commands: [
      { path: ['volume', 'ls'], summary: 'List volumes', args: [], flags: [], globals: true },
      {
        path: ['volume', 'delete'],
        summary: 'Delete a volume and its data',
        details: 'A volume that a running closure has mounted cannot be deleted.',
        args: ['NAME'],
        flags: [],
        globals: true,
      },
    ],
  },
];

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
      ['data-dir', 'Database, blobs (code stages among them) and logs (env WEFT_DATA_DIR, default .weft)'],
      ['metrics-port', 'Port of /metrics; -1 turns it off (env WEFT_METRICS_PORT, default 9464)'],
      ['register', 'Apply DIR/*/algorithms.yaml at start, e.g. examples (env WEFT_REGISTER)'],
      [
        'blobs',
        'Blob store: fs:DIR or s3://bucket/prefix?endpoint=..&region=.. (env WEFT_BLOBS, default fs:DATA_DIR/blobs)',
      ],
      ['state', 'State store: sqlite:FILE (env WEFT_STATE, default sqlite:DATA_DIR/weft.db)'],
      ['executor', 'Where workers run: local (env WEFT_EXECUTOR, default local)'],
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
          'stream of them. A relative code.path is resolved against the directory of FILE.\n' +
          'The code at code.path (a directory, or a .tar.gz unpacked first) is uploaded to the\n' +
          "control plane's blob store, only the files it lacks, so the server need not see this disk.",
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
  ...SCHEDULE_GROUPS,
];

/** True for a group entry of {@link TREE}. */
export function isGroup(entry: GroupSpec | CommandSpec): entry is GroupSpec {
  return 'commands' in entry;
}

/** The word that names an entry at its level of the tree. */
export function entryName(entry: GroupSpec | CommandSpec): string {
  return isGroup(entry) ? entry.name : (entry.path[entry.path.length - 1] ?? '');
}
