"""Comparisons of scalars made from constants, decided as functions of the micro-batch size.

`jnp.var` and `jnp.std` guard their result with `N - ddof > 0`, N the number of elements they reduce: the
batch size when they reduce over the batch. To ir/micro_batch.py's kinds, `N - ddof` is a constant that
is no power of m, and a select on its comparison gives up. Here every scalar built from constants by
arithmetic is read as a function of n, the examples the program is lowered for: a constant that is c at
m examples and c * 2**p at 2m is c * (n / m)**p (the law the kinds already assume of such constants), and
sums, differences, products, quotients, negations and conversions of such functions are functions. A
comparison of two is the same in every micro-batch and in the full-batch step when it has one outcome at
n = m and at n = B * m, the full batch: the select then picks the same operand in both programs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from jaxlib.mlir import ir

from autopar.ir.cloning import defining_op
from autopar.ir.constants import dense_value

Law = Callable[[float], float]

_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "stablehlo.add": lambda x, y: x + y,
    "stablehlo.subtract": lambda x, y: x - y,
    "stablehlo.multiply": lambda x, y: x * y,
    "stablehlo.divide": lambda x, y: x / y if y else math.nan,
    "stablehlo.maximum": max,
    "stablehlo.minimum": min,
}
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "EQ": lambda x, y: x == y,
    "NE": lambda x, y: x != y,
    "LT": lambda x, y: x < y,
    "LE": lambda x, y: x <= y,
    "GT": lambda x, y: x > y,
    "GE": lambda x, y: x >= y,
}


def same_outcome(it, a: ir.Operation) -> bool:
    """Whether the comparison `a` of constants has one outcome at the micro-batch size and at the full
    batch's (`it` is the interpreter: kinds, the micro-batch size and the number of micro-batches)."""
    return decided_outcome(it, a) is not None


def decided_outcome(it, a: ir.Operation) -> bool | None:
    """The outcome of the comparison `a` of constants when it is the same at the micro-batch size and at
    the full batch's, else None."""
    if it.micro_batch_size is None or it.num_micro_batches is None or a.name != "stablehlo.compare":
        return None
    direction = str(a.attributes["comparison_direction"]).split()[-1].rstrip(">")
    compare = _COMPARISONS.get(direction)
    laws = [_law(it, v, 0) for v in a.operands]
    if compare is None or any(law is None for law in laws):
        return None
    m = it.micro_batch_size
    at = [[law(n) for law in laws] for n in (m, it.num_micro_batches * m)]
    if any(not math.isfinite(x) for values in at for x in values):
        return None
    outcomes = {compare(*values) for values in at}
    return outcomes.pop() if len(outcomes) == 1 else None


def decided_select(it, a: ir.Operation, ins: list):
    """The kind of the select `a` whose predicate is a comparison of constants decided alike at the
    micro-batch size and the full batch's: the operand it picks in every program. jnp's wrap of a
    constant index, `select(0 < 0, 0 + n, 0)` with n the batch size (an attention cache's
    dynamic_update_slice), never takes `0 + n`. None for any other select."""
    compare = defining_op(a.operands[0])
    if compare is None or (taken := decided_outcome(it, compare)) is None:
        return None
    return ins[1] if taken else ins[2]


def _law(it, value: ir.Value, depth: int) -> Law | None:
    """`value` as a function of the examples per program, or None when it is not a scalar made from
    constants by the arithmetic above."""
    t = value.type
    if depth > 32 or not isinstance(t, ir.RankedTensorType) or list(t.shape):
        return None
    op = defining_op(value)
    if op is None:
        return None
    kind = it.kind(value)
    if op.name == "stablehlo.constant":
        dense = dense_value(op)
        scalar = None if dense is None else dense.get_splat_value()
        if kind.tag not in ("const", "zero") or not isinstance(scalar, (ir.FloatAttr, ir.IntegerAttr)):
            return None
        x, p, m = float(scalar.value), (kind.degree or 0), it.micro_batch_size
        if kind.tag == "const" and kind.degree is None:
            return None
        return lambda n: x * (n / m) ** p
    if op.name == "stablehlo.convert":
        inner = _law(it, op.operands[0], depth + 1)
        if inner is None:
            return None
        if isinstance(t.element_type, ir.IntegerType):
            return lambda n: float(math.trunc(inner(n))) if math.isfinite(inner(n)) else math.nan
        return inner
    if op.name == "stablehlo.negate":
        inner = _law(it, op.operands[0], depth + 1)
        return None if inner is None else (lambda n: -inner(n))
    combine = _ARITHMETIC.get(op.name)
    if combine is None or isinstance(t.element_type, ir.IntegerType) and op.name == "stablehlo.divide":
        return None  # integer division rounds: not read
    x, y = (_law(it, v, depth + 1) for v in op.operands)
    if x is None or y is None:
        return None
    return lambda n: combine(x(n), y(n))
