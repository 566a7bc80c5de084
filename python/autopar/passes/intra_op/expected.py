"""The collectives a plan expects XLA to emit, derived from the chosen strategies exactly as the cost model
prices them: per op, the all-reduce (or reduce-scatter) of partial sums over the mesh axes a reduction
factor is split on; per operand whose producer's layout differs from the one the op needs, the all-gather
(axes that are sharded and must be replicated) and the all-to-all (axes that shard another dim); per
parameter, the reshard from its update's layout back to its own.

Bytes are per device, of what the collective produces (as `autopar.runtime.hlo` reads them from XLA's
compiled program), so the two can be compared: benchmarks/plan_fidelity.py does, on real models.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from autopar.cost import MeshModel
from autopar.passes.intra_op.graph import Graph, collective_itemsizes
from autopar.passes.intra_op.graph_facts import parameter_results
from autopar.passes.intra_op.problem import Problem
from autopar.passes.intra_op.resharding import MOVE_FIRST, gather_steps, reshard_steps
from autopar.passes.intra_op.strategies import shards_of, tensor_bytes


@dataclasses.dataclass(frozen=True)
class Expected:
    """One kind of collective over one set of mesh axes: how many, and their bytes per device in all."""

    kind: str
    axes: tuple[str, ...]
    count: int
    bytes: int


def expected_collectives(
    graph: Graph, problem: Problem, chosen: list[int], mesh: MeshModel
) -> list[Expected]:
    """Every collective the plan prices, summed by (kind, axes), in a fixed order."""
    totals: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for kind, axes, size in _collectives(graph, problem, chosen, mesh):
        names = tuple(mesh.axis_names[a] for a in axes)
        entry = totals.setdefault((kind, names), [0, 0])
        entry[0] += 1
        entry[1] += int(size)
    return [Expected(kind, axes, c, b) for (kind, axes), (c, b) in sorted(totals.items())]


def _collectives(
    graph: Graph, problem: Problem, chosen: list[int], mesh: MeshModel
) -> Iterator[tuple[str, tuple[int, ...], float]]:
    seen: set[tuple] = set()  # one reshard per value and target layout: the emitter shares it
    for v, node in enumerate(graph.nodes):
        s = problem.strategies[v]
        if node.rule is not None and node.kind != "arg":
            yield from _reductions(node, s, chosen[v], mesh)
        for k, (u, r) in enumerate(node.operands):
            produced = problem.strategies[u].result_layouts[r][chosen[u]]
            required = s.operand_layouts[k][chosen[v]]
            if np.array_equal(produced, required):
                continue  # no reshard (most operands: skipping them keeps planning fast)
            key = (u, r, node.operand_copies[k], required.tobytes())
            if key in seen:
                continue
            seen.add(key)
            itemsize = collective_itemsizes(graph.nodes[u], mesh)[r]
            yield from _reshard(produced, required, node.operand_shapes[k], itemsize, mesh)
    for v, j in parameter_results(graph).items():
        u, r = graph.returns[j]
        produced = problem.strategies[u].result_layouts[r][chosen[u]]
        required = problem.strategies[v].result_layouts[0][chosen[v]]
        node = graph.nodes[v]
        if not np.array_equal(produced, required):
            itemsize = collective_itemsizes(node, mesh)[0]
            yield from _reshard(produced, required, node.result_shapes[0], itemsize, mesh)


def _reductions(node, s, choice: int, mesh: MeshModel) -> Iterator[tuple[str, tuple[int, ...], float]]:
    assignment = s.assignment[choice]
    reduced = tuple(a for a, f in enumerate(assignment) if f >= 0 and f in node.rule.reduction)
    if not reduced:
        return
    sizes = collective_itemsizes(node, mesh)
    for r, (shape, itemsize) in enumerate(zip(node.result_shapes, sizes, strict=True)):
        layout = s.result_layouts[r][choice]
        size = tensor_bytes(shape, itemsize) / int(shards_of(layout[None, :], mesh.shape)[0])
        scattered = any(layout[a] >= 0 for a in reduced)
        yield ("reduce-scatter" if scattered else "all-reduce"), reduced, size


def _reshard(
    produced: np.ndarray, required: np.ndarray, shape, itemsize: int, mesh: MeshModel
) -> Iterator[tuple[str, tuple[int, ...], float]]:
    per_device = tensor_bytes(shape, itemsize) / math.prod(
        mesh.shape[a] for a in range(len(mesh.shape)) if required[a] >= 0
    )
    gather, move, permute, remat, order, unsliced = reshard_steps(
        produced[None, :], required[None, :], mesh.shape
    )
    gathered = tuple(a for a in range(len(mesh.shape)) if int(gather[0, 0]) >> a & 1)
    before_slices = per_device * float(unsliced[0, 0])  # slices come last: collectives carry more
    for kind, mask in (("all-to-all", move), ("collective-permute", permute)):
        axes = tuple(a for a in range(len(mesh.shape)) if int(mask[0, 0]) >> a & 1)
        if not axes:
            continue
        size = before_slices
        if kind == "all-to-all" and order[0, 0] == MOVE_FIRST:  # still split over the gathered axes
            size = before_slices / math.prod(mesh.shape[a] for a in gathered)
        yield kind, axes, size
    # One all-gather per tensor dim, the last dim first; a rematerialization's produce the whole tensor.
    gathered_bytes = tensor_bytes(shape, itemsize) if bool(remat[0, 0]) else before_slices
    for mask, share, _ in gather_steps(produced[None, :], gather, tuple(shape), mesh.shape):
        axes = tuple(a for a in range(len(mesh.shape)) if int(mask[0, 0]) >> a & 1)
        yield "all-gather", axes, gathered_bytes * float(share[0, 0])
