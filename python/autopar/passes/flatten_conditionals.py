"""autopar-flatten-conditionals: a conditional whose branches are light and pure (optax.MultiSteps,
apply_if_finite) runs every branch and selects the taken one's results, so the planner can split it."""

from __future__ import annotations

import types

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from autopar.errors import PassError
from autopar.ir.cloning import clone_ops
from autopar.ir.effects import EFFECTFUL_OPS
from autopar.passes.registry import Option, register_pass

DESCRIPTION = """
Shardy has no sharding rule for `stablehlo.case` (`lax.cond`, `lax.switch`), so autopar-intra-op can only
keep a conditional whole: every value it returns is gathered onto every device. Optimizer wrappers put
the whole update in one: `optax.MultiSteps` (gradient accumulation) and `optax.apply_if_finite` return
every parameter and optimizer state from a conditional, so a step that uses them gathered all of them.
This pass writes each branch of such a conditional out before it and picks every result with
`stablehlo.select` on the branch index (an index out of range takes the last branch, as `case` does).
The values are the same; what changes is that every branch runs: only light, pure branches qualify,
those without dots, convolutions, loops, conditionals, custom calls, collectives or I/O (an optimizer's
elementwise update, a skip), and whose ops number at most `max-branch-ops` together.

Before:
  %2 = stablehlo.convert %1 : (tensor<i1>) -> tensor<i32>
  %3 = "stablehlo.case"(%2) ({
    stablehlo.return %arg0 : tensor<4xf32>
  }, {
    %4 = stablehlo.multiply %arg0, %arg0 : tensor<4xf32>
    stablehlo.return %4 : tensor<4xf32>
  }) : (tensor<i32>) -> tensor<4xf32>

After:
  %2 = stablehlo.convert %1 : (tensor<i1>) -> tensor<i32>
  %4 = stablehlo.multiply %arg0, %arg0 : tensor<4xf32>
  %c = stablehlo.constant dense<0> : tensor<i32>
  %5 = stablehlo.compare EQ, %2, %c, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
  %6 = stablehlo.select %5, %arg0, %4 : tensor<i1>, tensor<4xf32>
"""

MAX_BRANCH_OPS = 20_000
# What a branch must not hold to be run when not taken: work that costs (dots, convolutions, loops,
# nested conditionals) or that has effects or talks to other devices or the host.
HEAVY_OR_EFFECTFUL = EFFECTFUL_OPS | {
    "stablehlo.dot_general",
    "stablehlo.dot",
    "stablehlo.convolution",
    "stablehlo.rng",
    "func.call",
}


@register_pass(
    argument="autopar-flatten-conditionals",
    summary="Run light, pure conditional branches side by side and select the results, so they can split",
    description=DESCRIPTION,
    options=[
        Option(
            "max-branch-ops",
            int,
            MAX_BRANCH_OPS,
            "leave a conditional whole when its branches hold more ops than this together (0: none)",
        ),
    ],
    check=lambda options: _check(options),
)
def flatten_conditionals(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
    found: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "stablehlo.case":
            found.append(op)
        return ir.WalkResult.ADVANCE

    module_op.walk(visit, walk_order=ir.WalkOrder.POST_ORDER)
    for case in found:
        if _flattenable(case, options.max_branch_ops):
            _flatten(case)


def _check(options: types.SimpleNamespace) -> None:
    if options.max_branch_ops < 0:
        raise PassError(f"max-branch-ops must be >= 0 (0 flattens nothing), got {options.max_branch_ops}")


def _flattenable(case: ir.Operation, max_ops: int) -> bool:
    if not all(isinstance(r.type, ir.RankedTensorType) for r in case.results):
        return False  # tokens and tuples have no select
    count = 0
    light = True

    def visit(op: ir.Operation) -> ir.WalkResult:
        nonlocal count, light
        count += 1
        if op.name in HEAVY_OR_EFFECTFUL:
            light = False
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    for region in case.regions:
        for op in region.blocks[0].operations:
            op.operation.walk(visit)
    return light and max_ops > 0 and count <= max_ops


def _flatten(case: ir.Operation) -> None:
    """Replaces `case` by its branches written out in order and a chain of selects on its index."""
    index = case.operands[0]
    branch_results: list[list[ir.Value]] = []
    with ir.InsertionPoint(case), case.location:
        for region in case.regions:
            *ops, terminator = (o.operation for o in region.blocks[0].operations)
            mapping: dict[ir.Value, ir.Value] = {}
            clone_ops(ops, mapping)
            branch_results.append([mapping.get(v, v) for v in terminator.operands])
        # The last branch is also what an index out of range takes; each earlier one where index == k.
        chosen = list(branch_results[-1])
        for k in range(len(branch_results) - 2, -1, -1):
            taken = _index_is(index, k)
            chosen = [
                stablehlo.SelectOp(taken, mine, other).result
                for mine, other in zip(branch_results[k], chosen, strict=True)
            ]
    for old, new in zip(case.results, chosen, strict=True):
        old.replace_all_uses_with(new)
    case.erase()


def _index_is(index: ir.Value, k: int) -> ir.Value:
    scalar = ir.RankedTensorType(index.type)
    constant = stablehlo.ConstantOp(
        ir.DenseElementsAttr.get_splat(scalar, ir.IntegerAttr.get(scalar.element_type, k))
    ).result
    direction = stablehlo.ComparisonDirectionAttr.get("EQ")
    signed = stablehlo.ComparisonTypeAttr.get("SIGNED")
    return stablehlo.CompareOp(index, constant, direction, compare_type=signed).result
