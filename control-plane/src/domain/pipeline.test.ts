import { describe, it, expect } from 'vitest';
import { BlobRef, Status, WeftError } from '@weft/common';
import {
  LiteralBatchSlot,
  RefSlot,
  buildTaskInputs,
  forEachSlot,
  formatRef,
  parsePipeline,
  type Descriptor,
  type DescriptorNode,
  type NodeOutput,
  type OutputItem,
  type ParsedNode,
} from './pipeline.js';

const known = (): boolean => true;

const numbers = (): Descriptor => ({
  name: 'numbers',
  flowInput: { data: [1, 2, 3, 4, 5], mul: 2 },
  nodes: [
    { nodeName: 'Range', algorithmName: 'range', input: ['@flowInput.data'] },
    { nodeName: 'Multiply', algorithmName: 'multiply', input: ['#@Range', '@flowInput.mul'] },
    { nodeName: 'Reduce', algorithmName: 'reduce', input: ['@Multiply'] },
  ],
});

function pipe(nodes: DescriptorNode[], flowInput: Record<string, unknown> = {}) {
  return parsePipeline({ name: 'p', nodes, flowInput }, known);
}

/** Parses and returns the node named `name`. */
function nodeOf(nodes: DescriptorNode[], name: string, flowInput: Record<string, unknown> = {}): ParsedNode {
  const n = pipe(nodes, flowInput).byName.get(name);
  if (!n) throw new Error(`no node ${name}`);
  return n;
}

const inline = (value: unknown): OutputItem => ({ kind: 'inline', value });
const blob = (key: string, meta: Record<string, { type: string; size: number }> = {}): OutputItem => ({
  kind: 'blob',
  key,
  meta,
});
const single = (item: OutputItem): NodeOutput => ({ batch: false, items: [item] });
const batchOf = (...items: OutputItem[]): NodeOutput => ({ batch: true, items });
const outs =
  (map: Record<string, NodeOutput>) =>
  (name: string): NodeOutput => {
    const o = map[name];
    if (!o) throw new Error(`no output for ${name}`);
    return o;
  };

/** Runs fn, expecting an INVALID_ARGUMENT WeftError on `field` whose message matches `re`. */
function expectInvalid(fn: () => unknown, field: string, re: RegExp): WeftError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(WeftError);
  const e = caught as WeftError;
  expect(e.code).toBe(Status.INVALID_ARGUMENT);
  expect(e.field).toBe(field);
  expect(e.message.startsWith(`${field}: `)).toBe(true);
  expect(e.message).toMatch(re);
  return e;
}

describe('parsePipeline: the numbers pipeline', () => {
  const p = parsePipeline(numbers(), known);
  const [range, multiply, reduce] = p.nodes as [ParsedNode, ParsedNode, ParsedNode];

  it('keeps name, descriptor order, indexes and algorithm names', () => {
    expect(p.name).toBe('numbers');
    expect(p.nodes.map((n) => [n.nodeName, n.algorithmName, n.index])).toEqual([
      ['Range', 'range', 0],
      ['Multiply', 'multiply', 1],
      ['Reduce', 'reduce', 2],
    ]);
    expect([...p.byName.keys()]).toEqual(['Range', 'Multiply', 'Reduce']);
    expect(p.byName.get('Multiply')).toBe(multiply);
  });

  it('orders topologically and finds the leaf', () => {
    expect(p.order).toEqual(['Range', 'Multiply', 'Reduce']);
    expect(p.leaves).toEqual(['Reduce']);
  });

  it('links parents and children (flowInput is not a parent)', () => {
    expect(range.parents).toEqual([]);
    expect(range.children).toEqual(['Multiply']);
    expect(multiply.parents).toEqual(['Range']);
    expect(multiply.children).toEqual(['Reduce']);
    expect(reduce.parents).toEqual(['Multiply']);
    expect(reduce.children).toEqual([]);
  });

  it('flags batch nodes and save paths', () => {
    expect([range.isBatch, multiply.isBatch, reduce.isBatch]).toEqual([false, true, false]);
    expect(range.savePaths).toEqual(['']);
    expect(multiply.savePaths).toEqual([]);
    expect(reduce.savePaths).toEqual([]);
  });

  it('replaces references by RefSlots carrying source, path, mode and field', () => {
    expect(range.input).toEqual([
      new RefSlot({ source: 'flowInput', path: ['data'], mode: 'value', field: 'nodes[0].input[0]' }),
    ]);
    expect(multiply.input[0]).toBeInstanceOf(RefSlot);
    expect((multiply.input[0] as RefSlot).ref).toEqual({
      source: 'node',
      node: 'Range',
      path: [],
      mode: 'batch',
      field: 'nodes[1].input[0]',
    });
    expect((multiply.input[1] as RefSlot).ref).toEqual({
      source: 'flowInput',
      path: ['mul'],
      mode: 'value',
      field: 'nodes[1].input[1]',
    });
    expect((reduce.input[0] as RefSlot).ref).toEqual({
      source: 'node',
      node: 'Multiply',
      path: [],
      mode: 'value',
      field: 'nodes[2].input[0]',
    });
  });

  it('builds Range, Multiply and Reduce task inputs', () => {
    const flowInput = { data: [1, 2, 3, 4, 5], mul: 2 };
    expect(buildTaskInputs(range, flowInput, outs({}))).toEqual({ batch: false, inputs: [[[1, 2, 3, 4, 5]]] });
    const m = buildTaskInputs(multiply, flowInput, outs({ Range: single(inline([1, 2, 3, 4, 5])) }));
    expect(m).toEqual({
      batch: true,
      inputs: [
        [1, 2],
        [2, 2],
        [3, 2],
        [4, 2],
        [5, 2],
      ],
    });
    const r = buildTaskInputs(
      reduce,
      flowInput,
      outs({ Multiply: batchOf(...[2, 4, 6, 8, 10].map((v) => inline(v))) }),
    );
    expect(r).toEqual({ batch: false, inputs: [[[2, 4, 6, 8, 10]]] });
  });

  it('does not share structure with the descriptor', () => {
    const d = numbers();
    d.nodes[0]!.input = [{ a: [1, { b: 2 }] }];
    const parsed = parsePipeline(d, known);
    const tpl = parsed.nodes[0]!.input[0] as { a: unknown[] };
    expect(tpl).toEqual({ a: [1, { b: 2 }] });
    expect(tpl).not.toBe(d.nodes[0]!.input[0]);
    expect(tpl.a).not.toBe((d.nodes[0]!.input[0] as { a: unknown[] }).a);
  });
});

describe('parsePipeline: graph shape', () => {
  it('orders a diamond stably by descriptor order, not by name', () => {
    const p = pipe([
      { nodeName: 'Z', algorithmName: 'a', input: ['@C', '@B'] },
      { nodeName: 'C', algorithmName: 'a', input: ['@A'] },
      { nodeName: 'B', algorithmName: 'a', input: ['@A'] },
      { nodeName: 'A', algorithmName: 'a', input: [] },
      { nodeName: 'Solo', algorithmName: 'a' },
    ]);
    expect(p.order).toEqual(['A', 'C', 'B', 'Z', 'Solo']);
    expect(p.byName.get('Z')!.parents).toEqual(['C', 'B']);
    expect(p.byName.get('A')!.children).toEqual(['C', 'B']);
    expect(p.leaves).toEqual(['Z', 'Solo']);
    expect(p.byName.get('Solo')!.input).toEqual([]);
  });

  it('prefers the earliest ready node at every step', () => {
    const p = pipe([
      { nodeName: 'D', algorithmName: 'a', input: ['@B'] },
      { nodeName: 'C', algorithmName: 'a', input: [] },
      { nodeName: 'B', algorithmName: 'a', input: [] },
      { nodeName: 'A', algorithmName: 'a', input: ['@C'] },
    ]);
    expect(p.order).toEqual(['C', 'B', 'D', 'A']);
  });

  it('dedupes parents, children and save paths, keeping first-seen order', () => {
    const p = pipe([
      { nodeName: 'A', algorithmName: 'a' },
      { nodeName: 'B', algorithmName: 'a' },
      { nodeName: 'C', algorithmName: 'a', input: ['@B', '#@A.x', { k: '@A' }, '#@A.x', '#@A', '#@B.y.0'] },
      { nodeName: 'D', algorithmName: 'a', input: ['#@A.z', '@C'] },
    ]);
    expect(p.byName.get('C')!.parents).toEqual(['B', 'A']);
    expect(p.byName.get('A')!.children).toEqual(['C', 'D']);
    expect(p.byName.get('A')!.savePaths).toEqual(['x', '', 'z']);
    expect(p.byName.get('B')!.savePaths).toEqual(['y.0']);
    expect(p.byName.get('C')!.savePaths).toEqual([]);
    expect(p.byName.get('D')!.parents).toEqual(['A', 'C']);
  });

  it('value references do not add save paths or make a node batch', () => {
    const p = pipe([
      { nodeName: 'A', algorithmName: 'a' },
      { nodeName: 'B', algorithmName: 'a', input: ['@A.x', 'plain', 3, null, '#notabatch', 'a@b'] },
    ]);
    const b = p.byName.get('B')!;
    expect(b.isBatch).toBe(false);
    expect(p.byName.get('A')!.savePaths).toEqual([]);
    expect(b.input.slice(1)).toEqual(['plain', 3, null, '#notabatch', 'a@b']);
  });

  it('a batch ref after a value ref inside one object still makes the node batch', () => {
    const b = nodeOf(
      [
        { nodeName: 'A', algorithmName: 'a' },
        { nodeName: 'B', algorithmName: 'a', input: [{ x: '#@A', y: '@A' }] },
      ],
      'B',
    );
    expect(b.isBatch).toBe(true);
  });

  it('finds nested references and names their fields', () => {
    const b = nodeOf(
      [
        { nodeName: 'A', algorithmName: 'a' },
        {
          nodeName: 'B',
          algorithmName: 'a',
          input: [1, 'x', { cfg: { items: ['@A.p', 7] }, 'odd key': '#@flowInput.arr' }, [['#[1,2]']]],
        },
      ],
      'B',
      { arr: [] },
    );
    const fields: string[] = [];
    forEachSlot(b.input, (s) => fields.push(s instanceof RefSlot ? `${formatRef(s.ref)} ${s.ref.field}` : s.field));
    expect(fields).toEqual([
      '@A.p nodes[1].input[2].cfg.items[0]',
      '#@flowInput.arr nodes[1].input[2]["odd key"]',
      'nodes[1].input[3][0][0]',
    ]);
    expect(b.input[0]).toBe(1);
    expect(b.input[1]).toBe('x');
    expect((b.input[2] as { cfg: { items: unknown[] } }).cfg.items[1]).toBe(7);
    expect(b.isBatch).toBe(true);
  });

  it('leaves binary values untouched', () => {
    const bytes = new Uint8Array([64, 65]);
    const buf = Buffer.from('@A');
    const b = nodeOf([{ nodeName: 'B', algorithmName: 'a', input: [bytes, { buf }] }], 'B');
    expect(b.input[0]).toBe(bytes);
    expect((b.input[1] as { buf: Buffer }).buf).toBe(buf);
    expect(b.parents).toEqual([]);
  });

  it('parses literal batches and whole-flowInput references', () => {
    const b = nodeOf(
      [{ nodeName: 'B', algorithmName: 'a', input: ['#[1, "two", {"three": 3}]', '#[]', '@flowInput'] }],
      'B',
    );
    expect(b.input[0]).toEqual(new LiteralBatchSlot([1, 'two', { three: 3 }], 'nodes[0].input[0]'));
    expect(b.input[1]).toEqual(new LiteralBatchSlot([], 'nodes[0].input[1]'));
    expect((b.input[2] as RefSlot).ref).toEqual({
      source: 'flowInput',
      path: [],
      mode: 'value',
      field: 'nodes[0].input[2]',
    });
    expect(b.isBatch).toBe(true);
  });

  it('formatRef renders every form back', () => {
    const f = (ref: Parameters<typeof formatRef>[0]) => formatRef(ref);
    expect(f({ source: 'node', node: 'A', path: [], mode: 'value', field: '' })).toBe('@A');
    expect(f({ source: 'node', node: 'A', path: ['x', '0'], mode: 'batch', field: '' })).toBe('#@A.x.0');
    expect(f({ source: 'flowInput', path: ['a'], mode: 'batch', field: '' })).toBe('#@flowInput.a');
  });

  it('passes the algorithm name to isKnownAlgorithm', () => {
    const asked: string[] = [];
    parsePipeline(numbers(), (n) => (asked.push(n), true));
    expect(asked).toEqual(['range', 'multiply', 'reduce']);
  });
});

describe('parsePipeline: validation errors', () => {
  const A: DescriptorNode = { nodeName: 'A', algorithmName: 'a' };

  it('name', () => {
    expectInvalid(() => parsePipeline({ name: '', nodes: [A] }, known), 'name', /required/);
    expectInvalid(() => parsePipeline({ nodes: [A] } as unknown as Descriptor, known), 'name', /required/);
    expectInvalid(() => parsePipeline({ name: '  ', nodes: [A] }, known), 'name', /required/);
  });

  it('descriptor and flowInput shapes', () => {
    expectInvalid(() => parsePipeline(null as unknown as Descriptor, known), 'descriptor', /object/);
    expectInvalid(
      () => parsePipeline({ name: 'p', nodes: [A], flowInput: [1] as unknown as Record<string, unknown> }, known),
      'flowInput',
      /must be an object/,
    );
  });

  it('nodes', () => {
    expectInvalid(() => parsePipeline({ name: 'p', nodes: [] }, known), 'nodes', /at least one node/);
    expectInvalid(() => parsePipeline({ name: 'p' } as unknown as Descriptor, known), 'nodes', /at least one/);
    expectInvalid(() => pipe([A, 'x' as unknown as DescriptorNode]), 'nodes[1]', /must be an object/);
  });

  it('missing nodeName / algorithmName', () => {
    expectInvalid(() => pipe([A, { algorithmName: 'a' } as DescriptorNode]), 'nodes[1].nodeName', /required/);
    expectInvalid(() => pipe([A, { nodeName: '', algorithmName: 'a' }]), 'nodes[1].nodeName', /required/);
    expectInvalid(() => pipe([A, { nodeName: 'B' } as DescriptorNode]), 'nodes[1].algorithmName', /required/);
    expectInvalid(() => pipe([{ nodeName: 'B', algorithmName: '' }]), 'nodes[0].algorithmName', /required/);
  });

  it('duplicate and reserved node names, and names refs could not reach', () => {
    expectInvalid(
      () => pipe([A, { nodeName: 'B', algorithmName: 'a' }, { nodeName: 'A', algorithmName: 'b' }]),
      'nodes[2].nodeName',
      /duplicate node name "A" \(also nodes\[0\]\)/,
    );
    expectInvalid(
      () => pipe([A, { nodeName: 'flowInput', algorithmName: 'a' }]),
      'nodes[1].nodeName',
      /"flowInput" is a reserved name/,
    );
    for (const bad of ['a.b', 'a b', '@a', '#a']) {
      expectInvalid(() => pipe([{ nodeName: bad, algorithmName: 'a' }]), 'nodes[0].nodeName', /must not contain/);
    }
  });

  it('unknown algorithm', () => {
    const e = expectInvalid(
      () => parsePipeline(numbers(), (n) => n !== 'multiply'),
      'nodes[1].algorithmName',
      /node "Multiply" uses unknown algorithm "multiply"/,
    );
    expect(e.message).toBe('nodes[1].algorithmName: node "Multiply" uses unknown algorithm "multiply"');
  });

  it('input not an array', () => {
    expectInvalid(
      () => pipe([{ nodeName: 'A', algorithmName: 'a', input: '@B' as unknown as unknown[] }]),
      'nodes[0].input',
      /node "A": input must be an array/,
    );
  });

  it('unknown node, with the exact message', () => {
    const d = numbers();
    d.nodes[1]!.input = ['#@Rnage', '@flowInput.mul'];
    const e = expectInvalid(() => parsePipeline(d, known), 'nodes[1].input[0]', /unknown node "Rnage"/);
    expect(e.message).toBe('nodes[1].input[0]: node "Multiply" references unknown node "Rnage"');
    expect(() => parsePipeline(d, known)).toThrow(/nodes\[1\]\.input\[0\]/);
  });

  it('unknown node deep inside an object', () => {
    expectInvalid(
      () => pipe([A, { nodeName: 'B', algorithmName: 'a', input: [1, { cfg: { items: [0, '@Nope.x'] } }] }]),
      'nodes[1].input[1].cfg.items[1]',
      /node "B" references unknown node "Nope"/,
    );
  });

  it('data source references say they are not supported', () => {
    expectInvalid(
      () => pipe([{ nodeName: 'A', algorithmName: 'a', input: ['@dataSource.images'] }]),
      'nodes[0].input[0]',
      /unknown node "dataSource" \(data source inputs are not supported yet\)/,
    );
  });

  it.each([
    ['@', /missing node name/],
    ['#@', /missing node name/],
    ['@A..b', /empty path segment/],
    ['@A.', /empty path segment/],
    ['@.x', /empty path segment/],
    ['#@A.x.', /empty path segment/],
    ['@ A', /whitespace/],
    ['@A.x y', /whitespace/],
    ['#@A\t', /whitespace/],
    ['#[1,2', /malformed literal batch "#\[1,2"/],
    ['#[', /malformed literal batch/],
    ['#[1]]', /malformed literal batch/],
    ['#["a":1]', /malformed literal batch/],
  ])('malformed reference %j', (text, re) => {
    const e = expectInvalid(
      () => pipe([A, { nodeName: 'B', algorithmName: 'a', input: [0, text] }]),
      'nodes[1].input[1]',
      re,
    );
    expect(e.message).toContain('node "B"');
  });

  it('a "#[" literal with trailing text after the array', () => {
    expectInvalid(
      () => pipe([{ nodeName: 'A', algorithmName: 'a', input: ['#[1,2]x'] }]),
      'nodes[0].input[0]',
      /node "A": malformed literal batch "#\[1,2\]x"/,
    );
  });

  it.each([
    ['*@A', /wait-any input "\*@A" is not supported yet/],
    ['*#@A', /wait-any input "\*#@A" is not supported yet/],
    ['#[0...600]', /range batch "#\[0\.\.\.600\]" is not supported yet/],
    ['#[ 1 ... 3 ]', /range batch .* is not supported yet/],
  ])('not supported yet: %j', (text, re) => {
    expectInvalid(() => pipe([A, { nodeName: 'B', algorithmName: 'a', input: [text] }]), 'nodes[1].input[0]', re);
  });

  it('self reference', () => {
    const e = expectInvalid(
      () => pipe([A, { nodeName: 'B', algorithmName: 'a', input: [{ x: ['@B.y'] }] }]),
      'nodes',
      /cycle: B -> B/,
    );
    expect(e.message).toBe('nodes: cycle: B -> B (nodes[1].input[0].x[0] references node "B" itself)');
  });

  it('two-node cycle', () => {
    const e = expectInvalid(
      () =>
        pipe([
          { nodeName: 'A', algorithmName: 'a', input: ['@B'] },
          { nodeName: 'B', algorithmName: 'a', input: ['#@A'] },
        ]),
      'nodes',
      /cycle/,
    );
    expect(e.message).toBe('nodes: cycle: A -> B -> A');
  });

  it('longer cycle behind a sound prefix, with a node downstream of it', () => {
    const e = expectInvalid(
      () =>
        pipe([
          { nodeName: 'Src', algorithmName: 'a' },
          { nodeName: 'Down', algorithmName: 'a', input: ['@Y'] },
          { nodeName: 'X', algorithmName: 'a', input: ['@Src', '@Z'] },
          { nodeName: 'Y', algorithmName: 'a', input: ['@X'] },
          { nodeName: 'Z', algorithmName: 'a', input: ['@Y'] },
        ]),
      'nodes',
      /cycle/,
    );
    // Data flows X -> Y -> Z -> X; Down is stuck behind the cycle but not in it.
    expect(e.message).toBe('nodes: cycle: X -> Y -> Z -> X');
  });

  it('flowInput key missing', () => {
    const d = numbers();
    d.flowInput = { data: [1] };
    const e = expectInvalid(() => parsePipeline(d, known), 'nodes[1].input[1]', /no key "mul"/);
    expect(e.message).toBe(
      'nodes[1].input[1]: node "Multiply" references "@flowInput.mul" but flowInput has no key "mul"',
    );
    delete d.flowInput;
    expectInvalid(() => parsePipeline(d, known), 'nodes[0].input[0]', /node "Range" .* no key "data"/);
  });

  it('flowInput deeper keys are not checked at parse time, only the top one', () => {
    const p = pipe([{ nodeName: 'A', algorithmName: 'a', input: ['@flowInput.a.missing'] }], { a: {} });
    expect(p.order).toEqual(['A']);
  });

  it('reports the first error in descriptor order', () => {
    expectInvalid(
      () =>
        pipe([
          { nodeName: 'A', algorithmName: 'a', input: ['@Nope'] },
          { nodeName: 'B', algorithmName: 'a', input: ['@'] },
        ]),
      'nodes[0].input[0]',
      /unknown node "Nope"/,
    );
  });

  it('toThrow regex style works for callers', () => {
    const d = numbers();
    d.nodes[1]!.input = ['@', 1];
    expect(() => parsePipeline(d, known)).toThrow(/nodes\[1\]\.input\[0\]/);
    expect(() => parsePipeline(d, known)).toThrow(WeftError);
  });
});

describe('buildTaskInputs', () => {
  const A: DescriptorNode = { nodeName: 'A', algorithmName: 'a' };
  const B: DescriptorNode = { nodeName: 'B', algorithmName: 'a' };
  const consumer = (input: unknown[], flowInput: Record<string, unknown> = {}) =>
    nodeOf([A, B, { nodeName: 'C', algorithmName: 'a', input }], 'C', flowInput);

  it('reads flowInput paths, including array indexes', () => {
    const fi = { a: { b: [10, 20, { c: 'deep' }] }, s: 's' };
    const c = consumer(['@flowInput.a.b.1', '@flowInput.a.b.2.c', '@flowInput.s', '@flowInput', '@flowInput.a.zz'], fi);
    expect(buildTaskInputs(c, fi, outs({}))).toEqual({ batch: false, inputs: [[20, 'deep', 's', fi, undefined]] });
  });

  it('batches over a flowInput array', () => {
    const fi = { arr: ['x', 'y'], k: 1 };
    const c = consumer(['#@flowInput.arr', '@flowInput.k'], fi);
    expect(buildTaskInputs(c, fi, outs({}))).toEqual({
      batch: true,
      inputs: [
        ['x', 1],
        ['y', 1],
      ],
    });
  });

  it('reads a non-batch inline parent and paths into it', () => {
    const c = consumer(['@A', '@A.x.y', '@A.list.1', '@A.nope']);
    const value = { x: { y: 5 }, list: ['p', 'q'] };
    expect(buildTaskInputs(c, {}, outs({ A: single(inline(value)) }))).toEqual({
      batch: false,
      inputs: [[value, 5, 'q', undefined]],
    });
  });

  it('reads a non-batch blob parent as BlobRefs', () => {
    const c = consumer(['@A', '@A.x.y']);
    const r = buildTaskInputs(c, {}, outs({ A: single(blob('job/A')) }));
    expect(r.batch).toBe(false);
    expect(r.inputs).toHaveLength(1);
    const [whole, inner] = r.inputs[0] as [BlobRef, BlobRef];
    expect(whole).toBeInstanceOf(BlobRef);
    expect(whole).toEqual(new BlobRef('job/A', []));
    expect(inner).toBeInstanceOf(BlobRef);
    expect(inner).toEqual(new BlobRef('job/A', ['x', 'y']));
  });

  it('reduces a batch parent into the array of its items, inline or blob', () => {
    const c = consumer(['@A', '@A.v']);
    const out = batchOf(inline({ v: 1 }), blob('job/A#1'), inline({ v: 3 }));
    const r = buildTaskInputs(c, {}, outs({ A: out }));
    expect(r).toEqual({
      batch: false,
      inputs: [
        [
          [{ v: 1 }, new BlobRef('job/A#1', []), { v: 3 }],
          [1, new BlobRef('job/A#1', ['v']), 3],
        ],
      ],
    });
    expect((r.inputs[0]![0] as unknown[])[1]).toBeInstanceOf(BlobRef);
  });

  it('reduces an empty batch parent to []', () => {
    const c = consumer(['@A']);
    expect(buildTaskInputs(c, {}, outs({ A: batchOf() }))).toEqual({ batch: false, inputs: [[[]]] });
  });

  it('batches over an inline path', () => {
    const c = consumer(['#@A.items', 'k']);
    expect(buildTaskInputs(c, {}, outs({ A: single(inline({ items: [{ n: 1 }, { n: 2 }] })) }))).toEqual({
      batch: true,
      inputs: [
        [{ n: 1 }, 'k'],
        [{ n: 2 }, 'k'],
      ],
    });
  });

  it('batches over a blob using the reported shape', () => {
    const c = consumer(['#@A', '#@A.x.y']);
    const r = buildTaskInputs(
      c,
      {},
      outs({ A: single(blob('k', { '': { type: 'array', size: 3 }, 'x.y': { type: 'array', size: 2 } })) }),
    );
    expect(r).toEqual({
      batch: true,
      inputs: [
        [new BlobRef('k', [0]), new BlobRef('k', ['x', 'y', 0])],
        [new BlobRef('k', [1]), new BlobRef('k', ['x', 'y', 1])],
        [new BlobRef('k', [2]), undefined],
      ],
    });
    expect(r.inputs[2]![0]).toBeInstanceOf(BlobRef);
    expect((r.inputs[1]![1] as BlobRef).path).toEqual(['x', 'y', 1]);
  });

  it('batches over the items of a batch parent, applying the path to each', () => {
    const c = consumer(['#@A', '#@A.v']);
    const r = buildTaskInputs(c, {}, outs({ A: batchOf(inline({ v: 'a' }), blob('b1')) }));
    expect(r).toEqual({
      batch: true,
      inputs: [
        [{ v: 'a' }, 'a'],
        [new BlobRef('b1', []), new BlobRef('b1', ['v'])],
      ],
    });
  });

  it('substitutes slots nested in objects and arrays, in place, per task', () => {
    const c = consumer([{ cfg: { items: ['#@A', '@B.name', 'lit'], n: 1 } }, ['#[10,20]', { deep: '@flowInput.f' }]], {
      f: true,
    });
    const r = buildTaskInputs(
      c,
      { f: true },
      outs({ A: single(inline(['a0', 'a1', 'a2'])), B: single(inline({ name: 'bee' })) }),
    );
    expect(r).toEqual({
      batch: true,
      inputs: [
        [{ cfg: { items: ['a0', 'bee', 'lit'], n: 1 } }, [10, { deep: true }]],
        [{ cfg: { items: ['a1', 'bee', 'lit'], n: 1 } }, [20, { deep: true }]],
        [{ cfg: { items: ['a2', 'bee', 'lit'], n: 1 } }, [undefined, { deep: true }]],
      ],
    });
    // Each task gets its own containers, so mutating one cannot leak into another.
    expect(r.inputs[0]![0]).not.toBe(r.inputs[1]![0]);
    expect(r.inputs[0]![0]).not.toBe(c.input[0]);
  });

  it('a literal batch alone fans out', () => {
    const c = consumer(['#[1,"two",{"t":3}]', 'x']);
    expect(buildTaskInputs(c, {}, outs({}))).toEqual({
      batch: true,
      inputs: [
        [1, 'x'],
        ['two', 'x'],
        [{ t: 3 }, 'x'],
      ],
    });
  });

  it('zips two batch sources by index; the longest decides', () => {
    const c = consumer(['#@A', '#@B.list']);
    const r = buildTaskInputs(
      c,
      {},
      outs({ A: single(inline([1, 2, 3])), B: single(inline({ list: ['a', 'b', 'c', 'd'] })) }),
    );
    expect(r).toEqual({
      batch: true,
      inputs: [
        [1, 'a'],
        [2, 'b'],
        [3, 'c'],
        [undefined, 'd'],
      ],
    });
  });

  it('zips an empty source with a non-empty one to the longer length', () => {
    const c = consumer(['#[]', '#@flowInput.a'], { a: [7, 8] });
    expect(buildTaskInputs(c, { a: [7, 8] }, outs({})).inputs).toEqual([
      [undefined, 7],
      [undefined, 8],
    ]);
  });

  it('the same batch ref twice gives the same element in each task', () => {
    const c = consumer(['#@A', { again: '#@A' }]);
    expect(buildTaskInputs(c, {}, outs({ A: single(inline([5, 6])) })).inputs).toEqual([
      [5, { again: 5 }],
      [6, { again: 6 }],
    ]);
  });

  it('asks each parent for its output', () => {
    const asked: string[] = [];
    const c = consumer(['#@A.x', '@B', '@A.x']);
    buildTaskInputs(c, {}, (n) => {
      asked.push(n);
      return single(inline({ x: [1] }));
    });
    expect(asked.sort()).toEqual(['A', 'A', 'B']);
  });

  it.each([
    ['inline empty array', single(inline([]))],
    ['blob with size 0', single(blob('k', { '': { type: 'array', size: 0 } }))],
    ['batch parent with no items', batchOf()],
  ])('an empty batch gives no tasks: %s', (_label, out) => {
    const c = consumer(['#@A', '@B']);
    expect(buildTaskInputs(c, {}, outs({ A: out, B: single(inline(1)) }))).toEqual({ batch: true, inputs: [] });
  });

  it('empty literal batch and empty flowInput array give no tasks', () => {
    expect(buildTaskInputs(consumer(['#[]']), {}, outs({}))).toEqual({ batch: true, inputs: [] });
    expect(buildTaskInputs(consumer(['#@flowInput.e'], { e: [] }), { e: [] }, outs({}))).toEqual({
      batch: true,
      inputs: [],
    });
  });

  describe('non-array batch sources', () => {
    it('inline number, with the exact message', () => {
      const c = consumer(['x', '#@A.path']);
      const e = expectInvalid(
        () => buildTaskInputs(c, {}, outs({ A: single(inline({ path: 5 })) })),
        'nodes[2].input[1]',
        /not an array/,
      );
      expect(e.message).toBe('nodes[2].input[1]: node "C": batch source "#@A.path" is not an array (got number)');
    });

    it.each([
      [{ path: 'str' }, /\(got string\)/],
      [{ path: { o: 1 } }, /\(got object\)/],
      [{ path: null }, /\(got null\)/],
      [{}, /\(got undefined\)/],
      [{ path: new Uint8Array(2) }, /\(got binary\)/],
    ])('inline %j', (value, re) => {
      expectInvalid(
        () => buildTaskInputs(consumer(['#@A.path']), {}, outs({ A: single(inline(value)) })),
        'nodes[2].input[0]',
        re,
      );
    });

    it('blob with no metadata for the path', () => {
      expectInvalid(
        () =>
          buildTaskInputs(consumer(['#@A.x']), {}, outs({ A: single(blob('k', { '': { type: 'array', size: 2 } })) })),
        'nodes[2].input[0]',
        /batch source "#@A\.x" is not an array \(got no shape metadata\)/,
      );
    });

    it('blob whose metadata is not an array', () => {
      expectInvalid(
        () =>
          buildTaskInputs(consumer(['#@A']), {}, outs({ A: single(blob('k', { '': { type: 'object', size: 2 } })) })),
        'nodes[2].input[0]',
        /batch source "#@A" is not an array \(got object\)/,
      );
    });

    it('flowInput value', () => {
      const fi = { n: 3 };
      expectInvalid(
        () => buildTaskInputs(consumer([{ k: '#@flowInput.n' }], fi), fi, outs({})),
        'nodes[2].input[0].k',
        /node "C": batch source "#@flowInput\.n" is not an array \(got number\)/,
      );
    });
  });

  it('a non-batch parent with other than one item is an internal error', () => {
    let caught: unknown;
    try {
      buildTaskInputs(consumer(['@A']), {}, outs({ A: { batch: false, items: [] } }));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(WeftError);
    expect((caught as WeftError).code).toBe(Status.INTERNAL);
    expect((caught as WeftError).message).toMatch(/node "C": output of non-batch node "A" has 0 items/);
  });

  it('runs the whole numbers pipeline with blob storage between nodes', () => {
    const p = parsePipeline(numbers(), known);
    const fi = numbers().flowInput!;
    const produced: Record<string, NodeOutput> = {};
    const get = outs(produced);
    const seen: Record<string, unknown[][]> = {};
    for (const name of p.order) {
      const node = p.byName.get(name)!;
      const { batch, inputs } = buildTaskInputs(node, fi, get);
      seen[name] = inputs;
      // Every producer stores to a blob and reports shapes for its children's save paths.
      const items = inputs.map((_, i): OutputItem => blob(`${name}/${i}`, { '': { type: 'array', size: 5 } }));
      produced[name] = { batch, items };
    }
    expect(seen['Range']).toEqual([[[1, 2, 3, 4, 5]]]);
    expect(seen['Multiply']).toEqual([0, 1, 2, 3, 4].map((i) => [new BlobRef('Range/0', [i]), 2]));
    expect(seen['Reduce']).toEqual([[[0, 1, 2, 3, 4].map((i) => new BlobRef(`Multiply/${i}`, []))]]);
  });
});

describe('node kinds', () => {
  it('accepts kind "algorithm" or none, and rejects kinds that are not supported yet', () => {
    const ok = parsePipeline(
      { name: 'p', nodes: [{ nodeName: 'A', algorithmName: 'a', input: [], kind: 'algorithm' }] },
      () => true,
    );
    expect(ok.order).toEqual(['A']);
    expect(() =>
      parsePipeline(
        { name: 'p', nodes: [{ nodeName: 'A', algorithmName: 'a', input: [], kind: 'output' }] },
        () => true,
      ),
    ).toThrow(/nodes\[0\]\.kind: node "A": kind "output" is not supported yet/);
  });
});
