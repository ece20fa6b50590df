/**
 * Pure domain logic for HKube-style pipeline descriptors: validation, the
 * input reference grammar, the node graph, sub-pipeline flattening, and the
 * fan-out of a node's input into one input array per task. Nothing here does
 * I/O; the engine feeds in node outputs and gets plain values back.
 * @packageDocumentation
 */
import { BlobRef, Status, WeftError, getPath, invalid, shapeOf } from '@weft/common';
import { Cron } from 'croner';

/** Which failures run a task again (HKube's names). */
export const RETRY_POLICIES = ['Never', 'Always', 'OnError', 'OnCrash'] as const;
export type RetryPolicy = (typeof RETRY_POLICIES)[number];
/** How several batch inputs of one node combine. */
export const BATCH_OPERATIONS = ['indexed', 'cartesian'] as const;
export type BatchOperation = (typeof BATCH_OPERATIONS)[number];
/** Progress webhook levels, least severe first. */
export const PROGRESS_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'critical'] as const;
export type ProgressLevel = (typeof PROGRESS_LEVELS)[number];
/** Node kinds a descriptor may use; `pipeline` nodes are inlined by {@link parsePipeline}. */
export const NODE_KINDS = ['algorithm', 'output', 'pipeline'] as const;

/** Most items one node may fan out to: a range's length, a cartesian product's size. */
export const MAX_BATCH_ITEMS = 1_000_000;
/** How deep `kind: "pipeline"` nodes may nest (the submitted pipeline is depth 0). */
export const MAX_PIPELINE_DEPTH = 10;
/** HKube's defaults. */
export const DEFAULT_RETRY: Readonly<Retry> = { policy: 'OnCrash', limit: 3 };
export const DEFAULT_PRIORITY = 3;
export const DEFAULT_BATCH_TOLERANCE = 80;

/** One node of a pipeline descriptor, as submitted. */
export interface DescriptorNode {
  nodeName: string;
  /** Required for kind `algorithm`; ignored for `output` and `pipeline`. */
  algorithmName?: string;
  input?: unknown[];
  /** `algorithm` (default, also `''`), `output` or `pipeline`. */
  kind?: string;
  /** Default: OnCrash, limit 3. */
  retry?: { policy?: string; limit?: number };
  /** Seconds a task may run; 0 (default) = no limit. */
  ttl?: number;
  /** `indexed` (default, also `''`) or `cartesian`. */
  batchOperation?: string;
  /** Kind-specific settings; `{ name }` for kind `pipeline`. */
  spec?: Record<string, unknown>;
}

/** A pipeline descriptor, as submitted. Empty strings and 0 mean "not set" where proto3 defaults would. */
export interface Descriptor {
  name: string;
  nodes: DescriptorNode[];
  flowInput?: Record<string, unknown>;
  options?: {
    batchTolerance?: number;
    concurrentPipelines?: { amount?: number; rejectOnFailure?: boolean };
    ttl?: number;
    activeTtl?: number;
    progressVerbosityLevel?: string;
  };
  webhooks?: { progress?: string; result?: string };
  triggers?: { cron?: { pattern?: string; enabled?: boolean }; pipelines?: string[] };
  /** 1-5, 5 highest; 0 or unset = 3. */
  priority?: number;
  tags?: string[];
}

/** A reference found in a node's input. */
export interface InputRef {
  source: 'flowInput' | 'node';
  /** Set when `source === 'node'`: the node read, after sub-pipeline rewriting. */
  node?: string;
  /** Keys after the first segment: `"@A.x.y"` gives `['x','y']`, `"@flowInput.a.b"` gives `['a','b']`. */
  path: string[];
  /** `'@...'` is value, `'#@...'` is batch, `'*@...'` is wait-any. */
  mode: 'value' | 'batch' | 'waitAny';
  /** Where the reference was found, e.g. `"nodes[1].input[2].cfg.items[0]"`. */
  field: string;
}

/** Stands in a parsed input template for a `@...` / `#@...` / `*@...` reference string. */
export class RefSlot {
  constructor(readonly ref: InputRef) {}
}

/** Stands in a parsed input template for a `#[...]` literal batch. */
export class LiteralBatchSlot {
  constructor(
    readonly items: unknown[],
    readonly field: string,
    /** Set when the literal was a range `#[start...end]` (both inclusive). */
    readonly range?: { start: number; end: number },
  ) {}
}

export interface Retry {
  policy: RetryPolicy;
  /** Retries after the first run, 0-100. */
  limit: number;
}

/**
 * A validated node with its place in the graph.
 *
 * Nodes inlined from a `kind: "pipeline"` node X are named `${X}-${innerName}`
 * and their `field` reads `nodes[i](storedName).nodes[j]`.
 */
export interface ParsedNode {
  nodeName: string;
  /**
   * `output`: not dispatched; its (non-batch) input, built by
   * {@link buildTaskInputs}, is a pipeline result. It is always a leaf.
   */
  kind: 'algorithm' | 'output';
  /** `''` for output nodes: they run no algorithm. */
  algorithmName: string;
  /** Position in {@link ParsedPipeline.nodes} (the flattened descriptor order). */
  index: number;
  /** Field path of the node for error messages, e.g. `nodes[2]`. */
  field: string;
  /** The node's input with every reference replaced by a {@link RefSlot} or {@link LiteralBatchSlot} (deep copy). */
  input: unknown[];
  /** Distinct node names referenced (not flowInput), in first-seen order; includes {@link waitAnyParents}. */
  parents: string[];
  /** Distinct nodes referenced with `*@`, in first-seen order. */
  waitAnyParents: string[];
  /** Distinct nodes that reference this one, in flattened order. */
  children: string[];
  /** True when the node produces one output item per task: any `#@`, `#[...]` or `*@` input. */
  isBatch: boolean;
  /** Dot-joined paths ('' for the whole value) that children batch over (`#@`) in this node's output. */
  savePaths: string[];
  retry: Retry;
  /** Seconds a task may run; 0 = no limit. */
  ttl: number;
  batchOperation: BatchOperation;
  /** The node's `spec`, `{}` when unset. */
  spec: Record<string, unknown>;
}

export interface PipelineOptions {
  /** 0-100: the job fails once this percentage of a node's batch failed. */
  batchTolerance: number;
  concurrentPipelines?: { amount: number; rejectOnFailure: boolean };
  /** Seconds the job may live, pending and active; 0 = no limit. */
  ttl: number;
  /** Seconds the job may be active; 0 = no limit. */
  activeTtl: number;
  progressVerbosityLevel: ProgressLevel;
}

/** A validated pipeline. */
export interface ParsedPipeline {
  name: string;
  /** In descriptor order, each `kind: "pipeline"` node replaced by its inlined nodes. */
  nodes: ParsedNode[];
  /** Topological order; ties broken by (flattened) descriptor order. */
  order: string[];
  byName: Map<string, ParsedNode>;
  /** Nodes without children, in flattened order. */
  leaves: string[];
  /** The job's flowInput: the descriptor's, with every sub-pipeline's stored flowInput merged under it. */
  flowInput: Record<string, unknown>;
  options: PipelineOptions;
  webhooks: { progress?: string; result?: string };
  triggers: { cron?: { pattern: string; enabled: boolean }; pipelines: string[] };
  /** 1-5, 5 highest. */
  priority: number;
  tags: string[];
}

/**
 * What a finished node produced. Each item is a value kept in memory, or a blob
 * reference plus the shape metadata the producer reported for its save paths.
 */
export type OutputItem =
  | { kind: 'inline'; value: unknown }
  | { kind: 'blob'; key: string; meta: Record<string, { type: string; size: number }> };

/**
 * Items in batch order; a non-batch node has exactly one item. For a parent of
 * a wait-any node the array may have holes for items not produced yet.
 */
export interface NodeOutput {
  batch: boolean;
  items: OutputItem[];
}

/** The name that `@flowInput...` references use; no node may take it. */
export const FLOW_INPUT = 'flowInput';

const PREFIX: Record<InputRef['mode'], string> = { value: '@', batch: '#@', waitAny: '*@' };

/** Renders a reference back to its input syntax, e.g. `#@A.x` or `*@A`. */
export function formatRef(ref: InputRef): string {
  const head = ref.source === 'flowInput' ? FLOW_INPUT : (ref.node ?? '');
  const tail = ref.path.length > 0 ? `.${ref.path.join('.')}` : '';
  return `${PREFIX[ref.mode]}${head}${tail}`;
}

/** Renders an array index or object key onto a field path, e.g. `input[2].cfg`. */
function fieldKey(field: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${field}.${key}` : `${field}[${JSON.stringify(key)}]`;
}

/**
 * Only arrays and plain objects are walked: anything else (Uint8Array, Buffer,
 * BlobRef, Date...) is an opaque value and is kept by reference.
 */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A value as it appears in a message: strings quoted. */
function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value !== null && typeof value === 'object') {
    try {
      return JSON.stringify(value);
    } catch {
      return Object.prototype.toString.call(value);
    }
  }
  return String(value);
}

/** True when a proto3-style optional value is absent: undefined, null, or `''`/0 where `emptyToo`. */
function unset(value: unknown, emptyToo: '' | 0 | null = null): boolean {
  return value === undefined || value === null || (emptyToo !== null && value === emptyToo);
}

function intIn(value: unknown, field: string, lo: number, hi: number, who = ''): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < lo || value > hi) {
    throw invalid(field, `${who}must be an integer from ${lo} to ${hi} (got ${show(value)})`);
  }
  return value;
}

function seconds(value: unknown, field: string, who = ''): number {
  if (unset(value)) return 0;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(field, `${who}must be a whole number of seconds >= 0 (got ${show(value)})`);
  }
  return value;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], fallback: T, field: string, who = ''): T {
  if (unset(value, '')) return fallback;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw invalid(field, `${who}${show(value)} is not one of ${allowed.join(', ')}`);
}

function objectOrEmpty(value: unknown, field: string, who = ''): Record<string, unknown> {
  if (unset(value)) return {};
  if (!isPlainObject(value)) throw invalid(field, `${who}must be an object`);
  return value;
}

const WHITESPACE = /\s/;
// HKube's range syntax, `#[0...600]`; matched before JSON so the error says what is wrong.
const RANGE = /^#\[\s*(-?\d+(?:\.\d+)?)\s*\.\.\.\s*(-?\d+(?:\.\d+)?)\s*\]$/;

/** What one input string turned out to be. */
type ParsedString =
  | { kind: 'plain' }
  | { kind: 'ref'; name: string; path: string[]; mode: InputRef['mode'] }
  | { kind: 'literal'; items: unknown[]; range?: { start: number; end: number } };

/**
 * Parses `#[start...end]`: both ends inclusive (HKube's `#[0...9]` gives ten
 * items, 0-9), whole numbers >= 0, ascending; `#[3...3]` is `[3]`.
 */
function parseRange(s: string, m: RegExpExecArray, bad: (why: string) => WeftError): ParsedString {
  const [text0, text1] = [m[1]!, m[2]!];
  if (text0.includes('.') || text1.includes('.')) throw bad(`range "${s}" needs whole-number bounds`);
  if (text0.startsWith('-') || text1.startsWith('-')) throw bad(`range "${s}" must not have negative bounds`);
  const start = Number(text0);
  const end = Number(text1);
  if (end < start) throw bad(`range "${s}" is descending; write "#[${end}...${start}]"`);
  const count = end - start + 1;
  if (!Number.isSafeInteger(end) || count > MAX_BATCH_ITEMS) {
    throw bad(`range "${s}" has ${count} items; at most ${MAX_BATCH_ITEMS} are allowed`);
  }
  return { kind: 'literal', items: Array.from({ length: count }, (_, k) => start + k), range: { start, end } };
}

/** Parses one input string; throws `invalid(field, ...)` for malformed syntax. */
function parseInputString(s: string, field: string, nodeName: string): ParsedString {
  const bad = (why: string): WeftError => invalid(field, `node "${nodeName}": ${why}`);
  if (s.startsWith('*#@')) throw bad(`wait-any-batch input "${s}" is not supported yet`);
  if (s.startsWith('#[')) {
    const range = RANGE.exec(s);
    if (range) return parseRange(s, range, bad);
    let items: unknown;
    try {
      items = JSON.parse(s.slice(1));
    } catch (err) {
      throw bad(`malformed literal batch "${s}": ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!Array.isArray(items)) throw bad(`malformed literal batch "${s}": not a JSON array`);
    return { kind: 'literal', items };
  }
  let mode: InputRef['mode'];
  let body: string;
  if (s.startsWith('#@')) {
    mode = 'batch';
    body = s.slice(2);
  } else if (s.startsWith('*@')) {
    mode = 'waitAny';
    body = s.slice(2);
  } else if (s.startsWith('@')) {
    mode = 'value';
    body = s.slice(1);
  } else {
    return { kind: 'plain' };
  }
  if (body === '') throw bad(`malformed reference "${s}": missing node name`);
  if (WHITESPACE.test(body)) throw bad(`malformed reference "${s}": whitespace is not allowed`);
  const segments = body.split('.');
  if (segments.some((seg) => seg === '')) throw bad(`malformed reference "${s}": empty path segment`);
  const [name, ...path] = segments as [string, ...string[]];
  return { kind: 'ref', name, path, mode };
}

/** Checks that `value` is a non-empty string, else throws naming `field`. */
function requireName(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(field, 'is required');
  return value;
}

/** Sets an own property, even one named `__proto__`. */
function put(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * `top` plus every key of `under` that it lacks; where both hold a plain
 * object the two merge the same way, and elsewhere `top` wins. Arrays are
 * values, not merged. Neither argument is modified.
 */
function mergeUnder(top: Record<string, unknown>, under: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(top)) put(out, k, v);
  for (const [k, v] of Object.entries(under)) {
    const mine = out[k];
    if (!Object.hasOwn(out, k)) put(out, k, v);
    else if (isPlainObject(mine) && isPlainObject(v)) put(out, k, mergeUnder(mine, v));
  }
  return out;
}

/** What parsing needs besides the descriptor. */
interface Ctx {
  isKnownAlgorithm: (name: string) => boolean;
  lookupPipeline: ((name: string) => Descriptor | undefined) | undefined;
  /** False when storing a pipeline: its flowInput may be given only when it runs. */
  requireFlowInputKeys: boolean;
}

/** The graph part of a parsed pipeline, sub-pipelines already inlined. */
interface Graph {
  nodes: ParsedNode[];
  order: string[];
  byName: Map<string, ParsedNode>;
  leaves: string[];
  flowInput: Record<string, unknown>;
}

/** What the first pass learned about one descriptor node. */
interface Head {
  at: string;
  nodeName: string;
  kind: 'algorithm' | 'output' | 'pipeline';
  algorithmName: string;
  input: unknown[];
  retry: Retry;
  ttl: number;
  batchOperation: BatchOperation;
  spec: Record<string, unknown>;
  /** Kind `pipeline`: the stored pipeline's name and its parsed, flattened graph. */
  sub?: { name: string; graph: Graph };
}

/**
 * Validates a descriptor and parses it into a graph with input templates.
 *
 * Every error is `INVALID_ARGUMENT` naming the offending field and node, e.g.
 * `nodes[1].input[0]: node "Multiply" references unknown node "Rnage"`;
 * cycles are reported on `nodes` as `cycle: A -> B -> A`.
 *
 * Node kinds:
 * - `algorithm` (default): runs `algorithmName`, which must satisfy `isKnownAlgorithm`.
 * - `output`: needs no `algorithmName` (ignored if given, never checked; the
 *   parsed node has `''`) and is never dispatched: its input, which must not
 *   fan out, is a pipeline result. It must be a leaf.
 * - `pipeline`: `spec.name` names a stored pipeline, found with
 *   `lookupPipeline` and inlined here, as HKube does at submission. Its nodes
 *   are renamed `${X}-${innerName}` (X: the pipeline node) along with their
 *   references; `@flowInput...` in them reads the job's flowInput, which is
 *   the descriptor's flowInput with the stored pipeline's flowInput merged
 *   under it (see {@link ParsedPipeline.flowInput}). The node itself takes no
 *   input. `@X`, `#@X` and `*@X` elsewhere read the sub-pipeline's one data
 *   leaf: its only node that is not an output node and that no other node but
 *   output nodes reads (an error names the candidates when there are several).
 *   Inlined nodes may also be read by their new names. Output nodes inside
 *   stay output nodes: their input is part of the job's result. Nesting works
 *   up to {@link MAX_PIPELINE_DEPTH} levels; a pipeline including itself is
 *   refused. Errors inside a sub-pipeline are reported on `nodes[i].spec.name`
 *   quoting the inner error. Its retry, ttl and batchOperation are ignored.
 *
 * @param isKnownAlgorithm decides whether `algorithmName` exists; kept as a
 *   callback so this module stays free of storage.
 * @param lookupPipeline finds a stored pipeline by name; without it, `pipeline`
 *   nodes are refused.
 */
export function parsePipeline(
  d: Descriptor,
  isKnownAlgorithm: (name: string) => boolean,
  lookupPipeline?: (name: string) => Descriptor | undefined,
  opts: {
    /** Skip the check that `@flowInput.x` names an existing key (a stored pipeline gets its flowInput at exec). */
    flowInputLater?: boolean;
  } = {},
): ParsedPipeline {
  const graph = parseGraph(
    d,
    { isKnownAlgorithm, lookupPipeline, requireFlowInputKeys: !opts.flowInputLater },
    undefined,
  );
  const priority = unset(d.priority, 0) ? DEFAULT_PRIORITY : intIn(d.priority, 'priority', 1, 5);
  return {
    name: d.name,
    ...graph,
    options: parseOptions(d.options),
    webhooks: parseWebhooks(d.webhooks),
    triggers: parseTriggers(d.triggers, d.name),
    priority,
    tags: parseTags(d.tags),
  };
}

/**
 * Validates names, nodes and inputs, inlines sub-pipelines, and builds the graph.
 * @param path names of the pipelines being inlined, outermost first, ending
 *   with this one; `undefined` for the submitted pipeline.
 */
function parseGraph(d: Descriptor, ctx: Ctx, path: string[] | undefined): Graph {
  if (!isPlainObject(d)) throw invalid('descriptor', 'must be an object');
  const name = requireName(d.name, 'name');
  const here = path ?? [name];
  if (!Array.isArray(d.nodes) || d.nodes.length === 0) throw invalid('nodes', 'at least one node is required');
  const given: unknown = d.flowInput ?? {};
  if (!isPlainObject(given)) throw invalid('flowInput', 'must be an object');

  // First pass: names and per-node settings, so that references in the second pass can point forwards.
  const indexOf = new Map<string, number>();
  const heads: Head[] = [];
  (d.nodes as unknown[]).forEach((raw, i) => {
    const at = `nodes[${i}]`;
    if (!isPlainObject(raw)) throw invalid(at, 'must be an object');
    const nodeName = requireName(raw.nodeName, `${at}.nodeName`);
    if (nodeName === FLOW_INPUT) throw invalid(`${at}.nodeName`, `"${FLOW_INPUT}" is a reserved name`);
    // A '.' or whitespace in a name would make the node unreachable by `@name.path`.
    if (nodeName.includes('.') || WHITESPACE.test(nodeName) || /^[@#*]/.test(nodeName)) {
      throw invalid(`${at}.nodeName`, `"${nodeName}" must not contain '.' or whitespace nor start with '@', '#', '*'`);
    }
    const prev = indexOf.get(nodeName);
    if (prev !== undefined) throw invalid(`${at}.nodeName`, `duplicate node name "${nodeName}" (also nodes[${prev}])`);
    indexOf.set(nodeName, i);
    heads.push(parseHead(raw, at, nodeName, ctx, here));
  });

  let flowInput = given;
  for (const h of heads) if (h.sub) flowInput = mergeUnder(flowInput, h.sub.graph.flowInput);

  // Every name a reference may use, with who owns it, to report clashes of inlined names.
  const owners = new Map<string, string>(heads.map((h) => [h.nodeName, h.at]));
  for (const h of heads) {
    for (const inner of h.sub?.graph.nodes ?? []) {
      const flat = `${h.nodeName}-${inner.nodeName}`;
      const other = owners.get(flat);
      if (other !== undefined) {
        throw invalid(
          `${h.at}.spec.name`,
          `node "${h.nodeName}": sub-pipeline node "${inner.nodeName}" becomes "${flat}", which is also ${other}`,
        );
      }
      owners.set(flat, `node "${inner.nodeName}" of sub-pipeline node "${h.nodeName}"`);
    }
  }

  /** The node a reference to `name` reads: itself, or a sub-pipeline's data leaf. */
  const targetOf = (name: string, field: string, text: string, reader: string): string => {
    const i = indexOf.get(name);
    const sub = i === undefined ? undefined : heads[i]!.sub;
    if (sub) {
      const g = sub.graph;
      const data = dataLeaves(g);
      if (data.length === 1) return `${name}-${data[0]!}`;
      const quoted = (ls: string[]): string => ls.map((l) => `"${name}-${l}"`).join(', ');
      if (data.length === 0) {
        throw invalid(
          field,
          `node "${reader}" reads sub-pipeline node "${name}" ("${text}"), but it has only output nodes to read (${quoted(g.leaves)})`,
        );
      }
      throw invalid(
        field,
        `node "${reader}" reads sub-pipeline node "${name}" ("${text}"), which has several leaves (${quoted(data)}); reference one of them by name`,
      );
    }
    if (owners.has(name)) return name;
    const extra = name === 'dataSource' ? ' (data source inputs are not supported yet)' : '';
    throw invalid(field, `node "${reader}" references unknown node "${name}"${extra}`);
  };

  // Second pass: input templates, parents and batch flags.
  const selfRefs = new Map<string, string>();
  const texts = new Map<RefSlot, { text: string; name: string }>();
  const parseNode = (head: Head): ParsedNode => {
    const who = `node "${head.nodeName}"`;
    const parents: string[] = [];
    const waitAnyParents: string[] = [];
    const batchInputs: { text: string; field: string }[] = [];
    const waitAnyInputs: { text: string; field: string }[] = [];
    const walk = (value: unknown, field: string): unknown => {
      if (typeof value === 'string') {
        const parsed = parseInputString(value, field, head.nodeName);
        if (parsed.kind === 'plain') return value;
        if (parsed.kind === 'literal' || parsed.mode !== 'value') {
          if (head.kind === 'output') {
            throw invalid(
              field,
              `${who}: an output node's input is the pipeline result, so it cannot fan out ("${value}")`,
            );
          }
          const waitAny = parsed.kind === 'ref' && parsed.mode === 'waitAny';
          (waitAny ? waitAnyInputs : batchInputs).push({ text: value, field });
        }
        if (parsed.kind === 'literal') return new LiteralBatchSlot(parsed.items, field, parsed.range);
        if (parsed.name === FLOW_INPUT) {
          if (parsed.mode === 'waitAny') {
            throw invalid(
              field,
              `${who}: wait-any input "${value}" must name a node ("#@flowInput..." batches over flowInput)`,
            );
          }
          const top = parsed.path[0];
          if (ctx.requireFlowInputKeys && top !== undefined && !Object.hasOwn(flowInput, top)) {
            throw invalid(field, `${who} references "${value}" but flowInput has no key "${top}"`);
          }
          return new RefSlot({ source: 'flowInput', path: parsed.path, mode: parsed.mode, field });
        }
        const node = targetOf(parsed.name, field, value, head.nodeName);
        if (node === head.nodeName && !selfRefs.has(node)) selfRefs.set(node, field);
        if (!parents.includes(node)) parents.push(node);
        if (parsed.mode === 'waitAny' && !waitAnyParents.includes(node)) waitAnyParents.push(node);
        const slot = new RefSlot({ source: 'node', node, path: parsed.path, mode: parsed.mode, field });
        texts.set(slot, { text: value, name: parsed.name });
        return slot;
      }
      if (Array.isArray(value)) return value.map((v, k) => walk(v, `${field}[${k}]`));
      if (isPlainObject(value)) {
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(value)) put(out, k, walk(v, fieldKey(field, k)));
        return out;
      }
      return value;
    };
    const input = head.input.map((v, k) => walk(v, `${head.at}.input[${k}]`));
    const [batch] = batchInputs;
    const [waitAny] = waitAnyInputs;
    if (batch && waitAny) {
      throw invalid(
        batch.field,
        `${who}: batch input "${batch.text}" cannot be combined with wait-any input "${waitAny.text}" (${waitAny.field}): a wait-any node runs once per item of its "*@" parents`,
      );
    }
    return {
      nodeName: head.nodeName,
      kind: head.kind === 'output' ? 'output' : 'algorithm',
      algorithmName: head.algorithmName,
      index: 0,
      field: head.at,
      input,
      parents,
      waitAnyParents,
      children: [],
      isBatch: batch !== undefined || waitAny !== undefined,
      savePaths: [],
      retry: head.retry,
      ttl: head.ttl,
      batchOperation: head.batchOperation,
      spec: head.spec,
    };
  };
  const nodes: ParsedNode[] = [];
  for (const head of heads) {
    if (head.sub) {
      const prefix = `${head.at}(${head.sub.name}).`;
      for (const inner of head.sub.graph.nodes) nodes.push(inlined(inner, head.nodeName, prefix));
    } else {
      nodes.push(parseNode(head));
    }
  }
  return buildGraph(nodes, flowInput, selfRefs, texts);
}

/**
 * The nodes a reference to a whole sub-pipeline may mean: those that only
 * output nodes read (or none), other than output nodes themselves.
 */
function dataLeaves(g: Graph): string[] {
  const isOutput = (name: string): boolean => g.byName.get(name)!.kind === 'output';
  return g.nodes.filter((n) => n.kind !== 'output' && n.children.every(isOutput)).map((n) => n.nodeName);
}

/** Reads one descriptor node's kind and settings; inlines a `pipeline` node's stored pipeline. */
function parseHead(raw: Record<string, unknown>, at: string, nodeName: string, ctx: Ctx, path: string[]): Head {
  const who = `node "${nodeName}": `;
  const kind = unset(raw.kind, '') ? 'algorithm' : raw.kind;
  if (typeof kind !== 'string' || !(NODE_KINDS as readonly string[]).includes(kind)) {
    throw invalid(
      `${at}.kind`,
      `${who}kind ${show(raw.kind)} is not supported yet (supported: ${NODE_KINDS.join(', ')})`,
    );
  }
  let algorithmName = '';
  if (kind === 'algorithm') {
    algorithmName = requireName(raw.algorithmName, `${at}.algorithmName`);
    if (!ctx.isKnownAlgorithm(algorithmName)) {
      throw invalid(`${at}.algorithmName`, `node "${nodeName}" uses unknown algorithm "${algorithmName}"`);
    }
  }
  const input: unknown = raw.input ?? [];
  if (!Array.isArray(input)) throw invalid(`${at}.input`, `${who}input must be an array`);
  const r = objectOrEmpty(raw.retry, `${at}.retry`, who);
  const retry: Retry = {
    policy: oneOf(r.policy, RETRY_POLICIES, DEFAULT_RETRY.policy, `${at}.retry.policy`, who),
    limit: unset(r.limit) ? DEFAULT_RETRY.limit : intIn(r.limit, `${at}.retry.limit`, 0, 100, who),
  };
  const head: Head = {
    at,
    nodeName,
    kind: kind as Head['kind'],
    algorithmName,
    input: input as unknown[],
    retry,
    ttl: seconds(raw.ttl, `${at}.ttl`, who),
    batchOperation: oneOf(raw.batchOperation, BATCH_OPERATIONS, 'indexed', `${at}.batchOperation`, who),
    spec: objectOrEmpty(raw.spec, `${at}.spec`, who),
  };
  if (head.kind === 'pipeline') head.sub = expand(head, ctx, path);
  return head;
}

/** Looks up and parses the stored pipeline a `pipeline` node names. */
function expand(head: Head, ctx: Ctx, path: string[]): { name: string; graph: Graph } {
  const { at } = head;
  const who = `node "${head.nodeName}"`;
  const name = head.spec['name'];
  if (typeof name !== 'string' || name.trim() === '') {
    throw invalid(`${at}.spec.name`, `${who}: is required for kind "pipeline" (the name of a stored pipeline)`);
  }
  if (head.input.length > 0) {
    throw invalid(
      `${at}.input`,
      `${who}: a pipeline node takes no input: the nodes of "${name}" read the job's flowInput, into which "${name}"'s stored flowInput is merged`,
    );
  }
  if (!ctx.lookupPipeline) {
    throw invalid(
      `${at}.kind`,
      `${who}: kind "pipeline" is not supported here (no pipeline store to find "${name}" in)`,
    );
  }
  const seen = path.indexOf(name);
  if (seen >= 0) {
    throw invalid(
      `${at}.spec.name`,
      `${who}: pipeline "${name}" includes itself (${[...path.slice(seen), name].join(' -> ')})`,
    );
  }
  if (path.length > MAX_PIPELINE_DEPTH) {
    throw invalid(
      `${at}.spec.name`,
      `${who}: sub-pipelines nest more than ${MAX_PIPELINE_DEPTH} deep (${[...path, name].join(' -> ')})`,
    );
  }
  const stored = ctx.lookupPipeline(name);
  if (!stored) throw invalid(`${at}.spec.name`, `${who} uses unknown pipeline "${name}"`);
  try {
    return { name, graph: parseGraph(stored, ctx, [...path, name]) };
  } catch (err) {
    if (err instanceof WeftError && err.code === Status.INVALID_ARGUMENT) {
      throw invalid(`${at}.spec.name`, `${who}: sub-pipeline "${name}" is invalid: ${err.message}`);
    }
    throw err;
  }
}

/** A copy of a sub-pipeline's node, renamed `${owner}-${name}` along with the nodes it reads. */
function inlined(node: ParsedNode, owner: string, prefix: string): ParsedNode {
  const rename = (name: string): string => `${owner}-${name}`;
  const input = substitute(node.input, (slot) => {
    if (slot instanceof LiteralBatchSlot) return new LiteralBatchSlot(slot.items, prefix + slot.field, slot.range);
    const ref = { ...slot.ref, field: prefix + slot.ref.field };
    if (ref.source === 'node') ref.node = rename(ref.node!);
    return new RefSlot(ref);
  }) as unknown[];
  return {
    ...node,
    nodeName: rename(node.nodeName),
    field: prefix + node.field,
    input,
    parents: node.parents.map(rename),
    waitAnyParents: node.waitAnyParents.map(rename),
    children: [],
    savePaths: [],
    retry: { ...node.retry },
  };
}

/** Links children and save paths, then checks self references, wait-any targets, output leaves and cycles. */
function buildGraph(
  nodes: ParsedNode[],
  flowInput: Record<string, unknown>,
  selfRefs: Map<string, string>,
  texts: Map<RefSlot, { text: string; name: string }>,
): Graph {
  nodes.forEach((n, i) => (n.index = i));
  const byName = new Map(nodes.map((n) => [n.nodeName, n]));
  for (const node of nodes) {
    for (const p of node.parents) {
      const parent = byName.get(p)!;
      if (!parent.children.includes(node.nodeName)) parent.children.push(node.nodeName);
    }
  }
  for (const node of nodes) {
    forEachSlot(node.input, (slot) => {
      if (!(slot instanceof RefSlot) || slot.ref.mode !== 'batch' || slot.ref.source !== 'node') return;
      const paths = byName.get(slot.ref.node!)!.savePaths;
      const joined = slot.ref.path.join('.');
      if (!paths.includes(joined)) paths.push(joined);
    });
  }

  const firstSelf = nodes.find((n) => selfRefs.has(n.nodeName));
  if (firstSelf) {
    const n = firstSelf.nodeName;
    throw invalid('nodes', `cycle: ${n} -> ${n} (${selfRefs.get(n)} references node "${n}" itself)`);
  }
  for (const node of nodes) {
    forEachSlot(node.input, (slot) => {
      if (!(slot instanceof RefSlot) || slot.ref.mode !== 'waitAny') return;
      const target = byName.get(slot.ref.node!)!;
      if (target.isBatch) return;
      const { text, name } = texts.get(slot) ?? { text: formatRef(slot.ref), name: target.nodeName };
      const why =
        name === target.nodeName
          ? ' (one with a "#@", "#[...]" or "*@" input)'
          : ` (it reads sub-pipeline leaf "${target.nodeName}", which is not one)`;
      throw invalid(
        slot.ref.field,
        `node "${node.nodeName}": wait-any input "${text}" needs ${name} to be a batch node${why}`,
      );
    });
  }
  for (const node of nodes) {
    if (node.kind === 'output' && node.children.length > 0) {
      throw invalid(
        `${node.field}.kind`,
        `node "${node.nodeName}": an output node must be a leaf; "${node.children[0]!}" reads it`,
      );
    }
  }
  const order = topologicalOrder(nodes, byName);
  const leaves = nodes.filter((n) => n.children.length === 0).map((n) => n.nodeName);
  return { nodes, order, byName, leaves, flowInput };
}

function parseOptions(raw: unknown): PipelineOptions {
  const o = objectOrEmpty(raw, 'options');
  const batchTolerance = unset(o.batchTolerance)
    ? DEFAULT_BATCH_TOLERANCE
    : intIn(o.batchTolerance, 'options.batchTolerance', 0, 100);
  let concurrentPipelines: PipelineOptions['concurrentPipelines'];
  if (!unset(o.concurrentPipelines)) {
    const c = objectOrEmpty(o.concurrentPipelines, 'options.concurrentPipelines');
    const amount = intIn(c.amount, 'options.concurrentPipelines.amount', 1, 10000);
    if (!unset(c.rejectOnFailure) && typeof c.rejectOnFailure !== 'boolean') {
      throw invalid(
        'options.concurrentPipelines.rejectOnFailure',
        `must be true or false (got ${show(c.rejectOnFailure)})`,
      );
    }
    concurrentPipelines = { amount, rejectOnFailure: c.rejectOnFailure !== false };
  }
  return {
    batchTolerance,
    ...(concurrentPipelines ? { concurrentPipelines } : {}),
    ttl: seconds(o.ttl, 'options.ttl'),
    activeTtl: seconds(o.activeTtl, 'options.activeTtl'),
    progressVerbosityLevel: oneOf(o.progressVerbosityLevel, PROGRESS_LEVELS, 'info', 'options.progressVerbosityLevel'),
  };
}

function parseUrl(value: unknown, field: string): string | undefined {
  if (unset(value, '')) return undefined;
  if (typeof value !== 'string') throw invalid(field, `must be a URL string (got ${show(value)})`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(field, `${show(value)} is not an absolute URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw invalid(field, `${show(value)} must be an http or https URL`);
  }
  return value;
}

function parseWebhooks(raw: unknown): ParsedPipeline['webhooks'] {
  const w = objectOrEmpty(raw, 'webhooks');
  const progress = parseUrl(w.progress, 'webhooks.progress');
  const result = parseUrl(w.result, 'webhooks.result');
  return { ...(progress ? { progress } : {}), ...(result ? { result } : {}) };
}

/** Throws unless croner accepts `pattern` (5 fields, 6 with seconds first, or 7 with a year; or a nickname like `@daily`). */
function checkCron(pattern: string, field: string): void {
  let cron: Cron | undefined;
  try {
    cron = new Cron(pattern, { paused: true });
  } catch (err) {
    throw invalid(
      field,
      `${show(pattern)} is not a valid cron pattern: ${err instanceof Error ? err.message : String(err)}`,
    );
  } finally {
    cron?.stop();
  }
}

function parseTriggers(raw: unknown, self: string): ParsedPipeline['triggers'] {
  const t = objectOrEmpty(raw, 'triggers');
  const triggers: ParsedPipeline['triggers'] = { pipelines: [] };
  if (!unset(t.cron)) {
    const c = objectOrEmpty(t.cron, 'triggers.cron');
    if (!unset(c.enabled) && typeof c.enabled !== 'boolean') {
      throw invalid('triggers.cron.enabled', `must be true or false (got ${show(c.enabled)})`);
    }
    const enabled = c.enabled === true;
    if (!unset(c.pattern, '')) {
      if (typeof c.pattern !== 'string')
        throw invalid('triggers.cron.pattern', `must be a string (got ${show(c.pattern)})`);
      checkCron(c.pattern, 'triggers.cron.pattern');
      triggers.cron = { pattern: c.pattern, enabled };
    } else if (enabled) {
      throw invalid('triggers.cron.pattern', 'is required when the cron trigger is enabled');
    }
  }
  if (!unset(t.pipelines)) {
    if (!Array.isArray(t.pipelines)) throw invalid('triggers.pipelines', 'must be an array of pipeline names');
    (t.pipelines as unknown[]).forEach((p, k) => {
      const field = `triggers.pipelines[${k}]`;
      if (typeof p !== 'string' || p.trim() === '') throw invalid(field, `must be a pipeline name (got ${show(p)})`);
      if (p === self) throw invalid(field, `"${p}" is this pipeline: it would trigger itself after every run`);
      if (!triggers.pipelines.includes(p)) triggers.pipelines.push(p);
    });
  }
  return triggers;
}

function parseTags(raw: unknown): string[] {
  if (unset(raw)) return [];
  if (!Array.isArray(raw)) throw invalid('tags', 'must be an array of strings');
  return (raw as unknown[]).map((tag, k) => {
    if (typeof tag !== 'string' || tag.trim() === '')
      throw invalid(`tags[${k}]`, `must be a non-empty string (got ${show(tag)})`);
    return tag;
  });
}
/**
 * Kahn's algorithm, always taking the ready node that comes first in the
 * descriptor so the order is stable. Throws on a cycle, naming one.
 */
function topologicalOrder(nodes: ParsedNode[], byName: Map<string, ParsedNode>): string[] {
  const pending = new Map(nodes.map((n) => [n.nodeName, n.parents.length]));
  const ready = nodes.filter((n) => n.parents.length === 0);
  const order: string[] = [];
  while (ready.length > 0) {
    // n is small (tens of nodes): a linear scan beats keeping a heap.
    let best = 0;
    for (let k = 1; k < ready.length; k++) if (ready[k]!.index < ready[best]!.index) best = k;
    const [node] = ready.splice(best, 1) as [ParsedNode];
    order.push(node.nodeName);
    for (const c of node.children) {
      const left = (pending.get(c) ?? 0) - 1;
      pending.set(c, left);
      if (left === 0) ready.push(byName.get(c)!);
    }
  }
  if (order.length === nodes.length) return order;
  throw invalid('nodes', `cycle: ${findCycle(nodes, new Set(order), byName).join(' -> ')}`);
}

/**
 * Every node Kahn could not place has a parent it could not place either, so
 * walking parents from any of them must revisit a node: that loop is a cycle.
 * Returned in data-flow order, starting and ending at its earliest node.
 */
function findCycle(nodes: ParsedNode[], placed: Set<string>, byName: Map<string, ParsedNode>): string[] {
  const start = nodes.find((n) => !placed.has(n.nodeName))!;
  const seen = new Map<string, number>();
  const trail: ParsedNode[] = [];
  let cur = start;
  while (!seen.has(cur.nodeName)) {
    seen.set(cur.nodeName, trail.length);
    trail.push(cur);
    const next = cur.parents.find((p) => !placed.has(p))!;
    cur = byName.get(next)!;
  }
  // trail walks child -> parent; reverse it so arrows follow the data.
  const loop = trail.slice(seen.get(cur.nodeName)).reverse();
  let first = 0;
  for (let k = 1; k < loop.length; k++) if (loop[k]!.index < loop[first]!.index) first = k;
  const rotated = [...loop.slice(first), ...loop.slice(0, first)].map((n) => n.nodeName);
  return [...rotated, rotated[0]!];
}

/** Calls `visit` on every slot of a template, in input order (depth first). */
export function forEachSlot(template: unknown, visit: (slot: RefSlot | LiteralBatchSlot) => void): void {
  if (template instanceof RefSlot || template instanceof LiteralBatchSlot) visit(template);
  else if (Array.isArray(template)) for (const v of template) forEachSlot(v, visit);
  else if (isPlainObject(template)) for (const v of Object.values(template)) forEachSlot(v, visit);
}

/** Copies a template, putting `fill(slot)` where each slot was. */
function substitute(template: unknown, fill: (slot: RefSlot | LiteralBatchSlot) => unknown): unknown {
  if (template instanceof RefSlot || template instanceof LiteralBatchSlot) return fill(template);
  if (Array.isArray(template)) return template.map((v) => substitute(v, fill));
  if (isPlainObject(template)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(template)) put(out, k, substitute(v, fill));
    return out;
  }
  return template;
}

/** A path inside one output item: the value itself when inline, a reference into the blob otherwise. */
function atPath(item: OutputItem, path: string[]): unknown {
  return item.kind === 'inline' ? getPath(item.value, path) : new BlobRef(item.key, path);
}

function outputOf(node: ParsedNode, name: string, outputs: (nodeName: string) => NodeOutput): NodeOutput {
  const out = outputs(name);
  // A non-batch node always yields one item; anything else is an engine bug, not user error.
  if (!out.batch && out.items.length !== 1) {
    throw new WeftError(
      Status.INTERNAL,
      `node "${node.nodeName}": output of non-batch node "${name}" has ${out.items.length} items, expected 1`,
    );
  }
  return out;
}

/** The value a `@...` reference stands for. */
function resolveValue(
  node: ParsedNode,
  ref: InputRef,
  flowInput: Record<string, unknown>,
  outputs: (nodeName: string) => NodeOutput,
): unknown {
  if (ref.source === 'flowInput') return getPath(flowInput, ref.path);
  const out = outputOf(node, ref.node!, outputs);
  // A batch producer is read as the array of its items: HKube's reduce.
  return out.batch ? out.items.map((item) => atPath(item, ref.path)) : atPath(out.items[0]!, ref.path);
}

/** The elements a `#@...` reference fans out over. */
function resolveBatch(
  node: ParsedNode,
  ref: InputRef,
  flowInput: Record<string, unknown>,
  outputs: (nodeName: string) => NodeOutput,
): unknown[] {
  const notArray = (got: string): WeftError =>
    invalid(ref.field, `node "${node.nodeName}": batch source "${formatRef(ref)}" is not an array (got ${got})`);
  const fromValue = (value: unknown): unknown[] => {
    if (!Array.isArray(value)) throw notArray(shapeOf(value).type);
    return value;
  };
  if (ref.source === 'flowInput') return fromValue(getPath(flowInput, ref.path));
  const out = outputOf(node, ref.node!, outputs);
  if (out.batch) return out.items.map((item) => atPath(item, ref.path));
  const item = out.items[0]!;
  if (item.kind === 'inline') return fromValue(getPath(item.value, ref.path));
  // The engine never reads blobs: the producer reported the shape of each save path.
  const shape = item.meta[ref.path.join('.')];
  if (!shape) throw notArray('no shape metadata');
  if (shape.type !== 'array') throw notArray(shape.type);
  return Array.from({ length: shape.size }, (_, i) => new BlobRef(item.key, [...ref.path, i]));
}

type Slot = RefSlot | LiteralBatchSlot;

/**
 * Builds the input arrays of a node's tasks: one per batch element (or
 * combination), or exactly one for a non-batch node.
 *
 * - `@flowInput.a.b` reads the flow input; `@A.x` reads A's output (a
 *   {@link BlobRef} into it when A's output is in blob storage); a batch
 *   producer reads as the array of all its items.
 * - `#@...` and `#[...]` fan out. With `batchOperation: "indexed"` several
 *   batch sources are zipped by index, the longest decides the count, and
 *   shorter ones give `undefined`. With `"cartesian"` there is one task per
 *   combination, in input order with the first source outermost (`#[1,2]`,
 *   `#["a","b"]` gives 1a, 1b, 2a, 2b); each source counts once per
 *   appearance, and more than {@link MAX_BATCH_ITEMS} combinations is an error.
 * - An empty batch gives no tasks (the engine marks the node skipped).
 * - A wait-any node (`*@`) gets one task per item of its `*@` parents, as
 *   {@link buildWaitAnyInput} builds them: the same inputs an engine that
 *   starts them one by one would give.
 *
 * @throws WeftError INVALID_ARGUMENT, on the reference's field, when a batch
 *   source is not an array; the engine fails the job with it.
 */
export function buildTaskInputs(
  node: ParsedNode,
  flowInput: Record<string, unknown>,
  outputs: (nodeName: string) => NodeOutput,
): { batch: boolean; inputs: unknown[][] } {
  if (node.waitAnyParents.length > 0) {
    const count = waitAnyCount(node, outputs);
    const inputs = Array.from({ length: count }, (_, i) => buildWaitAnyInput(node, i, flowInput, outputs));
    return { batch: true, inputs };
  }
  // Each slot is resolved once, however many tasks it ends up in.
  const values = new Map<RefSlot, unknown>();
  const batches = new Map<Slot, unknown[]>();
  forEachSlot(node.input, (slot) => {
    if (slot instanceof LiteralBatchSlot) batches.set(slot, slot.items);
    else if (slot.ref.mode === 'batch') batches.set(slot, resolveBatch(node, slot.ref, flowInput, outputs));
    else values.set(slot, resolveValue(node, slot.ref, flowInput, outputs));
  });
  const build = (pick: (slot: Slot) => unknown): unknown[] =>
    substitute(node.input, (slot) => (batches.has(slot) ? pick(slot) : values.get(slot as RefSlot))) as unknown[];
  if (!node.isBatch) return { batch: false, inputs: [build(() => undefined)] };
  if (node.batchOperation === 'cartesian') return { batch: true, inputs: cartesian(node, batches, build) };
  const count = Math.max(0, ...[...batches.values()].map((b) => b.length));
  const inputs = Array.from({ length: count }, (_, i) => build((slot) => batches.get(slot)![i]));
  return { batch: true, inputs };
}

/** One input per combination of the batch sources, the first source outermost. */
function cartesian(
  node: ParsedNode,
  batches: Map<Slot, unknown[]>,
  build: (pick: (slot: Slot) => unknown) => unknown[],
): unknown[][] {
  const sources = [...batches.entries()];
  const total = sources.reduce((n, [, items]) => n * items.length, 1);
  if (total > MAX_BATCH_ITEMS) {
    throw invalid(
      `${node.field}.batchOperation`,
      `node "${node.nodeName}": the cartesian product of its ${sources.length} batch inputs has ${total} combinations; at most ${MAX_BATCH_ITEMS} are allowed`,
    );
  }
  return Array.from({ length: total }, (_, k) => {
    const picked = new Map<Slot, unknown>();
    let rest = k;
    for (let s = sources.length - 1; s >= 0; s--) {
      const [slot, items] = sources[s]!;
      picked.set(slot, items[rest % items.length]);
      rest = Math.floor(rest / items.length);
    }
    return build((slot) => picked.get(slot));
  });
}

/**
 * How many tasks a wait-any node runs: the item count of its `*@` parents
 * (their `items.length`, holes included), which must all agree.
 *
 * @throws WeftError INVALID_ARGUMENT, on the field of the first `*@` input
 *   whose parent has a different count; INTERNAL when the node has no `*@` input.
 */
export function waitAnyCount(node: ParsedNode, outputs: (nodeName: string) => NodeOutput): number {
  const slots: RefSlot[] = [];
  forEachSlot(node.input, (slot) => {
    if (slot instanceof RefSlot && slot.ref.mode === 'waitAny') slots.push(slot);
  });
  const [first, ...others] = slots;
  if (!first) throw new WeftError(Status.INTERNAL, `node "${node.nodeName}" has no wait-any input`);
  const count = outputs(first.ref.node!).items.length;
  for (const slot of others) {
    const n = outputs(slot.ref.node!).items.length;
    if (n !== count) {
      throw invalid(
        slot.ref.field,
        `node "${node.nodeName}": wait-any inputs "${formatRef(first.ref)}" (${count} items) and "${formatRef(slot.ref)}" (${n} items) differ in length; "*@" inputs are matched by index`,
      );
    }
  }
  return count;
}

/**
 * The input of a wait-any node's task for item `itemIndex`: each `*@A.path`
 * slot becomes item `itemIndex` of A at `path` (the inline value, or a
 * {@link BlobRef} into the item's blob); every other slot resolves as for a
 * non-batch node, so its parents must be complete. Only item `itemIndex` of
 * each `*@` parent must be present in `outputs`.
 *
 * @throws WeftError INTERNAL when that item is missing.
 */
export function buildWaitAnyInput(
  node: ParsedNode,
  itemIndex: number,
  flowInput: Record<string, unknown>,
  outputs: (nodeName: string) => NodeOutput,
): unknown[] {
  return substitute(node.input, (slot) => {
    if (slot instanceof LiteralBatchSlot || slot.ref.mode === 'batch') {
      const field = slot instanceof LiteralBatchSlot ? slot.field : slot.ref.field;
      throw new WeftError(Status.INTERNAL, `node "${node.nodeName}": batch input at ${field} in a wait-any node`);
    }
    if (slot.ref.mode === 'value') return resolveValue(node, slot.ref, flowInput, outputs);
    const parent = slot.ref.node!;
    const out = outputs(parent);
    const item = out.items[itemIndex];
    if (!item) {
      throw new WeftError(
        Status.INTERNAL,
        `node "${node.nodeName}": item ${itemIndex} of "${parent}" is not available (${out.items.length} items)`,
      );
    }
    return atPath(item, slot.ref.path);
  }) as unknown[];
}

/**
 * The parsed pipeline as a descriptor without `pipeline` nodes: sub-pipelines
 * inlined, flowInput merged, defaults filled in. Parsing it again (no lookup
 * needed) gives the same graph, so a job can be stored and recovered without
 * depending on the stored pipelines it was built from.
 */
export function toFlatDescriptor(p: ParsedPipeline): Descriptor {
  return {
    name: p.name,
    nodes: p.nodes.map((n): DescriptorNode => {
      const input = substitute(n.input, (slot) => {
        if (slot instanceof RefSlot) return formatRef(slot.ref);
        return slot.range ? `#[${slot.range.start}...${slot.range.end}]` : `#${JSON.stringify(slot.items)}`;
      }) as unknown[];
      return {
        nodeName: n.nodeName,
        ...(n.kind === 'algorithm' ? { algorithmName: n.algorithmName } : {}),
        kind: n.kind,
        input,
        retry: { ...n.retry },
        ttl: n.ttl,
        batchOperation: n.batchOperation,
        ...(Object.keys(n.spec).length > 0 ? { spec: n.spec } : {}),
      };
    }),
    flowInput: p.flowInput,
    options: {
      ...p.options,
      ...(p.options.concurrentPipelines ? { concurrentPipelines: { ...p.options.concurrentPipelines } } : {}),
    },
    webhooks: { ...p.webhooks },
    triggers: { ...(p.triggers.cron ? { cron: { ...p.triggers.cron } } : {}), pipelines: [...p.triggers.pipelines] },
    priority: p.priority,
    tags: [...p.tags],
  };
}
