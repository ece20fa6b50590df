import { NodeState, type NodeStatus } from '@weft/proto';
import { formatTable, nodeCounts, nodeStateName, type Json } from './output.js';

/**
 * The nodes in an order where every node comes after its parents. Among the
 * nodes that could come next, children of the node placed last are preferred
 * (so a chain stays together, as in a tree), then pipeline order. Nodes on a
 * cycle, which a valid pipeline cannot have, follow in pipeline order.
 */
export function topologicalOrder(nodes: readonly NodeStatus[]): NodeStatus[] {
  const names = new Set(nodes.map((n) => n.nodeName));
  // Parents outside the job (none in a valid status) do not hold a node back.
  const waitingFor = new Map(nodes.map((n) => [n, new Set(n.parents.filter((p) => names.has(p) && p !== n.nodeName))]));
  const position = new Map<string, number>();
  const order: NodeStatus[] = [];
  const left = [...nodes];
  while (left.length > 0) {
    let best = -1;
    let bestAnchor = -Infinity;
    left.forEach((node, i) => {
      if ((waitingFor.get(node)?.size ?? 0) > 0) return;
      const anchor = Math.max(-1, ...node.parents.map((p) => position.get(p) ?? -1));
      if (anchor > bestAnchor) {
        best = i;
        bestAnchor = anchor;
      }
    });
    if (best < 0) best = 0;
    const [next] = left.splice(best, 1);
    if (!next) break;
    position.set(next.nodeName, order.length);
    order.push(next);
    for (const waiting of waitingFor.values()) waiting.delete(next.nodeName);
  }
  return order;
}

/** The mark in front of a node's state: `✓ succeeded`. */
function stateMark(state: NodeState): string {
  switch (state) {
    case NodeState.NODE_STATE_SUCCEEDED:
      return '✓';
    case NodeState.NODE_STATE_FAILED:
      return '✗';
    case NodeState.NODE_STATE_ACTIVE:
      return '●';
    case NodeState.NODE_STATE_PENDING:
      return '○';
    case NodeState.NODE_STATE_SKIPPED:
      return '-';
    case NodeState.NODE_STATE_STOPPED:
      return '■';
    default:
      return '?';
  }
}

/** Counts of a node in the graph: `3/5 (1 failed, 1 skipped)`. */
function graphCounts(node: NodeStatus): string {
  const extra: string[] = [];
  if (node.failed > 0) extra.push(`${node.failed} failed`);
  if (node.skipped > 0) extra.push(`${node.skipped} skipped`);
  return extra.length > 0 ? `${nodeCounts(node)} (${extra.join(', ')})` : nodeCounts(node);
}

/**
 * The text of `weft exec graph`: one line per node in topological order,
 * each indented below one of its parents, e.g.
 *
 * ```text
 * Range               ✓ succeeded  1/1
 *   └─> Multiply      ● active     3/5 (1 failed, 1 skipped)
 *         └─> Reduce  ○ pending    0/? (after Multiply, Range)
 * ```
 *
 * A node hangs below its parent placed last. Whenever the layout alone does
 * not tell all of a node's parents (several parents, or the parent is not
 * the nearest line above at the outer level), `(after A, B)` lists them, so
 * every edge is shown.
 */
export function graphLines(nodes: readonly NodeStatus[]): string[] {
  const order = topologicalOrder(nodes);
  const depth = new Map<string, number>();
  const rows: string[][] = [];
  const depths: number[] = [];
  order.forEach((node, i) => {
    // The parent placed last: the node is drawn below it.
    let anchor: NodeStatus | undefined;
    for (let j = i - 1; j >= 0 && !anchor; j--) {
      const candidate = order[j];
      if (candidate && node.parents.includes(candidate.nodeName)) anchor = candidate;
    }
    const d = anchor ? (depth.get(anchor.nodeName) ?? 0) + 1 : 0;
    depth.set(node.nodeName, d);
    // What the drawing says the parent is: the nearest line above at a smaller depth.
    let drawnParent: string | undefined;
    for (let j = i - 1; j >= 0; j--) {
      if ((depths[j] ?? 0) < d) {
        drawnParent = order[j]?.nodeName;
        break;
      }
    }
    const parents = node.parents.filter((p) => p !== '');
    const implied = parents.length === 1 && anchor !== undefined && drawnParent === anchor.nodeName;
    const after = parents.length > 0 && !implied ? ` (after ${parents.join(', ')})` : '';
    const prefix = d === 0 ? '' : `${' '.repeat(6 * (d - 1) + 2)}└─> `;
    rows.push([
      `${prefix}${node.nodeName}`,
      `${stateMark(node.state)} ${nodeStateName(node.state)}`,
      graphCounts(node) + after,
    ]);
    depths.push(d);
  });
  return formatTable(rows);
}

/** The `-o json` document of `weft exec graph`, nodes in topological order. */
export function graphJson(nodes: readonly NodeStatus[]): Json {
  return {
    nodes: topologicalOrder(nodes).map((node) => ({
      nodeName: node.nodeName,
      state: nodeStateName(node.state),
      total: node.total,
      succeeded: node.succeeded,
      failed: node.failed,
      skipped: node.skipped,
      parents: [...node.parents],
    })),
  };
}
