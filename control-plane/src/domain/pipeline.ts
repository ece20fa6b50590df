/**
 * Pure domain logic for HKube-style pipeline descriptors: validation, the
 * input reference grammar, the node graph, and the fan-out of a node's input
 * into one input array per task. Nothing here does I/O; the engine feeds in
 * node outputs and gets plain values back.
 * @packageDocumentation
 */
import { BlobRef, Status, WeftError, getPath, invalid, shapeOf } from '@weft/common';

/** One node of a pipeline descriptor, as submitted. */
export interface DescriptorNode {
  nodeName: string;
  algorithmName: string;
  input?: unknown[];
  kind?: string;
}

/** A pipeline descriptor, as submitted. */
export interface Descriptor {
  name: string;
  nodes: DescriptorNode[];
  flowInput?: Record<string, unknown>;
}

/** A reference found in a node's input. */
export interface InputRef {
  source: 'flowInput' | 'node';
  /** Set when `source === 'node'`. */
  node?: string;
  /** Keys after the first segment: `"@A.x.y"` gives `['x','y']`, `"@flowInput.a.b"` gives `['a','b']`. */
  path: string[];
  /** `'#@...'` is batch, `'@...'` is value. */
  mode: 'value' | 'batch';
  /** Where the reference was found, e.g. `"nodes[1].input[2].cfg.items[0]"`. */
  field: string;
}

/** Stands in a parsed input template for a `@...` / `#@...` reference string. */
export class RefSlot {
  constructor(readonly ref: InputRef) {}
}

/** Stands in a parsed input template for a `#[...]` literal batch. */
export class LiteralBatchSlot {
  constructor(
    readonly items: unknown[],
    readonly field: string,
  ) {}
}

/** A validated node with its place in the graph. */
export interface ParsedNode {
  nodeName: string;
  algorithmName: string;
  /** Position in the descriptor's `nodes`. */
  index: number;
  /** The node's input with every reference replaced by a {@link RefSlot} or {@link LiteralBatchSlot} (deep copy). */
  input: unknown[];
  /** Distinct node names referenced (not flowInput), in first-seen order. */
  parents: string[];
  /** Distinct nodes that reference this one, in descriptor order. */
  children: string[];
  /** True when any batch-mode reference or literal batch appears in the input. */
  isBatch: boolean;
  /** Dot-joined paths ('' for the whole value) that children batch over in this node's output. */
  savePaths: string[];
}

/** A validated pipeline. */
export interface ParsedPipeline {
  name: string;
  /** In descriptor order. */
  nodes: ParsedNode[];
  /** Topological order; ties broken by descriptor order. */
  order: string[];
  byName: Map<string, ParsedNode>;
  /** Nodes without children, in descriptor order. */
  leaves: string[];
}

/**
 * What a finished node produced. Each item is a value kept in memory, or a blob
 * reference plus the shape metadata the producer reported for its save paths.
 */
export type OutputItem =
  | { kind: 'inline'; value: unknown }
  | { kind: 'blob'; key: string; meta: Record<string, { type: string; size: number }> };

/** Items in batch order; a non-batch node has exactly one item. */
export interface NodeOutput {
  batch: boolean;
  items: OutputItem[];
}

/** The name that `@flowInput...` references use; no node may take it. */
export const FLOW_INPUT = 'flowInput';

/** Renders a reference back to its input syntax, e.g. `#@A.x`. */
export function formatRef(ref: InputRef): string {
  const head = ref.source === 'flowInput' ? FLOW_INPUT : (ref.node ?? '');
  const tail = ref.path.length > 0 ? `.${ref.path.join('.')}` : '';
  return `${ref.mode === 'batch' ? '#@' : '@'}${head}${tail}`;
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

const WHITESPACE = /\s/;
// HKube's range syntax, `#[0...600]`; matched before JSON so the error says what is missing.
const RANGE = /^#\[\s*-?\d+(\.\d+)?\s*\.\.\.\s*-?\d+(\.\d+)?\s*\]$/;

/** What one input string turned out to be. */
type ParsedString =
  | { kind: 'plain' }
  | { kind: 'ref'; name: string; path: string[]; mode: 'value' | 'batch' }
  | { kind: 'literal'; items: unknown[] };

/** Parses one input string; throws `invalid(field, ...)` for malformed syntax. */
function parseInputString(s: string, field: string, nodeName: string): ParsedString {
  const bad = (why: string): WeftError => invalid(field, `node "${nodeName}": ${why}`);
  if (s.startsWith('*@') || s.startsWith('*#@')) {
    throw bad(`wait-any input "${s}" is not supported yet`);
  }
  if (s.startsWith('#[')) {
    if (RANGE.test(s)) throw bad(`range batch "${s}" is not supported yet`);
    let items: unknown;
    try {
      items = JSON.parse(s.slice(1));
    } catch (err) {
      throw bad(`malformed literal batch "${s}": ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!Array.isArray(items)) throw bad(`malformed literal batch "${s}": not a JSON array`);
    return { kind: 'literal', items };
  }
  let mode: 'value' | 'batch';
  let body: string;
  if (s.startsWith('#@')) {
    mode = 'batch';
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

/**
 * Validates a descriptor and parses it into a graph with input templates.
 *
 * Every error is `INVALID_ARGUMENT` naming the offending field, e.g.
 * `nodes[1].input[0]: node "Multiply" references unknown node "Rnage"`;
 * cycles are reported on `nodes` as `cycle: A -> B -> A`.
 *
 * @param isKnownAlgorithm decides whether `algorithmName` exists; kept as a
 *   callback so this module stays free of storage.
 */
export function parsePipeline(d: Descriptor, isKnownAlgorithm: (name: string) => boolean): ParsedPipeline {
  if (!isPlainObject(d)) throw invalid('descriptor', 'must be an object');
  const name = requireName(d.name, 'name');
  if (!Array.isArray(d.nodes) || d.nodes.length === 0) throw invalid('nodes', 'at least one node is required');
  const flowInput: unknown = d.flowInput ?? {};
  if (!isPlainObject(flowInput)) throw invalid('flowInput', 'must be an object');

  // First pass: names only, so that references in the second pass can point forwards.
  const indexOf = new Map<string, number>();
  const heads: { nodeName: string; algorithmName: string; input: unknown[] }[] = [];
  d.nodes.forEach((raw: unknown, i) => {
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
    // HKube's other kinds (output, pipeline, debug...) arrive later; running
    // them as plain algorithms would silently mean something else.
    if (raw.kind !== undefined && raw.kind !== '' && raw.kind !== 'algorithm') {
      throw invalid(
        `${at}.kind`,
        `node "${nodeName}": kind ${JSON.stringify(raw.kind)} is not supported yet (supported: algorithm)`,
      );
    }
    const algorithmName = requireName(raw.algorithmName, `${at}.algorithmName`);
    if (!isKnownAlgorithm(algorithmName)) {
      throw invalid(`${at}.algorithmName`, `node "${nodeName}" uses unknown algorithm "${algorithmName}"`);
    }
    const input = raw.input ?? [];
    if (!Array.isArray(input)) throw invalid(`${at}.input`, `node "${nodeName}": input must be an array`);
    heads.push({ nodeName, algorithmName, input });
  });

  // Second pass: input templates, parents, batch flags, and where children point.
  const selfRefs = new Map<string, string>();
  const batchPathsOf = new Map<string, string[]>();
  const nodes: ParsedNode[] = heads.map((head, i) => {
    const parents: string[] = [];
    let isBatch = false;
    const walk = (value: unknown, field: string): unknown => {
      if (typeof value === 'string') {
        const parsed = parseInputString(value, field, head.nodeName);
        if (parsed.kind === 'plain') return value;
        if (parsed.kind === 'literal') {
          isBatch = true;
          return new LiteralBatchSlot(parsed.items, field);
        }
        if (parsed.mode === 'batch') isBatch = true;
        let ref: InputRef;
        if (parsed.name === FLOW_INPUT) {
          const top = parsed.path[0];
          if (top !== undefined && !Object.hasOwn(flowInput, top)) {
            throw invalid(field, `node "${head.nodeName}" references "${value}" but flowInput has no key "${top}"`);
          }
          ref = { source: 'flowInput', path: parsed.path, mode: parsed.mode, field };
        } else {
          if (!indexOf.has(parsed.name)) {
            const extra = parsed.name === 'dataSource' ? ' (data source inputs are not supported yet)' : '';
            throw invalid(field, `node "${head.nodeName}" references unknown node "${parsed.name}"${extra}`);
          }
          if (parsed.name === head.nodeName && !selfRefs.has(head.nodeName)) selfRefs.set(head.nodeName, field);
          if (!parents.includes(parsed.name)) parents.push(parsed.name);
          if (parsed.mode === 'batch') {
            const paths = batchPathsOf.get(parsed.name) ?? [];
            const joined = parsed.path.join('.');
            if (!paths.includes(joined)) paths.push(joined);
            batchPathsOf.set(parsed.name, paths);
          }
          ref = { source: 'node', node: parsed.name, path: parsed.path, mode: parsed.mode, field };
        }
        return new RefSlot(ref);
      }
      if (Array.isArray(value)) return value.map((v, k) => walk(v, `${field}[${k}]`));
      if (isPlainObject(value)) {
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(value)) out[k] = walk(v, fieldKey(field, k));
        return out;
      }
      return value;
    };
    const input = head.input.map((v, k) => walk(v, `nodes[${i}].input[${k}]`));
    return {
      nodeName: head.nodeName,
      algorithmName: head.algorithmName,
      index: i,
      input,
      parents,
      children: [],
      isBatch,
      savePaths: [],
    };
  });

  const byName = new Map(nodes.map((n) => [n.nodeName, n]));
  for (const node of nodes) {
    for (const p of node.parents) {
      const parent = byName.get(p);
      if (parent && !parent.children.includes(node.nodeName)) parent.children.push(node.nodeName);
    }
  }
  for (const node of nodes) node.savePaths = batchPathsOf.get(node.nodeName) ?? [];

  const firstSelf = nodes.find((n) => selfRefs.has(n.nodeName));
  if (firstSelf) {
    const n = firstSelf.nodeName;
    throw invalid('nodes', `cycle: ${n} -> ${n} (${selfRefs.get(n)} references node "${n}" itself)`);
  }
  const order = topologicalOrder(nodes, byName);
  const leaves = nodes.filter((n) => n.children.length === 0).map((n) => n.nodeName);
  return { name, nodes, order, byName, leaves };
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
    for (const [k, v] of Object.entries(template)) out[k] = substitute(v, fill);
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

/**
 * Builds the input arrays of a node's tasks: one per batch element, or exactly
 * one for a non-batch node.
 *
 * - `@flowInput.a.b` reads the flow input; `@A.x` reads A's output (a
 *   {@link BlobRef} into it when A's output is in blob storage); a batch
 *   producer reads as the array of all its items.
 * - `#@...` and `#[...]` fan out; several batch sources are zipped by index,
 *   the longest decides the count, and shorter ones give `undefined`.
 * - An empty batch gives no tasks (the engine marks the node skipped).
 *
 * @throws WeftError INVALID_ARGUMENT, on the reference's field, when a batch
 *   source is not an array; the engine fails the job with it.
 */
export function buildTaskInputs(
  node: ParsedNode,
  flowInput: Record<string, unknown>,
  outputs: (nodeName: string) => NodeOutput,
): { batch: boolean; inputs: unknown[][] } {
  // Each slot is resolved once, however many tasks it ends up in.
  const values = new Map<RefSlot, unknown>();
  const batches = new Map<RefSlot | LiteralBatchSlot, unknown[]>();
  forEachSlot(node.input, (slot) => {
    if (slot instanceof LiteralBatchSlot) batches.set(slot, slot.items);
    else if (slot.ref.mode === 'batch') batches.set(slot, resolveBatch(node, slot.ref, flowInput, outputs));
    else values.set(slot, resolveValue(node, slot.ref, flowInput, outputs));
  });
  const fillAt =
    (i: number) =>
    (slot: RefSlot | LiteralBatchSlot): unknown => {
      const elements = batches.get(slot);
      return elements ? elements[i] : values.get(slot as RefSlot);
    };
  if (!node.isBatch) return { batch: false, inputs: [substitute(node.input, fillAt(0)) as unknown[]] };
  const count = Math.max(0, ...[...batches.values()].map((b) => b.length));
  const inputs = Array.from({ length: count }, (_, i) => substitute(node.input, fillAt(i)) as unknown[]);
  return { batch: true, inputs };
}
