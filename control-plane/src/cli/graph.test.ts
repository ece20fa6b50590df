import { describe, expect, it } from 'vitest';
import { NodeState, type NodeStatus } from '@weft/proto';
import { graphJson, graphLines, topologicalOrder } from './graph.js';

function node(nodeName: string, parents: string[], partial: Partial<NodeStatus> = {}): NodeStatus {
  return {
    nodeName,
    algorithmName: nodeName.toLowerCase(),
    state: NodeState.NODE_STATE_SUCCEEDED,
    total: 1,
    pending: 0,
    active: 0,
    succeeded: 1,
    failed: 0,
    batch: false,
    errors: [],
    skipped: 0,
    parents,
    ...partial,
  };
}

const names = (nodes: NodeStatus[]): string[] => nodes.map((n) => n.nodeName);

describe('topologicalOrder', () => {
  it('puts parents first, whatever the pipeline order', () => {
    expect(
      names(topologicalOrder([node('Reduce', ['Multiply']), node('Multiply', ['Range']), node('Range', [])])),
    ).toEqual(['Range', 'Multiply', 'Reduce']);
  });

  it('keeps a chain together before starting the next root', () => {
    const nodes = [node('R1', []), node('R2', []), node('Q', ['R2']), node('P', ['R1']), node('W', ['R1'])];
    expect(names(topologicalOrder(nodes))).toEqual(['R1', 'P', 'W', 'R2', 'Q']);
  });

  it('survives cycles and parents that are not nodes', () => {
    const nodes = [node('A', ['B']), node('B', ['A']), node('C', ['flowInput'])];
    expect(names(topologicalOrder(nodes)).sort()).toEqual(['A', 'B', 'C']);
  });
});

describe('graphLines', () => {
  it('draws a chain with states and counts', () => {
    expect(
      graphLines([
        node('Range', []),
        node('Multiply', ['Range'], {
          state: NodeState.NODE_STATE_ACTIVE,
          total: 5,
          succeeded: 3,
          failed: 1,
          skipped: 1,
          batch: true,
        }),
        node('Reduce', ['Multiply', 'Range'], { state: NodeState.NODE_STATE_PENDING, total: 0, succeeded: 0 }),
      ]),
    ).toEqual([
      'Range               ✓ succeeded  1/1',
      '  └─> Multiply      ● active     3/5 (1 failed, 1 skipped)',
      '        └─> Reduce  ○ pending    0/? (after Multiply, Range)',
    ]);
  });

  it('shows every edge of a diamond and of several roots', () => {
    expect(
      graphLines([
        node('A', []),
        node('B', ['A']),
        node('C', ['A'], { state: NodeState.NODE_STATE_FAILED, succeeded: 0, failed: 1 }),
        node('D', ['B', 'C'], { state: NodeState.NODE_STATE_SKIPPED, total: 0, succeeded: 0 }),
        node('E', []),
      ]),
    ).toEqual([
      'A              ✓ succeeded  1/1',
      '  └─> B        ✓ succeeded  1/1',
      '  └─> C        ✗ failed     0/1 (1 failed)',
      '        └─> D  - skipped    0/? (after B, C)',
      'E              ✓ succeeded  1/1',
    ]);
  });

  it('names a parent the layout cannot show', () => {
    expect(graphLines([node('A', ['missing'])])).toEqual(['A  ✓ succeeded  1/1 (after missing)']);
  });
});

describe('graphJson', () => {
  it('lists the nodes in topological order with lowercase states', () => {
    expect(
      graphJson([node('B', ['A'], { state: NodeState.NODE_STATE_ACTIVE, total: 4, skipped: 2 }), node('A', [])]),
    ).toEqual({
      nodes: [
        { nodeName: 'A', state: 'succeeded', total: 1, succeeded: 1, failed: 0, skipped: 0, parents: [] },
        { nodeName: 'B', state: 'active', total: 4, succeeded: 1, failed: 0, skipped: 2, parents: ['A'] },
      ],
    });
  });
});
