"""Why no sharding plan satisfies the pass's options: the op whose every layout they rule out, or the memory
the layouts they allow need at least.

The solver answers "infeasible" for the strategy problem as a whole; a user of `allow-all-gather=false`,
`zero-stage=3` or `allow-replicated-parameters=false` needs to know which op the options cannot lay out, and
a user of `memory-budget` what to raise it to. Both come from arc consistency over the problem's forbidden
entries (strategies.FORBIDDEN): a layout of one node is dropped when some neighbour has no allowed layout it
can meet without a forbidden reshard. When that empties a node, the node and the neighbour that emptied it
are the conflict; otherwise the layouts left bound the peak memory from below, tighter than
`Problem.min_peak_memory`, which counts every layout.

Arc consistency is exact about single nodes and single edges only: options can still conflict around a
cycle of ops with every node keeping some layout. The pass then says that no plan satisfies the options
without naming an op.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from autopar.passes.intra_op import problem as problem_lib
from autopar.passes.intra_op.graph import Graph, Node
from autopar.passes.intra_op.strategies import FORBIDDEN


@dataclasses.dataclass(frozen=True)
class Conflict:
    """`node` has no layout left once the options' forbidden entries are propagated; `neighbour` is the
    node whose remaining layouts emptied it (None when the node's own costs forbid every layout)."""

    node: int
    neighbour: int | None


def allowed_layouts(prob: problem_lib.Problem) -> list[np.ndarray] | Conflict:
    """Per node, a mask of the layouts arc consistency keeps, or the first node it empties."""
    allowed = [np.asarray(c) < FORBIDDEN for c in prob.node_costs]
    for v, mask in enumerate(allowed):
        if not mask.any():
            return Conflict(v, None)
    touching: list[list[int]] = [[] for _ in allowed]
    tables = []
    for e, ((u, v), cost) in enumerate(zip(prob.edges, prob.edge_costs, strict=True)):
        tables.append(np.asarray(cost).reshape(len(allowed[u]), len(allowed[v])) < FORBIDDEN)
        touching[u].append(e)
        touching[v].append(e)
    queue, queued = collections.deque(range(len(allowed))), [True] * len(allowed)
    while queue:
        w = queue.popleft()
        queued[w] = False
        for e in touching[w]:
            u, v = (int(x) for x in prob.edges[e])
            other = v if u == w else u
            # A layout of `other` stays when some allowed layout of `w` meets it without a forbidden reshard.
            meets = tables[e][allowed[w], :].any(axis=0) if u == w else tables[e][:, allowed[w]].any(axis=1)
            kept = allowed[other] & meets
            if kept.sum() == allowed[other].sum():
                continue
            allowed[other] = kept
            if not kept.any():
                return Conflict(other, w)
            if not queued[other]:
                queue.append(other)
                queued[other] = True
    return allowed


def min_peak_memory(prob: problem_lib.Problem, allowed: list[np.ndarray]) -> int:
    """The peak memory per device every plan within `allowed` needs at least: per node its smallest
    allowed layout, live over its interval."""
    usage = np.array([u[mask].min() for u, mask in zip(prob.node_usages, allowed, strict=True)], np.int64)
    return problem_lib.peak(prob.intervals, usage)


def describe(graph: Graph, v: int) -> str:
    """A node as the user wrote it: an argument by its pytree path, an op by its name and source line."""
    node: Node = graph.nodes[v]
    if node.kind == "arg":
        return node.path or f"argument {v}"  # graph.argument_paths: `batch['image']` or `argument 1`
    return f"{node.kind} at {problem_lib.where(node)}"


def options_in_force(config) -> str:
    """The pass options that forbid layouts or reshards, as the user set them."""
    named = []
    if not config.allow_all_gather:
        named.append("allow-all-gather=false")
    if not config.allow_replicated_parameters:
        named.append("allow-replicated-parameters=false")
    if config.force_data_parallel:
        named.append("force-data-parallel")
    if config.force_batch_dim_to_mesh_dim >= 0:
        named.append(f"force-batch-dim-to-mesh-dim={config.force_batch_dim_to_mesh_dim}")
    if config.zero_stage:
        named.append(f"zero-stage={config.zero_stage}")
    return ", ".join(named)


def explain(graph: Graph, prob: problem_lib.Problem, config) -> str:
    """One line: why no plan satisfies the options (and the memory budget), and what to change."""
    options = options_in_force(config)
    # Without such options the forbidden entries are the planner's own (layouts XLA miscompiles).
    head = f"no sharding plan satisfies the options ({options})" if options else "no sharding plan exists"
    found = allowed_layouts(prob)
    if isinstance(found, Conflict):
        cause = f"they forbid every layout of {describe(graph, found.node)}"
        if found.neighbour is not None:
            cause = (
                f"{describe(graph, found.node)} cannot meet any layout they allow for "
                f"{describe(graph, found.neighbour)} without a reshard they forbid"
            )
        return f"{head}: {cause}; relax them"
    budget = config.memory_budget
    if budget:
        floor = min_peak_memory(prob, found)
        if floor > budget:
            return (
                f"{head} within memory-budget={budget} bytes per device: the layouts they allow need at "
                f"least {floor} bytes per device; raise memory-budget to that or relax them"
            )
        return (
            f"{head} within memory-budget={budget} bytes per device: no plan that avoids the reshards they "
            f"forbid fits it (the layouts they allow need {floor} bytes per device or more); raise "
            "memory-budget or relax them"
        )
    return f"{head}: every plan needs a reshard they forbid; relax them"
