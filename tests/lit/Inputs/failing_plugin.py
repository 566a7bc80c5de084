"""A pass plugin living outside the package, for the driver's lit tests.

`test-tag-ops` tags every op with its op count; `test-fail-on-multiply` rejects the first multiply, the way
a real pass rejects bad input, so the driver's failure path (saved IR, reproducer line) can be checked.
"""

import types

from jaxlib.mlir import ir

from autopar.errors import PassError
from autopar.passes import Option, register_pass


def _ops(module_op: ir.Operation) -> list[ir.Operation]:
    found = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name not in ("builtin.module", "func.func", "func.return"):
            found.append(op)
        return ir.WalkResult.ADVANCE

    module_op.walk(visit, walk_order=ir.WalkOrder.PRE_ORDER)
    return found


@register_pass(
    argument="test-tag-ops",
    summary="Tag the module with the number of non-func ops (plugin example)",
    description="Before: module {...}\nAfter: module attributes {test.num_ops = N : i64} {...}",
    options=[Option("attr-name", str, "test.num_ops", "name of the module attribute to write")],
)
def tag_ops(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
    count = len(_ops(module_op))
    module_op.attributes[options.attr_name] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), count)


@register_pass(
    argument="test-fail-on-multiply",
    summary="Fail on the first stablehlo.multiply (tests the driver's failure path)",
    description="Before: %0 = stablehlo.multiply ...\nAfter: error: multiply is not allowed here",
)
def fail_on_multiply(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
    for op in _ops(module_op):
        if op.name == "stablehlo.multiply":
            raise PassError("multiply is not allowed here; rewrite it as an add", op.location)
