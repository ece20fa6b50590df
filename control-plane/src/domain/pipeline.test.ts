import { describe, it, expect } from 'vitest';
import { BlobRef, Status, WeftError } from '@weft/common';
import {
  LiteralBatchSlot,
  MAX_BATCH_ITEMS,
  RefSlot,
  buildTaskInputs,
  buildWaitAnyInput,
  forEachSlot,
  formatRef,
  parsePipeline,
  toFlatDescriptor,
  waitAnyCount,
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
    expectInvalid(() => pipe([A, { nodeName: 'B' }]), 'nodes[1].algorithmName', /required/);
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
    ['*#@A', /node "B": wait-any-batch input "\*#@A" is not supported yet/],
    ['*#@A.x', /wait-any-batch input "\*#@A\.x" is not supported yet/],
    ['*@', /malformed reference "\*@": missing node name/],
    ['*@A..x', /malformed reference "\*@A\.\.x": empty path segment/],
    ['*@ A', /whitespace/],
  ])('wait-any syntax: %j', (text, re) => {
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
  it('accepts kind "algorithm", "" or none as algorithm nodes', () => {
    const p = pipe([
      { nodeName: 'A', algorithmName: 'a', kind: 'algorithm' },
      { nodeName: 'B', algorithmName: 'b', kind: '' },
      { nodeName: 'C', algorithmName: 'c' },
    ]);
    expect(p.nodes.map((n) => [n.kind, n.algorithmName])).toEqual([
      ['algorithm', 'a'],
      ['algorithm', 'b'],
      ['algorithm', 'c'],
    ]);
  });

  it.each(['debug', 'gateway', 'dataSource', 'hyperparamsTuner', 'Algorithm'])('rejects kind %j', (kind) => {
    const e = expectInvalid(
      () => pipe([{ nodeName: 'A', algorithmName: 'a', kind }]),
      'nodes[0].kind',
      /is not supported yet/,
    );
    expect(e.message).toBe(
      `nodes[0].kind: node "A": kind "${kind}" is not supported yet (supported: algorithm, output, pipeline)`,
    );
  });

  it('rejects a non-string kind', () => {
    expectInvalid(
      () => pipe([{ nodeName: 'A', algorithmName: 'a', kind: 5 as unknown as string }]),
      'nodes[0].kind',
      /node "A": kind 5 is not supported yet/,
    );
  });
});

describe('node settings', () => {
  const A: DescriptorNode = { nodeName: 'A', algorithmName: 'a' };

  it('defaults retry, ttl, batchOperation, spec, and sets field and waitAnyParents', () => {
    const a = nodeOf([A], 'A');
    expect(a.retry).toEqual({ policy: 'OnCrash', limit: 3 });
    expect(a.ttl).toBe(0);
    expect(a.batchOperation).toBe('indexed');
    expect(a.spec).toEqual({});
    expect(a.field).toBe('nodes[0]');
    expect(a.waitAnyParents).toEqual([]);
    expect(a.kind).toBe('algorithm');
  });

  it('treats proto3 empty values as unset', () => {
    const a = nodeOf([{ ...A, retry: { policy: '' }, ttl: 0, batchOperation: '', kind: '' }], 'A');
    expect(a.retry).toEqual({ policy: 'OnCrash', limit: 3 });
    expect([a.ttl, a.batchOperation]).toEqual([0, 'indexed']);
    const b = nodeOf([{ ...A, retry: null, ttl: null, spec: null } as unknown as DescriptorNode], 'A');
    expect([b.retry, b.ttl, b.spec]).toEqual([{ policy: 'OnCrash', limit: 3 }, 0, {}]);
  });

  it('keeps explicit values', () => {
    const a = nodeOf(
      [{ ...A, retry: { policy: 'Never', limit: 0 }, ttl: 30, batchOperation: 'cartesian', spec: { k: 1 } }],
      'A',
    );
    expect(a.retry).toEqual({ policy: 'Never', limit: 0 });
    expect([a.ttl, a.batchOperation, a.spec]).toEqual([30, 'cartesian', { k: 1 }]);
    for (const policy of ['Never', 'Always', 'OnError', 'OnCrash']) {
      expect(nodeOf([{ ...A, retry: { policy } }], 'A').retry).toEqual({ policy, limit: 3 });
    }
    expect(nodeOf([{ ...A, retry: { limit: 100 } }], 'A').retry).toEqual({ policy: 'OnCrash', limit: 100 });
  });

  it('retry.policy, with the exact message', () => {
    const e = expectInvalid(
      () =>
        pipe([
          A,
          { nodeName: 'X', algorithmName: 'a' },
          { nodeName: 'B', algorithmName: 'a', retry: { policy: 'Sometimes' } },
        ]),
      'nodes[2].retry.policy',
      /not one of/,
    );
    expect(e.message).toBe(
      'nodes[2].retry.policy: node "B": "Sometimes" is not one of Never, Always, OnError, OnCrash',
    );
    expectInvalid(
      () => pipe([{ ...A, retry: { policy: 'oncrash' } }]),
      'nodes[0].retry.policy',
      /node "A": "oncrash" is not one of/,
    );
    expectInvalid(
      () => pipe([{ ...A, retry: { policy: 3 as unknown as string } }]),
      'nodes[0].retry.policy',
      /node "A": 3 is not one of/,
    );
  });

  it.each([-1, 101, 1.5, '3', true])('retry.limit %j', (limit) => {
    expectInvalid(
      () => pipe([{ ...A, retry: { limit: limit as number } }]),
      'nodes[0].retry.limit',
      /node "A": must be an integer from 0 to 100 \(got .*\)/,
    );
  });

  it('retry must be an object', () => {
    expectInvalid(
      () => pipe([{ ...A, retry: 'Never' as unknown as DescriptorNode['retry'] }]),
      'nodes[0].retry',
      /node "A": must be an object/,
    );
  });

  it.each([-1, 1.5, '10', Number.MAX_VALUE])('ttl %j', (ttl) => {
    expectInvalid(
      () => pipe([{ ...A, ttl: ttl as number }]),
      'nodes[0].ttl',
      /node "A": must be a whole number of seconds >= 0/,
    );
  });

  it('batchOperation', () => {
    const e = expectInvalid(() => pipe([{ ...A, batchOperation: 'zip' }]), 'nodes[0].batchOperation', /not one of/);
    expect(e.message).toBe('nodes[0].batchOperation: node "A": "zip" is not one of indexed, cartesian');
  });

  it('spec must be an object', () => {
    for (const spec of [[1], 'x', 3]) {
      expectInvalid(
        () => pipe([{ ...A, spec: spec as unknown as Record<string, unknown> }]),
        'nodes[0].spec',
        /node "A": must be an object/,
      );
    }
  });

  it('checks settings in node order, after names and algorithms', () => {
    expectInvalid(
      () =>
        pipe([
          { ...A, ttl: -1 },
          { nodeName: 'B', algorithmName: 'a', retry: { policy: 'x' } },
        ]),
      'nodes[0].ttl',
      /node "A"/,
    );
    expectInvalid(
      () =>
        pipe([
          { ...A, ttl: -1 },
          { nodeName: 'A', algorithmName: 'a' },
        ]),
      'nodes[0].ttl',
      /A/,
    );
  });
});

describe('pipeline settings', () => {
  const A: DescriptorNode = { nodeName: 'A', algorithmName: 'a' };
  const withFields = (extra: Partial<Descriptor>) => parsePipeline({ name: 'p', nodes: [A], ...extra }, known);

  it('fills in defaults', () => {
    const p = withFields({});
    expect(p.options).toEqual({ batchTolerance: 80, ttl: 0, activeTtl: 0, progressVerbosityLevel: 'info' });
    expect('concurrentPipelines' in p.options).toBe(false);
    expect(p.webhooks).toEqual({});
    expect(p.triggers).toEqual({ pipelines: [] });
    expect(p.priority).toBe(3);
    expect(p.tags).toEqual([]);
    expect(p.flowInput).toEqual({});
  });

  it('treats proto3 empty values as unset', () => {
    const p = withFields({
      options: { ttl: 0, activeTtl: 0, progressVerbosityLevel: '' },
      webhooks: { progress: '', result: '' },
      triggers: { cron: { pattern: '', enabled: false }, pipelines: [] },
      priority: 0,
      tags: [],
    });
    expect(p.options).toEqual({ batchTolerance: 80, ttl: 0, activeTtl: 0, progressVerbosityLevel: 'info' });
    expect(p.webhooks).toEqual({});
    expect(p.triggers).toEqual({ pipelines: [] });
    expect(p.priority).toBe(3);
  });

  it('keeps explicit values', () => {
    const p = withFields({
      flowInput: { x: 1 },
      options: {
        batchTolerance: 0,
        concurrentPipelines: { amount: 2, rejectOnFailure: false },
        ttl: 3600,
        activeTtl: 60,
        progressVerbosityLevel: 'critical',
      },
      webhooks: { progress: 'http://h:8080/progress', result: 'https://example.com/r?x=1' },
      triggers: { cron: { pattern: '0 */5 * * * *', enabled: true }, pipelines: ['up', 'other', 'up'] },
      priority: 5,
      tags: ['a', 'b'],
    });
    expect(p.options).toEqual({
      batchTolerance: 0,
      concurrentPipelines: { amount: 2, rejectOnFailure: false },
      ttl: 3600,
      activeTtl: 60,
      progressVerbosityLevel: 'critical',
    });
    expect(p.webhooks).toEqual({ progress: 'http://h:8080/progress', result: 'https://example.com/r?x=1' });
    expect(p.triggers).toEqual({ cron: { pattern: '0 */5 * * * *', enabled: true }, pipelines: ['up', 'other'] });
    expect(p.priority).toBe(5);
    expect(p.tags).toEqual(['a', 'b']);
    expect(p.flowInput).toEqual({ x: 1 });
  });

  it('concurrentPipelines.rejectOnFailure defaults to true; cron.enabled to false', () => {
    const p = withFields({
      options: { concurrentPipelines: { amount: 10000 } },
      triggers: { cron: { pattern: '* * * * *' } },
    });
    expect(p.options.concurrentPipelines).toEqual({ amount: 10000, rejectOnFailure: true });
    expect(p.triggers.cron).toEqual({ pattern: '* * * * *', enabled: false });
    expect(withFields({ priority: 1 }).priority).toBe(1);
  });

  it.each(['trace', 'debug', 'info', 'warn', 'error', 'critical'])('progressVerbosityLevel %s', (level) => {
    expect(withFields({ options: { progressVerbosityLevel: level } }).options.progressVerbosityLevel).toBe(level);
  });

  it.each<[string, Partial<Descriptor>, string, RegExp]>([
    ['options shape', { options: [] as unknown as Descriptor['options'] }, 'options', /^options: must be an object$/],
    ['batchTolerance -1', { options: { batchTolerance: -1 } }, 'options.batchTolerance', /0 to 100 \(got -1\)/],
    ['batchTolerance 101', { options: { batchTolerance: 101 } }, 'options.batchTolerance', /\(got 101\)/],
    ['batchTolerance 50.5', { options: { batchTolerance: 50.5 } }, 'options.batchTolerance', /integer/],
    [
      'concurrentPipelines shape',
      { options: { concurrentPipelines: 3 as unknown as { amount: number } } },
      'options.concurrentPipelines',
      /must be an object/,
    ],
    [
      'amount 0',
      { options: { concurrentPipelines: { amount: 0 } } },
      'options.concurrentPipelines.amount',
      /must be an integer from 1 to 10000 \(got 0\)/,
    ],
    [
      'amount 10001',
      { options: { concurrentPipelines: { amount: 10001 } } },
      'options.concurrentPipelines.amount',
      /\(got 10001\)/,
    ],
    [
      'amount missing',
      { options: { concurrentPipelines: {} } },
      'options.concurrentPipelines.amount',
      /\(got undefined\)/,
    ],
    [
      'rejectOnFailure',
      { options: { concurrentPipelines: { amount: 1, rejectOnFailure: 'yes' as unknown as boolean } } },
      'options.concurrentPipelines.rejectOnFailure',
      /must be true or false \(got "yes"\)/,
    ],
    ['ttl', { options: { ttl: -5 } }, 'options.ttl', /must be a whole number of seconds >= 0 \(got -5\)/],
    ['activeTtl', { options: { activeTtl: 1.5 } }, 'options.activeTtl', /\(got 1\.5\)/],
    [
      'progressVerbosityLevel',
      { options: { progressVerbosityLevel: 'loud' } },
      'options.progressVerbosityLevel',
      /^options\.progressVerbosityLevel: "loud" is not one of trace, debug, info, warn, error, critical$/,
    ],
    ['priority 6', { priority: 6 }, 'priority', /^priority: must be an integer from 1 to 5 \(got 6\)$/],
    ['priority -1', { priority: -1 }, 'priority', /\(got -1\)/],
    ['priority 2.5', { priority: 2.5 }, 'priority', /\(got 2\.5\)/],
    ['priority "3"', { priority: '3' as unknown as number }, 'priority', /\(got "3"\)/],
    ['webhooks shape', { webhooks: 'x' as unknown as Descriptor['webhooks'] }, 'webhooks', /must be an object/],
    [
      'progress not a URL',
      { webhooks: { progress: 'not a url' } },
      'webhooks.progress',
      /"not a url" is not an absolute URL/,
    ],
    ['relative URL', { webhooks: { result: '/hook' } }, 'webhooks.result', /"\/hook" is not an absolute URL/],
    [
      'ftp URL',
      { webhooks: { result: 'ftp://h/x' } },
      'webhooks.result',
      /"ftp:\/\/h\/x" must be an http or https URL/,
    ],
    ['file URL', { webhooks: { progress: 'file:///etc/passwd' } }, 'webhooks.progress', /http or https/],
    [
      'URL number',
      { webhooks: { progress: 5 as unknown as string } },
      'webhooks.progress',
      /must be a URL string \(got 5\)/,
    ],
    ['triggers shape', { triggers: [] as unknown as Descriptor['triggers'] }, 'triggers', /must be an object/],
    ['cron shape', { triggers: { cron: 'x' as unknown as { pattern: string } } }, 'triggers.cron', /must be an object/],
    [
      'cron pattern',
      { triggers: { cron: { pattern: 'every minute' } } },
      'triggers.cron.pattern',
      /^triggers\.cron\.pattern: "every minute" is not a valid cron pattern: /,
    ],
    [
      'cron value out of range',
      { triggers: { cron: { pattern: '61 * * * *' } } },
      'triggers.cron.pattern',
      /"61 \* \* \* \*" is not a valid cron pattern/,
    ],
    [
      'cron with too many fields',
      { triggers: { cron: { pattern: '* * * * * * * *' } } },
      'triggers.cron.pattern',
      /not a valid cron pattern/,
    ],
    [
      'cron enabled without pattern',
      { triggers: { cron: { enabled: true } } },
      'triggers.cron.pattern',
      /is required when the cron trigger is enabled/,
    ],
    [
      'cron pattern not a string',
      { triggers: { cron: { pattern: 5 as unknown as string } } },
      'triggers.cron.pattern',
      /must be a string \(got 5\)/,
    ],
    [
      'cron enabled not boolean',
      { triggers: { cron: { pattern: '* * * * *', enabled: 1 as unknown as boolean } } },
      'triggers.cron.enabled',
      /must be true or false \(got 1\)/,
    ],
    [
      'trigger pipelines shape',
      { triggers: { pipelines: 'up' as unknown as string[] } },
      'triggers.pipelines',
      /must be an array of pipeline names/,
    ],
    [
      'trigger pipeline empty',
      { triggers: { pipelines: ['up', ''] } },
      'triggers.pipelines[1]',
      /must be a pipeline name \(got ""\)/,
    ],
    [
      'trigger pipeline self',
      { triggers: { pipelines: ['p'] } },
      'triggers.pipelines[0]',
      /"p" is this pipeline: it would trigger itself after every run/,
    ],
    ['tags shape', { tags: 'a' as unknown as string[] }, 'tags', /must be an array of strings/],
    ['tag not a string', { tags: ['a', 5 as unknown as string] }, 'tags[1]', /must be a non-empty string \(got 5\)/],
    ['tag empty', { tags: [' '] }, 'tags[0]', /must be a non-empty string/],
  ])('invalid %s', (_label, extra, field, re) => {
    expectInvalid(() => withFields(extra), field, re);
  });

  it('accepts 5-field, 6-field (seconds first) and nickname cron patterns', () => {
    for (const pattern of ['*/5 * * * *', '0 0 12 * * MON-FRI', '@daily']) {
      expect(withFields({ triggers: { cron: { pattern } } }).triggers.cron?.pattern).toBe(pattern);
    }
  });
});

describe('ranges', () => {
  const rangeNode = (text: string) => nodeOf([{ nodeName: 'B', algorithmName: 'a', input: [text, 'k'] }], 'B');

  it('#[0...4] is inclusive at both ends', () => {
    const b = rangeNode('#[0...4]');
    expect(b.input[0]).toEqual(new LiteralBatchSlot([0, 1, 2, 3, 4], 'nodes[0].input[0]', { start: 0, end: 4 }));
    expect(b.isBatch).toBe(true);
    expect(buildTaskInputs(b, {}, outs({})).inputs).toEqual([0, 1, 2, 3, 4].map((i) => [i, 'k']));
  });

  it('#[0...600] has 601 items; whitespace and single-item ranges are fine', () => {
    expect((rangeNode('#[0...600]').input[0] as LiteralBatchSlot).items).toHaveLength(601);
    expect((rangeNode('#[600...700]').input[0] as LiteralBatchSlot).items).toHaveLength(101);
    expect((rangeNode('#[ 1 ... 3 ]').input[0] as LiteralBatchSlot).items).toEqual([1, 2, 3]);
    expect((rangeNode('#[7...7]').input[0] as LiteralBatchSlot).items).toEqual([7]);
  });

  it(`allows exactly ${MAX_BATCH_ITEMS} items`, () => {
    const items = (rangeNode(`#[1...${MAX_BATCH_ITEMS}]`).input[0] as LiteralBatchSlot).items;
    expect(items).toHaveLength(MAX_BATCH_ITEMS);
    expect(items[MAX_BATCH_ITEMS - 1]).toBe(MAX_BATCH_ITEMS);
  });

  it.each([
    ['#[0...1000000]', /node "B": range "#\[0\.\.\.1000000\]" has 1000001 items; at most 1000000 are allowed/],
    ['#[0...99999999999999999999]', /has .* items; at most 1000000/],
    ['#[5...2]', /node "B": range "#\[5\.\.\.2\]" is descending; write "#\[2\.\.\.5\]"/],
    ['#[-1...3]', /node "B": range "#\[-1\.\.\.3\]" must not have negative bounds/],
    ['#[-5...-1]', /must not have negative bounds/],
    ['#[-0...1]', /must not have negative bounds/],
    ['#[0.5...3]', /node "B": range "#\[0\.5\.\.\.3\]" needs whole-number bounds/],
    ['#[0...2.0]', /needs whole-number bounds/],
    ['#[0..3]', /malformed literal batch "#\[0\.\.3\]"/],
    ['#[0....3]', /malformed literal batch/],
    ['#[a...b]', /malformed literal batch/],
    ['#[1, 2...4]', /malformed literal batch/],
  ])('rejects %j', (text, re) => {
    expectInvalid(() => rangeNode(text), 'nodes[0].input[0]', re);
  });
});

describe('batchOperation cartesian', () => {
  const A: DescriptorNode = { nodeName: 'A', algorithmName: 'a' };
  const cart = (input: unknown[], flowInput: Record<string, unknown> = {}) =>
    nodeOf([A, { nodeName: 'C', algorithmName: 'a', input, batchOperation: 'cartesian' }], 'C', flowInput);

  it('makes one task per combination, the first source outermost', () => {
    const c = cart(['#[1,2]', 'k', { x: '#["a","b","c"]' }]);
    expect(buildTaskInputs(c, {}, outs({}))).toEqual({
      batch: true,
      inputs: [
        [1, 'k', { x: 'a' }],
        [1, 'k', { x: 'b' }],
        [1, 'k', { x: 'c' }],
        [2, 'k', { x: 'a' }],
        [2, 'k', { x: 'b' }],
        [2, 'k', { x: 'c' }],
      ],
    });
  });

  it('indexed zips the same inputs instead', () => {
    const c = nodeOf([A, { nodeName: 'C', algorithmName: 'a', input: ['#[1,2]', '#["a","b","c"]'] }], 'C');
    expect(buildTaskInputs(c, {}, outs({})).inputs).toEqual([
      [1, 'a'],
      [2, 'b'],
      [undefined, 'c'],
    ]);
  });

  it('three sources of every kind, with value refs alongside', () => {
    const fi = { arr: ['x', 'y'], v: 9 };
    const c = cart(['#@A.list', '#@flowInput.arr', '#[0...1]', '@flowInput.v'], fi);
    const r = buildTaskInputs(c, fi, outs({ A: single(blob('k', { list: { type: 'array', size: 2 } })) }));
    const key = (i: number) => new BlobRef('k', ['list', i]);
    expect(r.inputs).toEqual([
      [key(0), 'x', 0, 9],
      [key(0), 'x', 1, 9],
      [key(0), 'y', 0, 9],
      [key(0), 'y', 1, 9],
      [key(1), 'x', 0, 9],
      [key(1), 'x', 1, 9],
      [key(1), 'y', 0, 9],
      [key(1), 'y', 1, 9],
    ]);
  });

  it('each appearance of a source is its own dimension', () => {
    const c = cart(['#@A', '#@A']);
    expect(buildTaskInputs(c, {}, outs({ A: single(inline([1, 2])) })).inputs).toEqual([
      [1, 1],
      [1, 2],
      [2, 1],
      [2, 2],
    ]);
  });

  it('a single source behaves like indexed; an empty source gives no tasks', () => {
    expect(buildTaskInputs(cart(['#[1,2]', 'z']), {}, outs({})).inputs).toEqual([
      [1, 'z'],
      [2, 'z'],
    ]);
    expect(buildTaskInputs(cart(['#[1,2]', '#[]']), {}, outs({}))).toEqual({ batch: true, inputs: [] });
  });

  it('a non-batch node ignores batchOperation', () => {
    expect(buildTaskInputs(cart(['@flowInput.v'], { v: 1 }), { v: 1 }, outs({}))).toEqual({
      batch: false,
      inputs: [[1]],
    });
  });

  it(`refuses more than ${MAX_BATCH_ITEMS} combinations`, () => {
    const c = cart(['#[0...1000]', '#[0...999]']);
    const e = expectInvalid(() => buildTaskInputs(c, {}, outs({})), 'nodes[1].batchOperation', /combinations/);
    expect(e.message).toBe(
      'nodes[1].batchOperation: node "C": the cartesian product of its 2 batch inputs has 1001000 combinations; at most 1000000 are allowed',
    );
  });
});

describe('wait-any', () => {
  const A: DescriptorNode = { nodeName: 'A', algorithmName: 'a', input: ['#[1,2,3]'] };
  const C: DescriptorNode = { nodeName: 'C', algorithmName: 'a', input: ['#@flowInput.xs'] };
  const Plain: DescriptorNode = { nodeName: 'P', algorithmName: 'a' };
  const waiter = (input: unknown[]) =>
    pipe([A, C, Plain, { nodeName: 'W', algorithmName: 'a', input }], { xs: [], k: 'kk' });

  it('parses *@ into waitAny RefSlots and lists the parents', () => {
    const p = waiter(['*@A', { y: '*@C.x.y' }, '@P', '@flowInput.k']);
    const w = p.byName.get('W')!;
    expect((w.input[0] as RefSlot).ref).toEqual({
      source: 'node',
      node: 'A',
      path: [],
      mode: 'waitAny',
      field: 'nodes[3].input[0]',
    });
    expect(formatRef((w.input[1] as { y: RefSlot }).y.ref)).toBe('*@C.x.y');
    expect(w.waitAnyParents).toEqual(['A', 'C']);
    expect(w.parents).toEqual(['A', 'C', 'P']);
    expect(w.isBatch).toBe(true);
    expect(p.byName.get('A')!.children).toEqual(['W']);
    expect(p.byName.get('C')!.savePaths).toEqual([]);
    expect(p.order).toEqual(['A', 'C', 'P', 'W']);
  });

  it('a wait-any node is itself a batch node that *@ may follow', () => {
    const p = pipe([
      A,
      { nodeName: 'W', algorithmName: 'a', input: ['*@A'] },
      { nodeName: 'V', algorithmName: 'a', input: ['*@W'] },
    ]);
    expect(p.byName.get('V')!.waitAnyParents).toEqual(['W']);
  });

  it('the target must be a batch node, with the exact message', () => {
    const e = expectInvalid(() => waiter(['*@A', '*@P.x']), 'nodes[3].input[1]', /batch node/);
    expect(e.message).toBe(
      'nodes[3].input[1]: node "W": wait-any input "*@P.x" needs P to be a batch node (one with a "#@", "#[...]" or "*@" input)',
    );
  });

  it('a target declared later is checked too', () => {
    expectInvalid(
      () =>
        pipe([
          { nodeName: 'W', algorithmName: 'a', input: ['*@L'] },
          { nodeName: 'L', algorithmName: 'a' },
        ]),
      'nodes[0].input[0]',
      /node "W": wait-any input "\*@L" needs L to be a batch node/,
    );
  });

  it('flowInput is no wait-any source', () => {
    expectInvalid(
      () => waiter(['*@flowInput.xs']),
      'nodes[3].input[0]',
      /node "W": wait-any input "\*@flowInput\.xs" must name a node/,
    );
  });

  it.each([
    [
      ['*@A', '#@C'],
      'nodes[3].input[1]',
      /batch input "#@C" cannot be combined with wait-any input "\*@A" \(nodes\[3\]\.input\[0\]\)/,
    ],
    [
      ['#[1,2]', { w: '*@A' }],
      'nodes[3].input[0]',
      /batch input "#\[1,2\]" cannot be combined with wait-any input "\*@A" \(nodes\[3\]\.input\[1\]\.w\)/,
    ],
    [['#[0...3]', '*@A'], 'nodes[3].input[0]', /node "W": batch input "#\[0\.\.\.3\]" cannot be combined/],
  ])('rejects batch inputs next to *@: %j', (input, field, re) => {
    expectInvalid(() => waiter(input), field, re);
  });

  it('a self wait-any reference is a cycle', () => {
    expectInvalid(
      () => pipe([A, { nodeName: 'W', algorithmName: 'a', input: ['*@A', '*@W'] }]),
      'nodes',
      /cycle: W -> W/,
    );
  });

  describe('buildWaitAnyInput / waitAnyCount', () => {
    const p = waiter(['*@A', { c: '*@C.v' }, '@P', '@flowInput.k', 'lit']);
    const w = p.byName.get('W')!;
    const fi = { xs: [], k: 'kk' };
    const produced = outs({
      A: batchOf(inline(10), blob('A/1'), inline(30)),
      C: batchOf(inline({ v: 'c0' }), inline({ v: 'c1' }), blob('C/2')),
      P: single(inline('p')),
    });

    it('gives item i of every *@ parent, inline or as a BlobRef, and resolves the rest', () => {
      expect(waitAnyCount(w, produced)).toBe(3);
      expect(buildWaitAnyInput(w, 0, fi, produced)).toEqual([10, { c: 'c0' }, 'p', 'kk', 'lit']);
      const second = buildWaitAnyInput(w, 1, fi, produced);
      expect(second).toEqual([new BlobRef('A/1', []), { c: 'c1' }, 'p', 'kk', 'lit']);
      expect(second[0]).toBeInstanceOf(BlobRef);
      const third = buildWaitAnyInput(w, 2, fi, produced);
      expect(third).toEqual([30, { c: new BlobRef('C/2', ['v']) }, 'p', 'kk', 'lit']);
      expect((third[1] as { c: BlobRef }).c).toBeInstanceOf(BlobRef);
    });

    it('needs only item i of each *@ parent', () => {
      const items: OutputItem[] = [];
      items[2] = inline(30);
      const partial = outs({
        A: { batch: true, items },
        C: batchOf(inline({}), inline({}), inline({ v: 2 })),
        P: single(inline('p')),
      });
      expect(buildWaitAnyInput(w, 2, fi, partial)).toEqual([30, { c: 2 }, 'p', 'kk', 'lit']);
      expect(waitAnyCount(w, partial)).toBe(3);
      let caught: unknown;
      try {
        buildWaitAnyInput(w, 1, fi, partial);
      } catch (err) {
        caught = err;
      }
      expect((caught as WeftError).code).toBe(Status.INTERNAL);
      expect((caught as WeftError).message).toBe('node "W": item 1 of "A" is not available (3 items)');
    });

    it('buildTaskInputs gives every item at once', () => {
      expect(buildTaskInputs(w, fi, produced)).toEqual({
        batch: true,
        inputs: [0, 1, 2].map((i) => buildWaitAnyInput(w, i, fi, produced)),
      });
      const none = outs({ A: batchOf(), C: batchOf(), P: single(inline('p')) });
      expect(buildTaskInputs(w, fi, none)).toEqual({ batch: true, inputs: [] });
    });

    it('*@ parents with different item counts', () => {
      const uneven = outs({ A: batchOf(inline(1), inline(2)), C: batchOf(inline({})), P: single(inline('p')) });
      const e = expectInvalid(() => waitAnyCount(w, uneven), 'nodes[3].input[1].c', /differ in length/);
      expect(e.message).toBe(
        'nodes[3].input[1].c: node "W": wait-any inputs "*@A" (2 items) and "*@C.v" (1 items) differ in length; "*@" inputs are matched by index',
      );
      expectInvalid(() => buildTaskInputs(w, fi, uneven), 'nodes[3].input[1].c', /differ in length/);
    });

    it('waitAnyCount on a node without *@ is an internal error', () => {
      let caught: unknown;
      try {
        waitAnyCount(p.byName.get('A')!, produced);
      } catch (err) {
        caught = err;
      }
      expect((caught as WeftError).code).toBe(Status.INTERNAL);
    });
  });
});

describe('output nodes', () => {
  const A: DescriptorNode = { nodeName: 'A', algorithmName: 'a', input: ['#[1,2]'] };

  it('need no algorithm, which is never checked', () => {
    const asked: string[] = [];
    const p = parsePipeline(
      {
        name: 'p',
        nodes: [A, { nodeName: 'Out', kind: 'output', input: [{ all: '@A', first: '@A.0' }] }],
      },
      (n) => (asked.push(n), true),
    );
    expect(asked).toEqual(['a']);
    const out = p.byName.get('Out')!;
    expect([out.kind, out.algorithmName, out.isBatch]).toEqual(['output', '', false]);
    expect(p.leaves).toEqual(['Out']);
    expect(buildTaskInputs(out, {}, outs({ A: batchOf(inline([5]), inline([6])) }))).toEqual({
      batch: false,
      inputs: [[{ all: [[5], [6]], first: [5, 6] }]],
    });
  });

  it('ignores a given algorithm name', () => {
    const p = parsePipeline(
      { name: 'p', nodes: [{ nodeName: 'Out', kind: 'output', algorithmName: 'nope', input: [1] }] },
      () => false,
    );
    expect(p.byName.get('Out')!.algorithmName).toBe('');
  });

  it('must be leaves, with the exact message', () => {
    const e = expectInvalid(
      () =>
        pipe([
          A,
          { nodeName: 'Out', kind: 'output', input: ['@A'] },
          { nodeName: 'Y', algorithmName: 'a', input: ['@Out'] },
        ]),
      'nodes[1].kind',
      /must be a leaf/,
    );
    expect(e.message).toBe('nodes[1].kind: node "Out": an output node must be a leaf; "Y" reads it');
  });

  it.each(['#@A', '*@A', '#[1,2]', '#[0...2]'])('cannot fan out: %j', (text) => {
    expectInvalid(
      () => pipe([A, { nodeName: 'Out', kind: 'output', input: [{ x: text }] }]),
      'nodes[1].input[0].x',
      /node "Out": an output node's input is the pipeline result, so it cannot fan out/,
    );
  });
});

describe('sub-pipelines', () => {
  const lookup =
    (...ds: Descriptor[]) =>
    (name: string): Descriptor | undefined =>
      ds.find((d) => d.name === name);
  const P = (nodeName: string, specName: string, extra: Partial<DescriptorNode> = {}): DescriptorNode => ({
    nodeName,
    kind: 'pipeline',
    spec: { name: specName },
    ...extra,
  });
  const inner: Descriptor = {
    name: 'inner',
    flowInput: { k: 'inner-k', j: 2, nested: { a: 0, b: 2 }, list: [1, 2] },
    nodes: [
      { nodeName: 'A', algorithmName: 'a', input: ['@flowInput.k', '#[0...2]'] },
      { nodeName: 'B', algorithmName: 'b', input: ['#@A.x', '@flowInput.j'], retry: { policy: 'Never' } },
    ],
  };
  const outer = (): Descriptor => ({
    name: 'outer',
    flowInput: { k: 'outer-k', nested: { a: 1 }, own: true },
    nodes: [
      { nodeName: 'Pre', algorithmName: 'pre' },
      P('S', 'inner'),
      { nodeName: 'Post', algorithmName: 'post', input: ['@S', '#@S.y', '@flowInput.j', '@Pre'] },
    ],
  });

  it('inlines the stored pipeline with renamed nodes and references', () => {
    const p = parsePipeline(outer(), known, lookup(inner));
    expect(p.nodes.map((n) => [n.nodeName, n.index, n.field, n.algorithmName])).toEqual([
      ['Pre', 0, 'nodes[0]', 'pre'],
      ['S-A', 1, 'nodes[1](inner).nodes[0]', 'a'],
      ['S-B', 2, 'nodes[1](inner).nodes[1]', 'b'],
      ['Post', 3, 'nodes[2]', 'post'],
    ]);
    expect(p.byName.has('S')).toBe(false);
    const [, a, b, post] = p.nodes as [ParsedNode, ParsedNode, ParsedNode, ParsedNode];
    expect((a.input[0] as RefSlot).ref).toEqual({
      source: 'flowInput',
      path: ['k'],
      mode: 'value',
      field: 'nodes[1](inner).nodes[0].input[0]',
    });
    expect(a.input[1]).toEqual(
      new LiteralBatchSlot([0, 1, 2], 'nodes[1](inner).nodes[0].input[1]', { start: 0, end: 2 }),
    );
    expect((b.input[0] as RefSlot).ref).toEqual({
      source: 'node',
      node: 'S-A',
      path: ['x'],
      mode: 'batch',
      field: 'nodes[1](inner).nodes[1].input[0]',
    });
    expect(b.retry).toEqual({ policy: 'Never', limit: 3 });
    expect(b.parents).toEqual(['S-A']);
    expect(a.children).toEqual(['S-B']);
    expect(a.savePaths).toEqual(['x']);
    expect(post.parents).toEqual(['S-B', 'Pre']);
    expect((post.input[1] as RefSlot).ref).toMatchObject({ node: 'S-B', path: ['y'], mode: 'batch' });
    expect(b.children).toEqual(['Post']);
    expect(b.savePaths).toEqual(['y']);
    expect(p.order).toEqual(['Pre', 'S-A', 'S-B', 'Post']);
    expect(p.leaves).toEqual(['Post']);
  });

  it('merges the stored flowInput under the submitted one, deeply; the submitted one wins', () => {
    const d = outer();
    const p = parsePipeline(d, known, lookup(inner));
    expect(p.flowInput).toEqual({
      k: 'outer-k',
      nested: { a: 1, b: 2 },
      own: true,
      j: 2,
      list: [1, 2],
    });
    // Neither descriptor is modified.
    expect(d.flowInput).toEqual({ k: 'outer-k', nested: { a: 1 }, own: true });
    expect(inner.flowInput).toEqual({ k: 'inner-k', j: 2, nested: { a: 0, b: 2 }, list: [1, 2] });
    // "@flowInput.j" in Post is only in the stored flowInput, and resolves against the merged one.
    const post = p.byName.get('Post')!;
    const r = buildTaskInputs(
      post,
      p.flowInput,
      outs({ 'S-B': batchOf(inline({ y: [7] })), Pre: single(inline('pre')) }),
    );
    expect(r.inputs).toEqual([[[{ y: [7] }], [7], 2, 'pre']]);
    expect(buildTaskInputs(p.byName.get('S-A')!, p.flowInput, outs({})).inputs[0]).toEqual(['outer-k', 0]);
  });

  it('without sub-pipelines flowInput is the submitted one', () => {
    const d = numbers();
    expect(parsePipeline(d, known).flowInput).toBe(d.flowInput);
  });

  it('rewrites *@X to the leaf, and checks that it is a batch node', () => {
    const batchy: Descriptor = { name: 'batchy', nodes: [{ nodeName: 'L', algorithmName: 'a', input: ['#[1,2]'] }] };
    const p = parsePipeline(
      { name: 'o', nodes: [P('S', 'batchy'), { nodeName: 'W', algorithmName: 'a', input: ['*@S.v'] }] },
      known,
      lookup(batchy),
    );
    expect(p.byName.get('W')!.waitAnyParents).toEqual(['S-L']);
    const e = expectInvalid(
      () =>
        parsePipeline(
          { name: 'o', nodes: [P('S', 'inner'), { nodeName: 'W', algorithmName: 'a', input: ['*@S'] }] },
          known,
          lookup({ ...inner, nodes: [{ nodeName: 'L', algorithmName: 'a' }] }),
        ),
      'nodes[1].input[0]',
      /batch node/,
    );
    expect(e.message).toBe(
      'nodes[1].input[0]: node "W": wait-any input "*@S" needs S to be a batch node (it reads sub-pipeline leaf "S-L", which is not one)',
    );
  });

  it('inlined nodes may be read by their new names', () => {
    const p = parsePipeline(
      { name: 'o', nodes: [P('S', 'inner'), { nodeName: 'Z', algorithmName: 'a', input: ['@S-A', '#@S-A.q'] }] },
      known,
      lookup(inner),
    );
    expect(p.byName.get('Z')!.parents).toEqual(['S-A']);
    expect(p.byName.get('S-A')!.savePaths).toEqual(['x', 'q']);
    expect(p.leaves).toEqual(['S-B', 'Z']);
  });

  it('a sub-pipeline with several leaves cannot be read as a whole', () => {
    const forked: Descriptor = {
      name: 'forked',
      nodes: [
        { nodeName: 'R', algorithmName: 'a' },
        { nodeName: 'L1', algorithmName: 'a', input: ['@R'] },
        { nodeName: 'L2', algorithmName: 'a', input: ['@R'] },
      ],
    };
    const e = expectInvalid(
      () =>
        parsePipeline(
          { name: 'o', nodes: [P('S', 'forked'), { nodeName: 'Y', algorithmName: 'a', input: [{ q: '#@S.x' }] }] },
          known,
          lookup(forked),
        ),
      'nodes[1].input[0].q',
      /several leaves/,
    );
    expect(e.message).toBe(
      'nodes[1].input[0].q: node "Y" reads sub-pipeline node "S" ("#@S.x"), which has several leaves ("S-L1", "S-L2"); reference one of them by name',
    );
    // Unread, or read by leaf name, it is fine.
    expect(parsePipeline({ name: 'o', nodes: [P('S', 'forked')] }, known, lookup(forked)).leaves).toEqual([
      'S-L1',
      'S-L2',
    ]);
    const p = parsePipeline(
      { name: 'o', nodes: [P('S', 'forked'), { nodeName: 'Y', algorithmName: 'a', input: ['@S-L2'] }] },
      known,
      lookup(forked),
    );
    expect(p.leaves).toEqual(['S-L1', 'Y']);
  });

  it('output nodes inside stay output nodes and are not the leaf outer nodes read', () => {
    const reporting: Descriptor = {
      name: 'reporting',
      nodes: [
        { nodeName: 'R', algorithmName: 'a' },
        { nodeName: 'Out', kind: 'output', input: ['@R'] },
      ],
    };
    const p = parsePipeline(
      { name: 'o', nodes: [P('S', 'reporting'), { nodeName: 'Y', algorithmName: 'a', input: ['@S'] }] },
      known,
      lookup(reporting),
    );
    expect(p.byName.get('S-Out')!.kind).toBe('output');
    expect(p.byName.get('Y')!.parents).toEqual(['S-R']);
    expect(p.byName.get('S-R')!.children).toEqual(['S-Out', 'Y']);
    expect(p.leaves).toEqual(['S-Out', 'Y']);
    // Reading the output node by name breaks its leaf rule.
    expectInvalid(
      () =>
        parsePipeline(
          { name: 'o', nodes: [P('S', 'reporting'), { nodeName: 'Y', algorithmName: 'a', input: ['@S-Out'] }] },
          known,
          lookup(reporting),
        ),
      'nodes[0](reporting).nodes[1].kind',
      /node "S-Out": an output node must be a leaf; "Y" reads it/,
    );
    // A node that a non-output node also reads is not the data leaf.
    const both: Descriptor = {
      name: 'both',
      nodes: [
        { nodeName: 'R', algorithmName: 'a' },
        { nodeName: 'Out', kind: 'output', input: ['@R'] },
        { nodeName: 'L', algorithmName: 'a', input: ['@R'] },
      ],
    };
    const q = parsePipeline(
      { name: 'o', nodes: [P('S', 'both'), { nodeName: 'Y', algorithmName: 'a', input: ['@S'] }] },
      known,
      lookup(both),
    );
    expect(q.byName.get('Y')!.parents).toEqual(['S-L']);
    const onlyOutput: Descriptor = { name: 'only', nodes: [{ nodeName: 'Out', kind: 'output', input: [1] }] };
    expectInvalid(
      () =>
        parsePipeline(
          { name: 'o', nodes: [P('S', 'only'), { nodeName: 'Y', algorithmName: 'a', input: ['@S'] }] },
          known,
          lookup(onlyOutput),
        ),
      'nodes[1].input[0]',
      /node "Y" reads sub-pipeline node "S" \("@S"\), but it has only output nodes to read \("S-Out"\)/,
    );
  });

  it('nests, renaming at every level and merging every flowInput', () => {
    const leafy: Descriptor = {
      name: 'leafy',
      flowInput: { deep: 'd', k: 'leafy-k' },
      nodes: [{ nodeName: 'X', algorithmName: 'x', input: ['@flowInput.deep'] }],
    };
    const middle: Descriptor = {
      name: 'middle',
      flowInput: { mid: 'm' },
      nodes: [
        { nodeName: 'M', algorithmName: 'm', input: ['@flowInput.mid'] },
        P('T', 'leafy'),
        { nodeName: 'N', algorithmName: 'n', input: ['@T', '@M'] },
      ],
    };
    const p = parsePipeline(
      {
        name: 'top',
        flowInput: { k: 'top-k' },
        nodes: [P('S', 'middle'), { nodeName: 'Y', algorithmName: 'y', input: ['@S.r'] }],
      },
      known,
      lookup(middle, leafy),
    );
    expect(p.nodes.map((n) => n.nodeName)).toEqual(['S-M', 'S-T-X', 'S-N', 'Y']);
    expect(p.byName.get('S-T-X')!.field).toBe('nodes[0](middle).nodes[1](leafy).nodes[0]');
    expect(p.byName.get('S-N')!.parents).toEqual(['S-T-X', 'S-M']);
    expect(p.byName.get('Y')!.parents).toEqual(['S-N']);
    expect(p.flowInput).toEqual({ k: 'top-k', mid: 'm', deep: 'd' });
    expect(p.order).toEqual(['S-M', 'S-T-X', 'S-N', 'Y']);

    // A nested pipeline node read from above resolves through every level.
    const wrapper: Descriptor = { name: 'wrapper', nodes: [P('T', 'leafy')] };
    const q = parsePipeline(
      { name: 'top', nodes: [P('S', 'wrapper'), { nodeName: 'Y', algorithmName: 'y', input: ['@S'] }] },
      known,
      lookup(wrapper, leafy),
    );
    expect(q.byName.get('Y')!.parents).toEqual(['S-T-X']);
  });

  it('the same stored pipeline may be used twice', () => {
    const p = parsePipeline(
      {
        name: 'o',
        nodes: [P('S1', 'inner'), P('S2', 'inner'), { nodeName: 'Y', algorithmName: 'a', input: ['@S1', '@S2'] }],
      },
      known,
      lookup(inner),
    );
    expect(p.nodes.map((n) => n.nodeName)).toEqual(['S1-A', 'S1-B', 'S2-A', 'S2-B', 'Y']);
    expect(p.byName.get('Y')!.parents).toEqual(['S1-B', 'S2-B']);
  });

  it('asks isKnownAlgorithm about inner algorithms and wraps inner errors', () => {
    const e = expectInvalid(
      () => parsePipeline(outer(), (n) => n !== 'b', lookup(inner)),
      'nodes[1].spec.name',
      /sub-pipeline "inner" is invalid/,
    );
    expect(e.message).toBe(
      'nodes[1].spec.name: node "S": sub-pipeline "inner" is invalid: nodes[1].algorithmName: node "B" uses unknown algorithm "b"',
    );
    const broken: Descriptor = { ...inner, nodes: [{ nodeName: 'A', algorithmName: 'a', input: ['@Gone'] }] };
    expectInvalid(
      () => parsePipeline(outer(), known, lookup(broken)),
      'nodes[1].spec.name',
      /node "S": sub-pipeline "inner" is invalid: nodes\[0\]\.input\[0\]: node "A" references unknown node "Gone"/,
    );
  });

  it('refuses a pipeline that includes itself, directly or not', () => {
    const selfish: Descriptor = { name: 'selfish', nodes: [P('Me', 'selfish')] };
    const e = expectInvalid(() => parsePipeline(selfish, known, lookup(selfish)), 'nodes[0].spec.name', /itself/);
    expect(e.message).toBe('nodes[0].spec.name: node "Me": pipeline "selfish" includes itself (selfish -> selfish)');
    const a: Descriptor = { name: 'a', nodes: [P('ToB', 'b')] };
    const b: Descriptor = { name: 'b', nodes: [{ nodeName: 'K', algorithmName: 'k' }, P('ToA', 'a')] };
    const e2 = expectInvalid(() => parsePipeline(a, known, lookup(a, b)), 'nodes[0].spec.name', /itself/);
    expect(e2.message).toBe(
      'nodes[0].spec.name: node "ToB": sub-pipeline "b" is invalid: nodes[1].spec.name: node "ToA": pipeline "a" includes itself (a -> b -> a)',
    );
  });

  it(`nests at most ${10} deep`, () => {
    const chain = (depth: number): Descriptor[] =>
      Array.from({ length: depth + 1 }, (_, i) => ({
        name: `p${i}`,
        nodes: i < depth ? [P('N', `p${i + 1}`)] : [{ nodeName: 'Leaf', algorithmName: 'a' }],
      }));
    const ten = chain(10);
    const p = parsePipeline(ten[0]!, known, lookup(...ten));
    expect(p.nodes.map((n) => n.nodeName)).toEqual([`${'N-'.repeat(10)}Leaf`]);
    const eleven = chain(11);
    const e = expectInvalid(() => parsePipeline(eleven[0]!, known, lookup(...eleven)), 'nodes[0].spec.name', /deep/);
    expect(e.message).toMatch(/node "N": sub-pipelines nest more than 10 deep \(p0 -> p1 -> .* -> p10 -> p11\)$/);
  });

  it.each<[string, DescriptorNode, string, RegExp]>([
    [
      'spec.name missing',
      { nodeName: 'S', kind: 'pipeline' },
      'nodes[1].spec.name',
      /node "S": is required for kind "pipeline"/,
    ],
    ['spec.name empty', P('S', ''), 'nodes[1].spec.name', /is required/],
    [
      'spec.name not a string',
      { nodeName: 'S', kind: 'pipeline', spec: { name: 3 } },
      'nodes[1].spec.name',
      /is required/,
    ],
    [
      'unknown pipeline',
      P('S', 'nope'),
      'nodes[1].spec.name',
      /^nodes\[1\]\.spec\.name: node "S" uses unknown pipeline "nope"$/,
    ],
    [
      'input given',
      P('S', 'inner', { input: ['@Pre'] }),
      'nodes[1].input',
      /node "S": a pipeline node takes no input: the nodes of "inner" read the job's flowInput/,
    ],
  ])('invalid: %s', (_label, node, field, re) => {
    const d = outer();
    d.nodes[1] = node;
    expectInvalid(() => parsePipeline(d, known, lookup(inner)), field, re);
  });

  it('is not supported without a pipeline store', () => {
    const e = expectInvalid(() => parsePipeline(outer(), known), 'nodes[1].kind', /not supported here/);
    expect(e.message).toBe(
      'nodes[1].kind: node "S": kind "pipeline" is not supported here (no pipeline store to find "inner" in)',
    );
  });

  it('inlined names may not clash with other nodes', () => {
    const d = outer();
    d.nodes.push({ nodeName: 'S-B', algorithmName: 'a' });
    const e = expectInvalid(() => parsePipeline(d, known, lookup(inner)), 'nodes[1].spec.name', /clash|also/);
    expect(e.message).toBe('nodes[1].spec.name: node "S": sub-pipeline node "B" becomes "S-B", which is also nodes[3]');
    // ...nor with each other: "X" + "Y-Z" and "X-Y" + "Z".
    const yz: Descriptor = { name: 'yz', nodes: [{ nodeName: 'Y-Z', algorithmName: 'a' }] };
    const z: Descriptor = { name: 'z', nodes: [{ nodeName: 'Z', algorithmName: 'a' }] };
    expectInvalid(
      () => parsePipeline({ name: 'o', nodes: [P('X', 'yz'), P('X-Y', 'z')] }, known, lookup(yz, z)),
      'nodes[1].spec.name',
      /node "X-Y": sub-pipeline node "Z" becomes "X-Y-Z", which is also node "Y-Z" of sub-pipeline node "X"/,
    );
  });

  it('runs the flattened pipeline end to end', () => {
    const p = parsePipeline(outer(), known, lookup(inner));
    const produced: Record<string, NodeOutput> = {};
    const seen: Record<string, unknown[][]> = {};
    for (const name of p.order) {
      const { batch, inputs } = buildTaskInputs(p.byName.get(name)!, p.flowInput, outs(produced));
      seen[name] = inputs;
      produced[name] = { batch, items: inputs.map((input) => inline({ x: [input[1]], y: [1, 2] })) };
    }
    expect(seen['S-A']).toEqual([
      ['outer-k', 0],
      ['outer-k', 1],
      ['outer-k', 2],
    ]);
    expect(seen['S-B']).toEqual([
      [[0], 2],
      [[1], 2],
      [[2], 2],
    ]);
    // Each S-B item is {x: [2], y: [1, 2]}; Post batches over the y of each of the 3 items.
    const item = { x: [2], y: [1, 2] };
    const pre = { x: [undefined], y: [1, 2] };
    expect(seen['Post']).toEqual([0, 1, 2].map(() => [[item, item, item], [1, 2], 2, pre]));
  });
});

describe('toFlatDescriptor', () => {
  const inner: Descriptor = {
    name: 'inner',
    flowInput: { f: [1, 2] },
    nodes: [
      { nodeName: 'A', algorithmName: 'a', input: ['#[0...3]', '#[1,"x"]', { q: '#@flowInput.f' }] },
      { nodeName: 'W', algorithmName: 'w', input: ['*@A.v', '@A', 'plain'], ttl: 5 },
    ],
  };
  const d: Descriptor = {
    name: 'top',
    flowInput: { g: 1 },
    nodes: [
      { nodeName: 'S', kind: 'pipeline', spec: { name: 'inner' } },
      { nodeName: 'Out', kind: 'output', input: ['@S', '@flowInput.g'], spec: { format: 'json' } },
      {
        nodeName: 'C',
        algorithmName: 'c',
        input: ['#[1,2]', '#@S'],
        batchOperation: 'cartesian',
        retry: { policy: 'Always', limit: 7 },
      },
    ],
    options: { concurrentPipelines: { amount: 3 } },
    webhooks: { result: 'http://h/r' },
    triggers: { cron: { pattern: '* * * * *', enabled: true }, pipelines: ['x'] },
    priority: 4,
    tags: ['t'],
  };

  it('renders the flattened pipeline back to a descriptor that parses to the same graph, without a lookup', () => {
    const p = parsePipeline(d, known, (n) => (n === 'inner' ? inner : undefined));
    const flat = toFlatDescriptor(p);
    expect(flat.nodes).toEqual([
      {
        nodeName: 'S-A',
        algorithmName: 'a',
        kind: 'algorithm',
        input: ['#[0...3]', '#[1,"x"]', { q: '#@flowInput.f' }],
        retry: { policy: 'OnCrash', limit: 3 },
        ttl: 0,
        batchOperation: 'indexed',
      },
      {
        nodeName: 'S-W',
        algorithmName: 'w',
        kind: 'algorithm',
        input: ['*@S-A.v', '@S-A', 'plain'],
        retry: { policy: 'OnCrash', limit: 3 },
        ttl: 5,
        batchOperation: 'indexed',
      },
      {
        nodeName: 'Out',
        kind: 'output',
        input: ['@S-W', '@flowInput.g'],
        retry: { policy: 'OnCrash', limit: 3 },
        ttl: 0,
        batchOperation: 'indexed',
        spec: { format: 'json' },
      },
      {
        nodeName: 'C',
        algorithmName: 'c',
        kind: 'algorithm',
        input: ['#[1,2]', '#@S-W'],
        retry: { policy: 'Always', limit: 7 },
        ttl: 0,
        batchOperation: 'cartesian',
      },
    ]);
    expect(flat.flowInput).toEqual({ g: 1, f: [1, 2] });
    expect(flat.options).toEqual({
      batchTolerance: 80,
      concurrentPipelines: { amount: 3, rejectOnFailure: true },
      ttl: 0,
      activeTtl: 0,
      progressVerbosityLevel: 'info',
    });
    const again = parsePipeline(JSON.parse(JSON.stringify(flat)) as Descriptor, known);
    const shape = (q: typeof p) =>
      q.nodes.map((n) => ({ ...n, field: '', input: toFlatDescriptor(q).nodes[n.index]!.input }));
    expect(shape(again)).toEqual(shape(p));
    expect(again.order).toEqual(p.order);
    expect(again.leaves).toEqual(p.leaves);
    expect(again.flowInput).toEqual(p.flowInput);
    expect([again.options, again.webhooks, again.triggers, again.priority, again.tags]).toEqual([
      p.options,
      p.webhooks,
      p.triggers,
      p.priority,
      p.tags,
    ]);
  });
});

describe('flowInput given later', () => {
  it('lets a stored pipeline reference flowInput keys that only exec will supply', () => {
    const d = { name: 'p', nodes: [{ nodeName: 'A', algorithmName: 'a', input: ['@flowInput.n'] }] };
    expect(() => parsePipeline(d, () => true)).toThrow(/nodes\[0\]\.input\[0\].*flowInput has no key "n"/);
    expect(parsePipeline(d, () => true, undefined, { flowInputLater: true }).order).toEqual(['A']);
  });
});
