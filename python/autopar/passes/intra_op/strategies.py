"""Strategies of one op from its Shardy sharding rule (reshards between layouts: resharding.py).

A *layout* of a tensor on a mesh with A axes is an int8 vector of length A: entry a is the tensor dim that
mesh axis a shards, or -1 (replicated along a). A dim sharded by several axes lists them in mesh order.

A *strategy* of an op assigns every mesh axis of size > 1 to at most one factor of the op's sharding rule
(or to none). It fixes the layout every operand must arrive in, the layout of every result, the share of
the work each device does, and the collectives it needs: a mesh axis on a reduction factor leaves partial
sums, all-reduced (or, with prefer-reduce-scatter, reduce-scattered onto a result dim). One mechanism
covers every op Shardy describes; ops it does not describe get the single replicated strategy.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import numpy as np

from autopar.cost import MeshModel
from autopar.passes.intra_op import dot_shape
from autopar.passes.intra_op.graph import Rule

FORBIDDEN = 1.0e18
# Ops whose work is multiply-accumulate over all factors: 2 flops per point of the factor space. These are
# the heavy ops that allow-recompute-heavy-op=false keeps from running replicated.
HEAVY_OPS = _MAC_OPS = frozenset({"stablehlo.dot_general", "stablehlo.dot", "stablehlo.convolution"})


@dataclasses.dataclass(frozen=True)
class Strategies:
    """The strategies of one node, as arrays over its strategy index s.

    Attributes:
      operand_layouts: per operand, int8 [S, A].
      result_layouts: per result, int8 [S, A].
      cost: compute plus own collectives, seconds [S].
      memory: bytes per device of all results [S].
      assignment: int16 [S, A], the factor each mesh axis shards (-1: none); for args, the dim.
      gathered: for an argument several ops read (`gathers.gather_once`), int8 [S, A]: the layout it is
        gathered into once for all the readers that need it (equal to its own layout: none); else None.
    """

    operand_layouts: tuple[np.ndarray, ...]
    result_layouts: tuple[np.ndarray, ...]
    cost: np.ndarray
    memory: np.ndarray
    assignment: np.ndarray
    gathered: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.cost.shape[0])

    def take(self, keep: np.ndarray) -> Strategies:
        return Strategies(
            tuple(lay[keep] for lay in self.operand_layouts),
            tuple(lay[keep] for lay in self.result_layouts),
            self.cost[keep],
            self.memory[keep],
            self.assignment[keep],
            None if self.gathered is None else self.gathered[keep],
        )


def shards_of(layouts: np.ndarray, mesh_shape: tuple[int, ...]) -> np.ndarray:
    """Devices each tensor is split over, per layout row."""
    sizes = np.asarray(mesh_shape, dtype=np.int64)
    return np.prod(np.where(layouts >= 0, sizes[None, :], 1), axis=1)


def tensor_bytes(shape: tuple[int, ...], itemsize: int) -> int:
    return math.prod(shape) * itemsize


@functools.lru_cache(maxsize=4096)
def argument_strategies(
    shape: tuple[int, ...], itemsize: int, mesh: MeshModel, active: tuple[int, ...]
) -> Strategies:
    """Every layout of a tensor whose sharded dims divide evenly; the replicated layout first.

    Each device reads its part of every argument once: bigger parts cost more, so an input nobody needs
    whole does not arrive replicated.
    """
    mesh_shape = mesh.shape
    rows = []
    for choice in itertools.product(range(-1, len(shape)), repeat=len(active)):
        layout = [-1] * len(mesh_shape)
        for axis, dim in zip(active, choice, strict=True):
            layout[axis] = dim
        if _divides(shape, layout, mesh_shape):
            rows.append(layout)
    layouts = np.asarray(rows, dtype=np.int8).reshape(len(rows), len(mesh_shape))
    memory = tensor_bytes(shape, itemsize) // shards_of(layouts, mesh_shape)
    read_time = memory / mesh.device.memory_bandwidth
    return Strategies((), (layouts,), read_time, memory.astype(np.int64), layouts.astype(np.int16))


def replicated_strategy(
    operand_count: int,
    result_shapes: tuple[tuple[int, ...], ...],
    result_itemsizes: tuple[int, ...],
    num_axes: int,
    op_time: float,
) -> Strategies:
    """The one strategy of an op Shardy cannot describe (or a constant): everything replicated."""
    layout = np.full((1, num_axes), -1, dtype=np.int8)
    memory = sum(tensor_bytes(s, i) for s, i in zip(result_shapes, result_itemsizes, strict=True))
    return Strategies(
        tuple(layout for _ in range(operand_count)),
        tuple(layout for _ in result_shapes),
        np.array([op_time]),
        np.array([memory], dtype=np.int64),
        np.full((1, num_axes), -1, dtype=np.int16),
    )


def _divides(shape: tuple[int, ...], layout: list[int], mesh_shape: tuple[int, ...]) -> bool:
    for dim, size in enumerate(shape):
        split = math.prod(mesh_shape[a] for a, d in enumerate(layout) if d == dim)
        if size % split:
            return False
    return True


@dataclasses.dataclass(frozen=True)
class OpFacts:
    """Everything about an op that its strategies depend on (hashable: the enumeration is cached)."""

    name: str
    rule: Rule
    operand_shapes: tuple[tuple[int, ...], ...]
    operand_itemsizes: tuple[int, ...]
    result_shapes: tuple[tuple[int, ...], ...]
    result_itemsizes: tuple[int, ...]
    # Element sizes in collectives under MeshModel.device.widened_collectives (graph.collective_element_size);
    # () = result_itemsizes.
    result_wide_itemsizes: tuple[int, ...] = ()
    batch_groups: int = 1  # a convolution's batch_group_count (its weight gradient's, for a grouped conv)
    # A convolution whose input features form groups of more than one channel (1 < feature_group_count <
    # input features): XLA runs it replicated under any sharding (convolutions.grouped_features).
    grouped_features: bool = False
    # Factors kept whole: a batch-grouped convolution's kernel window dims (splitting them makes XLA
    # exchange halos, collective-permute, that no strategy prices; found on HF's FlaxRegNet) and the dims a
    # one-window scatter's index addresses (XLA miscompiles them split; scatters.py).
    whole_factors: frozenset[int] = frozenset()
    flops: float = 0.0  # a convolution's multiply-add FLOPs from its shapes (dot_shape; 0: from the rule)


# Ops that touch only a window of their big operand: XLA reads the slice (dynamic_slice) or writes the
# update into the operand's buffer in place (dynamic_update_slice), so they move the window's bytes, not
# the whole tensor's. A scan written out (autopar-unroll-loops) slices its stacked weights and writes its
# stacked gradients with them, once per layer.
_WINDOW_OPS = {"stablehlo.dynamic_slice": "result", "stablehlo.dynamic_update_slice": 1}


def _roofline(facts: OpFacts, mesh: MeshModel) -> tuple[float, float]:
    """(seconds of FLOPs, seconds of memory traffic) of the whole op on one device."""
    window = _WINDOW_OPS.get(facts.name)
    if window is not None:
        shape, itemsize = (
            (facts.result_shapes[0], facts.result_itemsizes[0])
            if window == "result"
            else (facts.operand_shapes[window], facts.operand_itemsizes[window])
        )
        moved = 2 * tensor_bytes(shape, itemsize)  # read it, write it
        return float(math.prod(shape)) / mesh.device.flops, moved / mesh.device.memory_bandwidth
    moved = sum(
        tensor_bytes(s, i) for s, i in zip(facts.operand_shapes, facts.operand_itemsizes, strict=True)
    )
    moved += sum(tensor_bytes(s, i) for s, i in zip(facts.result_shapes, facts.result_itemsizes, strict=True))
    if facts.name in _MAC_OPS:
        flops = facts.flops or 2.0 * math.prod(facts.rule.factor_sizes)
    elif facts.rule.reduction:
        flops = float(math.prod(facts.rule.factor_sizes))
    else:
        flops = float(sum(math.prod(s) for s in facts.result_shapes))
    return flops / mesh.device.flops, moved / mesh.device.memory_bandwidth


def op_time(facts: OpFacts, mesh: MeshModel) -> float:
    """Roofline time of the whole op on one device (0 for a broadcast when the device fuses them)."""
    if facts.name == "stablehlo.broadcast_in_dim" and mesh.device.fused_broadcasts:
        return 0.0
    return max(_roofline(facts, mesh))


def compute_time(facts: OpFacts, mesh: MeshModel, assignment) -> float:
    """Seconds one device computes its share of the op under a strategy (`assignment`: per mesh axis the
    factor it shards): the whole op's roofline over the devices sharing it; a dot narrow on each device
    slowed down where the profile says how much (dot_shape.py)."""
    split = math.prod(mesh.shape[a] for a, f in enumerate(assignment) if f >= 0)
    width = mesh.device.dot_half_rate_width
    if facts.name not in dot_shape.GEMM_OPS or width <= 0:
        return op_time(facts, mesh) / split
    flops, memory = _roofline(facts, mesh)
    return max(flops * dot_shape.slowdown(facts.rule, assignment, mesh.shape, width), memory) / split


def _shardable_factors(rule: Rule) -> list[int]:
    """Factors a mesh axis may shard: Shardy allows it, it is the major factor of every dim it is in,
    and it reaches a result or is a reduction factor (so sharding it splits real work)."""
    minor = set()
    in_results = set()
    for maps in rule.operand_maps + rule.result_maps:
        for dim in maps:
            minor.update(dim[1:])
    for maps in rule.result_maps:
        for dim in maps:
            in_results.update(dim)
    return [
        f
        for f, size in enumerate(rule.factor_sizes)
        if size > 1
        and f not in rule.unshardable
        and f not in minor
        and (f in in_results or f in rule.reduction)
    ]


def _tensor_layout(maps: tuple[tuple[int, ...], ...], assignment: tuple[int, ...]) -> list[int]:
    major = {dim[0]: d for d, dim in enumerate(maps) if dim}
    return [major.get(f, -1) if f >= 0 else -1 for f in assignment]


@functools.lru_cache(maxsize=16384)
def op_strategies(
    facts: OpFacts,
    mesh: MeshModel,
    active: tuple[int, ...],
    reduce_scatter: bool,
    latency_share: float = 1.0,
    merged_bytes: float = 0.0,
) -> Strategies:
    """All strategies of an op with a sharding rule; the replicated strategy first. `latency_share` scales
    the latency of the op's partial-sum collectives, merged by XLA into one of about `merged_bytes` (see
    graph_facts.gradient_reductions)."""
    rule = facts.rule
    num_axes = len(mesh.shape)
    whole_time = op_time(facts, mesh)
    plain = facts.name not in dot_shape.GEMM_OPS or mesh.device.dot_half_rate_width <= 0
    choices = [-1, *_shardable_factors(rule)]
    tensors = [(m, s) for m, s in zip(rule.operand_maps, facts.operand_shapes, strict=True)] + [
        (m, s) for m, s in zip(rule.result_maps, facts.result_shapes, strict=True)
    ]
    operand_rows: list[list[list[int]]] = [[] for _ in facts.operand_shapes]
    result_rows: list[list[list[int]]] = [[] for _ in facts.result_shapes]
    costs: list[float] = []
    memories: list[int] = []
    assignments: list[list[int]] = []
    for choice in itertools.product(choices, repeat=len(active)):
        assignment = [-1] * num_axes
        for axis, factor in zip(active, choice, strict=True):
            assignment[axis] = factor
        if not _valid(assignment, rule, tensors, mesh.shape):
            continue
        if facts.batch_groups > 1 and _miscompiled_batch_groups(assignment, rule, active):
            continue
        if facts.whole_factors and any(assignment[a] in facts.whole_factors for a in active):
            continue
        operands = [_tensor_layout(m, tuple(assignment)) for m in rule.operand_maps]
        results = [_tensor_layout(m, tuple(assignment)) for m in rule.result_maps]
        split = math.prod(mesh.shape[a] for a, f in enumerate(assignment) if f >= 0)
        reduced = [a for a, f in enumerate(assignment) if f in rule.reduction]
        compute = whole_time / split if plain else compute_time(facts, mesh, assignment)
        merged = (latency_share, merged_bytes)
        variants = _reduction_variants(results, reduced, facts, mesh, reduce_scatter, merged)
        for variant_results, collective in variants:
            for rows, layout in zip(operand_rows, operands, strict=True):
                rows.append(layout)
            for rows, layout in zip(result_rows, variant_results, strict=True):
                rows.append(layout)
            costs.append(compute + collective)
            memories.append(_result_memory(variant_results, facts, mesh.shape))
            assignments.append(assignment)
    return Strategies(
        tuple(np.asarray(r, dtype=np.int8).reshape(len(costs), num_axes) for r in operand_rows),
        tuple(np.asarray(r, dtype=np.int8).reshape(len(costs), num_axes) for r in result_rows),
        np.asarray(costs, dtype=np.float64),
        np.asarray(memories, dtype=np.int64),
        np.asarray(assignments, dtype=np.int16).reshape(len(costs), num_axes),
    )


def _miscompiled_batch_groups(assignment: list[int], rule: Rule, active: tuple[int, ...]) -> bool:
    """A convolution with batch_group_count > 1 (the weight gradient of a grouped convolution) whose partial
    sums are split over some mesh axes while another active axis is left unused: XLA (jaxlib 0.10.2,
    Shardy and GSPMD alike) then combines the partial results over the unused axis too, and the gradient
    comes out 2x (batch split over y of a 2x4 mesh) or 4x (over x) too large. Found through HF's
    FlaxWav2Vec2 positional convolution; tests/passes/intra_op/test_strategies_xla_miscompiles.py reruns
    the pattern through XLA."""
    reduced = any(assignment[a] in rule.reduction for a in active)
    return reduced and any(assignment[a] < 0 for a in active)


def _valid(assignment: list[int], rule: Rule, tensors, mesh_shape: tuple[int, ...]) -> bool:
    per_factor: dict[int, int] = {}
    for axis, factor in enumerate(assignment):
        if factor >= 0:
            per_factor[factor] = per_factor.get(factor, 1) * mesh_shape[axis]
    for factor, split in per_factor.items():
        if rule.factor_sizes[factor] % split:
            return False
    # A factor's size can differ from the dim it is the major part of (concatenate, pad): check dims too.
    for maps, shape in tensors:
        for dim, factors in enumerate(maps):
            if factors and factors[0] in per_factor and shape[dim] % per_factor[factors[0]]:
                return False
    return True


def _result_memory(results: list[list[int]], facts: OpFacts, mesh_shape: tuple[int, ...]) -> int:
    total = 0
    for layout, shape, itemsize in zip(results, facts.result_shapes, facts.result_itemsizes, strict=True):
        total += tensor_bytes(shape, itemsize) // math.prod(
            mesh_shape[a] for a, d in enumerate(layout) if d >= 0
        )
    return total


def _reduction_variants(
    results: list[list[int]],
    reduced: list[int],
    facts: OpFacts,
    mesh: MeshModel,
    reduce_scatter: bool,
    merged: tuple[float, float] = (1.0, 0.0),
):
    """(result layouts, collective seconds) for an op whose axes `reduced` leave partial sums; `merged`:
    (latency share, merged bytes) of the collectives XLA merges them into."""
    if not reduced:
        yield results, 0.0
        return
    wide = mesh.device.widened_collectives and facts.result_wide_itemsizes
    sizes = facts.result_wide_itemsizes if wide else facts.result_itemsizes
    partial_bytes = [
        tensor_bytes(s, i) / math.prod(mesh.shape[a] for a, d in enumerate(lay) if d >= 0)
        for lay, s, i in zip(results, facts.result_shapes, sizes, strict=True)
    ]
    yield results, sum(mesh.all_reduce(b, reduced, *merged) for b in partial_bytes)
    if not reduce_scatter or len(results) != 1:
        return
    layout, shape = results[0], facts.result_shapes[0]
    group = math.prod(mesh.shape[a] for a in reduced)
    for dim in range(len(shape)):
        already = math.prod(mesh.shape[a] for a, d in enumerate(layout) if d == dim)
        if shape[dim] % (already * group) == 0:
            scattered = [dim if a in reduced else d for a, d in enumerate(layout)]
            yield [scattered], mesh.reduce_scatter(partial_bytes[0], reduced, *merged)
