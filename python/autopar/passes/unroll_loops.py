"""autopar-unroll-loops: a counted loop (lax.scan, fori_loop, nn.scan) becomes its body written out once
per trip, so that the planner can split the work inside it."""

from __future__ import annotations

import types

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from autopar.errors import PassError
from autopar.ir.cloning import clone_ops, defining_op
from autopar.ir.loops import CountedLoop, counted_loop
from autopar.passes.registry import Option, register_pass

DESCRIPTION = """
Shardy has no sharding rule for `stablehlo.while`, so autopar-intra-op can only keep a loop whole on every
device: a model that scans over its layers (`jax.lax.scan`, flax's `nn.scan`, `fori_loop` with static
bounds) would run replicated, its batch split nowhere. This pass writes the body of every counted loop
(ir/loops.py: an i32 counter from a constant, `counter < N`, `counter + 1`) out once per trip, the
counter a constant in each copy, innermost loops first, and the loop's results become the last copy's.
The program computes the same values in the same order; the plan can then split each trip's work like
any other op's. A loop is left as it is when its trip count is unknown (`while_loop` on data) or when
its copies would add more than `max-unrolled-ops` ops (planning time grows with the ops).

Before:
  %c = stablehlo.constant dense<0> : tensor<i32>
  %0:2 = stablehlo.while(%i = %c, %h = %x) : tensor<i32>, tensor<8x16xf32>
   cond {
    %n = stablehlo.constant dense<2> : tensor<i32>
    %1 = stablehlo.compare LT, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %1 : tensor<i1>
  } do {
    %1 = stablehlo.tanh %h : tensor<8x16xf32>
    %one = stablehlo.constant dense<1> : tensor<i32>
    %2 = stablehlo.add %i, %one : tensor<i32>
    stablehlo.return %2, %1 : tensor<i32>, tensor<8x16xf32>
  }

After:
  %c_0 = stablehlo.constant dense<0> : tensor<i32>
  %0 = stablehlo.tanh %x : tensor<8x16xf32>
  %c_1 = stablehlo.constant dense<1> : tensor<i32>
  %1 = stablehlo.tanh %0 : tensor<8x16xf32>
  (%0#1 is now %1; the counter's result is `stablehlo.constant dense<2>`)
"""

MAX_UNROLLED_OPS = 20_000


@register_pass(
    argument="autopar-unroll-loops",
    summary="Write out counted loops (lax.scan, fori_loop, nn.scan) trip by trip, so their work can be split",
    description=DESCRIPTION,
    options=[
        Option(
            "max-unrolled-ops",
            int,
            MAX_UNROLLED_OPS,
            "leave a loop whole when writing it out would add more ops than this (0: unroll nothing)",
        ),
    ],
    check=lambda options: _check(options),
)
def unroll_loops(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
    budget = options.max_unrolled_ops
    for loop in _loops_innermost_first(module_op):
        counted = counted_loop(loop)
        if counted is None:
            continue
        added = counted.trips * _op_count(loop.regions[1].blocks[0])
        if added > budget:
            continue
        budget -= added
        _unroll(loop, counted)


def _check(options: types.SimpleNamespace) -> None:
    if options.max_unrolled_ops < 0:
        raise PassError(f"max-unrolled-ops must be >= 0 (0 unrolls nothing), got {options.max_unrolled_ops}")


def _loops_innermost_first(module_op: ir.Operation) -> list[ir.Operation]:
    loops: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "stablehlo.while":
            loops.append(op)
        return ir.WalkResult.ADVANCE

    module_op.walk(visit, walk_order=ir.WalkOrder.POST_ORDER)
    return loops


def _op_count(block: ir.Block) -> int:
    count = 0

    def visit(op: ir.Operation) -> ir.WalkResult:
        nonlocal count
        count += 1
        return ir.WalkResult.ADVANCE

    for op in block.operations:
        op.operation.walk(visit)
    return count


def _unroll(loop: ir.Operation, counted: CountedLoop) -> None:
    """Replaces `loop` by `counted.trips` copies of its body, each reading the previous one's results."""
    body = loop.regions[1].blocks[0]
    body_ops = [op.operation for op in body.operations]
    *ops, terminator = body_ops
    carried = list(loop.operands)
    counter_type = carried[counted.counter].type
    increment = terminator.operands[counted.counter]  # counter + 1: constants make it dead in the copies
    increments = []
    with ir.InsertionPoint(loop), loop.location:
        for trip in range(counted.trips):
            mapping = dict(zip(body.arguments, carried, strict=True))
            # The counter is a constant in each copy (slices of stacked layers become static).
            if trip > 0:  # the first trip reads the loop's own initial constant
                mapping[body.arguments[counted.counter]] = _constant_like(counter_type, counted.start + trip)
            clone_ops(ops, mapping)
            increments.append(mapping[increment].owner)
            carried = [mapping.get(v, v) for v in terminator.operands]
        carried[counted.counter] = _constant_like(counter_type, counted.start + counted.trips)
    for old, new in zip(loop.results, carried, strict=True):
        old.replace_all_uses_with(new)
    loop.erase()
    for add in increments:
        if list(add.results[0].uses):
            continue
        owners: list[ir.Operation] = []
        for op in (defining_op(v) for v in add.operands):
            if op is not None and not any(op == seen for seen in owners):
                owners.append(op)
        add.erase()
        for op in owners:  # the copy's `1` (and counter), when nothing else reads it
            if op.name == "stablehlo.constant" and not list(op.results[0].uses):
                op.erase()


def _constant_like(scalar_type: ir.Type, value: int) -> ir.Value:
    """A `stablehlo.constant` of the counter's scalar integer type."""
    element = ir.RankedTensorType(scalar_type).element_type
    splat = ir.DenseElementsAttr.get_splat(scalar_type, ir.IntegerAttr.get(element, value))
    return stablehlo.ConstantOp(splat).result
