"""The top-level ops of a function as a plain graph: producers, users, FLOPs, bytes, name-stack scopes.

Ops nested in regions (reduce bodies, while loops) belong to their top-level op; a value they read from
outside counts as an operand of that op.
"""

from __future__ import annotations

import dataclasses
import math
import re

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import func, stablehlo

from autopar.errors import PassError
from autopar.ir import attrs
from autopar.ir.shapes import check_static_shapes
from autopar.ir.stages import find_function

# Ops that only move, reshape or re-type data: no arithmetic for the FLOP balance.
_DATA_MOVEMENT = frozenset(
    {
        "stablehlo.constant",
        "stablehlo.iota",
        "stablehlo.broadcast_in_dim",
        "stablehlo.reshape",
        "stablehlo.transpose",
        "stablehlo.slice",
        "stablehlo.dynamic_slice",
        "stablehlo.concatenate",
        "stablehlo.pad",
        "stablehlo.convert",
        "stablehlo.bitcast_convert",
        "stablehlo.optimization_barrier",
        "stablehlo.get_tuple_element",
        "stablehlo.tuple",
        "stablehlo.reverse",
        "stablehlo.gather",
        "stablehlo.dynamic_update_slice",
        "sdy.sharding_constraint",
        "stablehlo.custom_call",
    }
)
HEAVY_OPS = frozenset({"stablehlo.dot_general", "stablehlo.convolution", "stablehlo.dot"})


@dataclasses.dataclass
class Node:
    """One top-level op.

    Attributes:
      op: the operation.
      name: its op name (`stablehlo.dot_general`).
      scope: JAX's name stack without the primitive (`jit(step)/transpose(jvp(layer0))`), '' if none.
      operands: indices of the producing nodes (one per distinct producer, program order).
      args: function argument numbers it reads.
      users: indices of the nodes that read its results.
      flops: arithmetic work of the op (and its regions).
      out_bytes: bytes of its results.
      boundary: 'forward'/'backward' for pipeline markers, else ''.
    """

    op: ir.Operation
    name: str
    scope: str
    operands: list[int]
    args: list[int]
    users: list[int] = dataclasses.field(default_factory=list)
    flops: float = 0.0
    out_bytes: float = 0.0
    boundary: str = ""


@dataclasses.dataclass
class Graph:
    fn: func.FuncOp
    nodes: list[Node]
    arg_bytes: list[float]
    # Which node (or -(arg + 1)) each func.return operand comes from.
    returns: list[int]
    index: dict[ir.Operation, int]  # node index of each top-level op


def main_func(module_op: ir.Operation) -> func.FuncOp:
    main = find_function(module_op)
    if main is not None:
        return main
    raise PassError("the module has no @main function: give the training step as a public @main")


def tensor_bytes(t: ir.Type) -> float:
    if not isinstance(t, ir.RankedTensorType):
        return 0.0
    return float(math.prod(t.shape)) * _element_bytes(t.element_type)


def _element_bytes(t: ir.Type) -> float:
    for kind in (ir.FloatType, ir.IntegerType):
        if isinstance(t, kind):
            return max(t.width, 8) / 8.0
    if isinstance(t, ir.ComplexType):
        return 2 * _element_bytes(t.element_type)
    return 4.0


def _elements(t: ir.Type) -> float:
    return float(math.prod(t.shape)) if isinstance(t, ir.RankedTensorType) else 0.0


def op_flops(op: ir.Operation) -> float:
    """FLOPs of one op: 2*M*N*K for dots and convolutions, one per output element for arithmetic."""
    name = op.name
    if name == "stablehlo.dot_general":
        numbers = stablehlo.DotDimensionNumbers(op.attributes["dot_dimension_numbers"])
        lhs = op.operands[0].type
        contracted = math.prod(lhs.shape[d] for d in numbers.lhs_contracting_dimensions)
        return 2.0 * _elements(op.results[0].type) * contracted
    if name == "stablehlo.dot":
        return 2.0 * _elements(op.results[0].type) * op.operands[0].type.shape[-1]
    if name == "stablehlo.convolution":
        numbers = stablehlo.ConvDimensionNumbers(op.attributes["dimension_numbers"])
        kernel = op.operands[1].type.shape
        per_output = math.prod(kernel) / kernel[numbers.kernel_output_feature_dimension]
        return 2.0 * _elements(op.results[0].type) * per_output
    if name in _DATA_MOVEMENT:
        return 0.0
    if name in (
        "stablehlo.reduce",
        "stablehlo.reduce_window",
        "stablehlo.scatter",
        "stablehlo.select_and_scatter",
    ):
        return sum(_elements(v.type) for v in op.operands) / 2.0
    if name in ("stablehlo.while", "stablehlo.case", "stablehlo.if"):
        return sum(
            op_flops(inner) for region in op.regions for block in region.blocks for inner in block.operations
        )
    return sum(_elements(r.type) for r in op.results)


_NAME_LOC = re.compile(r'loc\("([^"]*)"')


def op_scope(op: ir.Operation) -> str:
    """The name stack of `op`'s location without its last component (the primitive)."""
    try:
        name = op.location.name_str
    except (ValueError, AttributeError, RuntimeError):
        match = _NAME_LOC.match(str(op.location))
        name = match.group(1) if match else ""
    return name.rsplit("/", 1)[0] if "/" in name else ""


def build_graph(fn: func.FuncOp) -> Graph:
    check_static_shapes(fn.operation)  # FLOPs and bytes of a dynamic dim (-1) would be negative
    block = fn.regions[0].blocks[0]
    index: dict[ir.Operation, int] = {}
    nodes: list[Node] = []
    returns: list[int] = []
    for op in block.operations:
        op = op.operation
        if op.name == "func.return":
            returns = [_source(v, index) for v in op.operands]
            continue
        producers, args = [], []
        for value in _read_values(op):
            source = _source(value, index)
            if source >= 0:
                if source not in producers:
                    producers.append(source)
            elif source != _INSIDE:
                arg = -source - 1
                if arg not in args:
                    args.append(arg)
        node = Node(op, op.name, op_scope(op), producers, args)
        node.flops = op_flops(op)
        node.out_bytes = sum(tensor_bytes(r.type) for r in op.results)
        node.boundary = attrs.get_pipeline_boundary(op) or ""
        index[op] = len(nodes)
        for p in producers:
            nodes[p].users.append(len(nodes))
        nodes.append(node)
    arg_bytes = [tensor_bytes(a.type) for a in block.arguments]
    return Graph(fn, nodes, arg_bytes, returns, index)


_INSIDE = -(10**9)  # a value defined inside the op's own regions


def _source(value: ir.Value, index: dict[ir.Operation, int]) -> int:
    """Node index of the producer, -(arg + 1) for an argument of the function, _INSIDE otherwise."""
    if isinstance(value, ir.OpResult):
        return index.get(value.owner, _INSIDE)
    arg = ir.BlockArgument(value)
    if arg.owner.owner.operation.name == "func.func":
        return -arg.arg_number - 1
    return _INSIDE


def _read_values(op: ir.Operation) -> list[ir.Value]:
    values = list(op.operands)
    if op.regions:

        def visit(inner: ir.Operation) -> ir.WalkResult:
            if inner != op:
                values.extend(inner.operands)
            return ir.WalkResult.ADVANCE

        op.walk(visit, walk_order=ir.WalkOrder.PRE_ORDER)
    return values
