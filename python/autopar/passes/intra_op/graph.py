"""Reads one function body into plain records: values, their producers and users, Shardy's sharding rules.

Nothing here decides anything; `problem.py` turns these records into the solver's arrays. Nodes are the
function's arguments (ids 0..n_args-1) followed by its top-level ops in program order, but for identity
ops (TRANSPARENT_OPS), whose results read as their operands; ops nested in regions (reduce bodies, while
bodies) belong to their parent op.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import sdy

from autopar.errors import PassError
from autopar.ir import attrs
from autopar.ir.shapes import shape_error

if TYPE_CHECKING:
    from autopar.cost import MeshModel

RULE_ATTR = "sdy.sharding_rule"
# Identity ops with no node of their own. `stablehlo.optimization_barrier` (what mark_pipeline_boundary
# and jax.checkpoint lower to) has no Shardy sharding rule, so as a node it would be kept replicated and
# gather every value it carries; Shardy carries a layout through it like through a function boundary
# (docs/platform.md, "Optimization barriers").
TRANSPARENT_OPS = frozenset({"stablehlo.optimization_barrier"})


@dataclasses.dataclass(frozen=True)
class Rule:
    """Shardy's OpShardingRuleAttr as plain tuples (hashable: strategy enumeration is cached on it).

    Attributes:
      factor_sizes: size of every factor.
      operand_maps / result_maps: per tensor, per dim, the factors that dim is made of (major first).
      reduction: factors summed over (partial results when sharded).
      unshardable: factors Shardy says need replication, permute data, or block propagation.
    """

    factor_sizes: tuple[int, ...]
    operand_maps: tuple[tuple[tuple[int, ...], ...], ...]
    result_maps: tuple[tuple[tuple[int, ...], ...], ...]
    reduction: frozenset[int]
    unshardable: frozenset[int]


@dataclasses.dataclass
class Node:
    """An argument or a top-level op.

    Attributes:
      kind: 'arg' or the op name (`stablehlo.dot_general`).
      op: the operation (None for arguments).
      operands: per operand, the (node id, result index) producing it.
      operand_shapes: shapes of the operands.
      result_shapes / result_itemsizes: shapes and element sizes in bytes of the results.
      result_wide_itemsizes: the results' element sizes in collectives under widened collectives
        (`collective_element_size`); the collectives' pricing reads them through `collective_itemsizes`.
      rule: the sharding rule, None when Shardy has none for this op.
      is_batch / is_parameter: argument attributes `autopar.batch` / `autopar.parameter`.
      operand_copies: per operand, 0 when read as its producer made it, else which optimization barrier's
        result it is read through (graph.TRANSPARENT_OPS): readers of one value on either side of a
        barrier are resharded apart (emit.py), as XLA then runs it.
      region_flops: for an op without a rule that has regions (a loop kept whole, a branch), the FLOPs of
        the ops in them, a loop's body once per trip when ir/loops.py knows the count (else once).
      users: node ids of the ops that read any result.
      returned: result indices the function returns.
    """

    kind: str
    op: ir.Operation | None
    operands: list[tuple[int, int]]
    operand_shapes: list[tuple[int, ...]]
    operand_itemsizes: list[int]
    result_shapes: list[tuple[int, ...]]
    result_itemsizes: list[int]
    result_wide_itemsizes: list[int]
    rule: Rule | None = None
    is_batch: bool = False
    is_parameter: bool = False
    users: list[int] = dataclasses.field(default_factory=list)
    operand_copies: list[int] = dataclasses.field(default_factory=list)
    region_flops: float = 0.0
    returned: list[int] = dataclasses.field(default_factory=list)
    path: str = ""  # an argument's name in messages: its pytree path when parallelize wrote one
    kept: attrs.InputSharding | None = None  # an argument's layout to keep (autopar.input_sharding)

    @property
    def location(self) -> ir.Location | None:
        return self.op.location if self.op is not None else None


@dataclasses.dataclass
class Graph:
    """A function body as nodes; `returns[i]` is the (node, result) the function returns as result i.

    `derived` memoises facts computed from the graph alone (batch factors, per-node signatures): building
    the strategy problem for many meshes of the same graph computes them once.
    """

    func: ir.Operation
    nodes: list[Node]
    returns: list[tuple[int, int]]
    num_args: int
    result_paths: list[str | None] = dataclasses.field(default_factory=list)  # JAX's, per result
    # False under autopar.no_updates: no result is a parameter's update (read here, with the function's
    # other facts, so that building problems never reads the IR, which may be gone by then).
    updates_parameters: bool = True
    # Each optimization barrier (TRANSPARENT_OPS) with the (node, result) each of its results carries.
    barriers: list[tuple[ir.Operation, list[tuple[int, int]]]] = dataclasses.field(default_factory=list)
    derived: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)


def read_function(func_op: ir.Operation) -> Graph:
    block = func_op.regions[0].blocks[0]
    nodes: list[Node] = []
    producer: dict[ir.Value, tuple[int, int]] = {}
    copies: dict[ir.Value, int] = {}  # a barrier's results: the barrier's number, from 1
    barriers: list[tuple[ir.Operation, list[tuple[int, int]]]] = []
    marks = attrs.get_argument_marks(func_op)
    paths = argument_paths(func_op, len(block.arguments))
    kept = attrs.get_input_shardings(func_op)
    for i, arg in enumerate(block.arguments):
        shape, itemsize = _tensor_facts(arg.type, func_op, paths[i])
        nodes.append(
            Node(
                kind="arg",
                op=None,
                operands=[],
                operand_shapes=[],
                operand_itemsizes=[],
                result_shapes=[shape],
                result_itemsizes=[itemsize],
                result_wide_itemsizes=[collective_element_size(arg.type)],
                is_batch=marks[i].is_batch,
                is_parameter=marks[i].is_parameter,
                path=paths[i],
                kept=kept[i],
            )
        )
        producer[arg] = (i, 0)
    returns: list[tuple[int, int]] = []
    for op in block.operations:
        operation = op.operation
        if operation.name == "func.return":
            returns = [_producer_of(v, producer, operation) for v in operation.operands]
            break
        operands = [_producer_of(v, producer, operation) for v in operation.operands]
        if operation.name in TRANSPARENT_OPS:
            # Each result is its operand: readers plan against the operand's producer, and XLA reshards
            # after the barrier where they need another layout (emit.py constrains the value they read).
            barriers.append((operation, operands))
            for result, source in zip(operation.results, operands, strict=True):
                producer[result], copies[result] = source, len(barriers)
            continue
        node_id = len(nodes)
        facts = [
            _tensor_facts(r.type, operation, f"result {k} of {operation.name}")
            for k, r in enumerate(operation.results)
        ]
        node = Node(
            kind=operation.name,
            op=operation,
            operands=operands,
            operand_shapes=[nodes[u].result_shapes[r] for u, r in operands],
            operand_itemsizes=[nodes[u].result_itemsizes[r] for u, r in operands],
            result_shapes=[f[0] for f in facts],
            result_itemsizes=[f[1] for f in facts],
            result_wide_itemsizes=[collective_element_size(r.type) for r in operation.results],
            rule=read_rule(operation),
            operand_copies=[copies.get(v, 0) for v in operation.operands],
        )
        if node.rule is None and len(operation.regions):
            node.region_flops = _region_flops(operation)
        nodes.append(node)
        for k, result in enumerate(operation.results):
            producer[result] = (node_id, k)
        for src, _ in operands:
            if not nodes[src].users or nodes[src].users[-1] != node_id:
                nodes[src].users.append(node_id)
    for index, (src, result) in enumerate(returns):
        del index
        nodes[src].returned.append(result)
    return Graph(
        func=func_op,
        nodes=nodes,
        returns=returns,
        num_args=len(block.arguments),
        result_paths=attrs.get_result_paths(func_op),
        updates_parameters=attrs.NO_UPDATES not in func_op.attributes,
        barriers=barriers,
    )


def _region_flops(operation: ir.Operation) -> float:
    # Read here, while the module lives: the problem is built later, when its ops may be gone.
    from autopar.ir.loops import counted_loop
    from autopar.passes.inter_op.graph import op_flops

    counted = counted_loop(operation)
    return op_flops(operation) * (counted.trips if counted is not None else 1)


def _producer_of(
    value: ir.Value, producer: dict[ir.Value, tuple[int, int]], user: ir.Operation
) -> tuple[int, int]:
    try:
        return producer[value]
    except KeyError:
        raise PassError(
            f"'{user.name}' reads a value defined outside the function body", user.location
        ) from None


def read_rule(operation: ir.Operation) -> Rule | None:
    if RULE_ATTR not in operation.attributes:
        return None
    attr = sdy.OpShardingRuleAttr(operation.attributes[RULE_ATTR])
    operand_maps = tuple(_tensor_mapping(t) for t in attr.operand_mappings)
    result_maps = tuple(_tensor_mapping(t) for t in attr.result_mappings)
    unshardable = (
        set(attr.need_replication_factors)
        | set(attr.permutation_factors)
        | set(attr.blocked_propagation_factors)
    )
    return Rule(
        factor_sizes=tuple(int(s) for s in attr.factor_sizes),
        operand_maps=operand_maps,
        result_maps=result_maps,
        reduction=frozenset(int(f) for f in attr.reduction_factors),
        unshardable=frozenset(int(f) for f in unshardable),
    )


def _tensor_mapping(attr: ir.Attribute) -> tuple[tuple[int, ...], ...]:
    return tuple(
        tuple(int(f) for f in sdy.DimMappingAttr(d).factor_indices)
        for d in sdy.TensorMappingAttr(attr).dim_mappings
    )


def argument_paths(func_op: ir.Operation, count: int) -> list[str]:
    """How messages name each argument: the `autopar.path` parallelize writes (the pytree path in the
    user's function, `batch['image']`), else `argument i`."""
    out = [f"argument {i}" for i in range(count)]
    for i, marks in enumerate(attrs.get_argument_marks(func_op)[:count]):
        if marks.path is not None:
            out[i] = marks.path
    return out


def argument_name(graph: Graph, v: int) -> str:
    """How messages name argument node `v`: `argument <pytree path>`, or `argument v` when it has none
    (`argument_paths` fills that in, so it is not prefixed twice)."""
    path = graph.nodes[v].path
    return f"argument {v}" if not path or path == f"argument {v}" else f"argument {path}"


def _tensor_facts(t: ir.Type, where: ir.Operation, what: str) -> tuple[tuple[int, ...], int]:
    """(shape, element size in bytes); non-tensor values (tokens) are size-0 scalars."""
    if (err := shape_error(t, what, getattr(where, "location", None))) is not None:
        raise err
    if not isinstance(t, ir.RankedTensorType):
        return (), 0
    return tuple(t.shape), element_size(t.element_type)


def collective_itemsizes(node: Node, mesh: MeshModel) -> list[int]:
    """The element sizes of `node`'s results as the mesh's collectives move them."""
    return node.result_wide_itemsizes if mesh.device.widened_collectives else node.result_itemsizes


def collective_element_size(t: ir.Type) -> int:
    """Bytes per element of a tensor of type `t` in a collective XLA's CPU compiler runs (jaxlib 0.10.2,
    every kind: all-reduce, all-gather, reduce-scatter, all-to-all, collective-permute): bf16 and
    f8E8M0FNU (an 8-bit exponent) go as f32, the other floats narrower than 16 bits as f16, every other
    type at its own size (docs/platform.md, "Collectives of narrow floats on CPU")."""
    element = t.element_type if isinstance(t, ir.ShapedType) else t
    if isinstance(element, ir.FloatType) and element.width < 32:
        if str(element) in ("bf16", "f8E8M0FNU"):
            return 4
        return 2
    return element_size(element) if isinstance(t, ir.RankedTensorType) else 0


def element_size(t: ir.Type) -> int:
    if isinstance(t, ir.ComplexType):
        return 2 * element_size(t.element_type)
    width = getattr(t, "width", None)
    if width is None:
        return 8 if isinstance(t, ir.IndexType) else 4
    return max(1, (int(width) + 7) // 8)
