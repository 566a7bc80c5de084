"""An argument that several ops read is gathered once for all of them, and priced once.

The strategy problem prices resharding on edges, one per reader. The emitter writes one reshard per value
and target layout, and XLA runs it once, so a parameter that ZeRO-3 keeps split and that a forward and a
backward matmul both read whole pays two all-gathers in the model and one in the program. On the small
transformer of benchmarks/cost_model.py that put the ZeRO-3 plan about 9 ms (of 0.2 s) above what its
compiled collectives cost, and ranked it two places too low.

An edge cannot say "once per value". A node can: such an argument's strategies become pairs (its layout
p, a layout g it is gathered into), g being p with some of its mesh axes dropped (p itself: no gather).
The pair pays the p -> g reshard once, on the node; an edge to a reader that needs g costs nothing, and
every other reader pays its own reshard from p as before. The choice g = p prices exactly as the edges
did, so the model never gets worse; it is exact whenever the readers need at most one layout besides p.

Before (a 2-D parameter split over an 8-device axis, read by two dots that need it whole):
    strategies [P('x'), P(), P(None, 'x')], each dot's edge: all-gather when the argument is P('x')
After:
    strategies [P('x'), P('x') gathered to P(), P(), P(None, 'x'), P(None, 'x') gathered to P()], the
    gathered ones paying one all-gather on the node and nothing on the edges of readers that need P()

Only arguments get pairs: their strategies are few (layouts only), while an op's strategy list multiplied
by its result's sub-layouts would grow the problem far more, and on the plans of benchmarks/cost_model.py
the values computed in the step account for under a tenth of the double-priced reshards.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools

import numpy as np

from autopar.passes.intra_op import resharding
from autopar.passes.intra_op import strategies as strat
from autopar.passes.intra_op.config import PlanConfig
from autopar.passes.intra_op.graph import Graph, collective_itemsizes


def gather_once(
    graph: Graph, node_strategies: list[strat.Strategies], config: PlanConfig
) -> list[strat.Strategies]:
    """The strategies with every argument that two or more operands can read in one layout expanded into
    (layout, gathered) pairs, for the gathered layouts two readers can share (no others: they would
    only grow the problem)."""
    wanted = _shared_requirements(graph, node_strategies)
    out = list(node_strategies)
    memo: dict[tuple, strat.Strategies] = {}  # arguments of one signature share their Strategies
    for v, layouts in wanted.items():
        node, s = graph.nodes[v], node_strategies[v]
        itemsize = collective_itemsizes(node, config.mesh)[0]
        key = (id(s), node.result_shapes[0], itemsize, layouts)
        if key not in memo:
            memo[key] = _with_gathers(s, node.result_shapes[0], itemsize, config, layouts)
        out[v] = memo[key]
    return out


def _shared_requirements(graph: Graph, node_strategies: list[strat.Strategies]) -> dict[int, frozenset]:
    """Per argument (non-scalar), the layouts (as bytes) that at least two of its readers' operands can
    require."""
    counts: dict[int, collections.Counter] = {}
    for v, node in enumerate(graph.nodes):
        for k, (u, _) in enumerate(node.operands):
            if u >= graph.num_args or not graph.nodes[u].result_shapes[0]:
                continue
            rows = {row.tobytes() for row in np.unique(node_strategies[v].operand_layouts[k], axis=0)}
            counts.setdefault(u, collections.Counter()).update(rows)
    out = {}
    for u, count in counts.items():
        layouts = frozenset(row for row, n in count.items() if n >= 2)
        if layouts:
            out[u] = layouts
    return out


def _with_gathers(
    s: strat.Strategies, shape: tuple[int, ...], itemsize: int, config: PlanConfig, wanted: frozenset
) -> strat.Strategies:
    layouts = s.result_layouts[0]
    index, rows = [], []
    for i, layout in enumerate(layouts):
        sharded = np.flatnonzero(layout >= 0)
        for dropped in itertools.product((False, True), repeat=len(sharded)):  # no gather first
            gathered = layout.copy()
            gathered[sharded[np.asarray(dropped, dtype=bool)]] = -1
            if any(dropped) and gathered.tobytes() not in wanted:
                continue
            index.append(i)
            rows.append(gathered)
    if len(rows) == len(layouts):
        return s  # no reader can share a gather of this argument
    gathered = np.asarray(rows, dtype=np.int8)
    produced = layouts[np.asarray(index)]
    cost = resharding.reshard_cost(
        produced, gathered, shape, itemsize, config.mesh, config.allow_all_gather, config.allow_all_to_all
    )
    gather = np.diagonal(cost).copy()
    expanded = dataclasses.replace(s.take(np.asarray(index)), gathered=gathered)
    expanded = dataclasses.replace(expanded, cost=expanded.cost + gather)
    return expanded.take(gather < strat.FORBIDDEN / 10)


def shared(cost: np.ndarray, gathered: np.ndarray | None, required: np.ndarray) -> np.ndarray:
    """An edge's [S_u, S_v] reshard table from an argument with `gathered` layouts: free where the reader
    needs the layout the argument is gathered into (the node paid for it)."""
    if gathered is None:
        return cost
    match = (required[None, :, :] == gathered[:, None, :]).all(axis=-1)
    return np.where(match, 0.0, cost)
