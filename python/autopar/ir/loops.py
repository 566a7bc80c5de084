"""Counted loops: the `stablehlo.while` that `jax.lax.scan`, `fori_loop` with static bounds and flax's
`nn.scan` lower to, and how many times it runs.

JAX writes such a loop with an i32 counter among its carried values: it starts at a constant, the
condition is `counter < N` against a constant N, and the body returns `counter + 1`. Any other loop
(`while_loop` on data, a counter stepped by more than one) has no trip count here.
"""

from __future__ import annotations

import dataclasses

from jaxlib.mlir import ir

from autopar.ir.cloning import defining_op
from autopar.ir.constants import constant_value


@dataclasses.dataclass(frozen=True)
class CountedLoop:
    """A while loop whose carried value `counter` runs from `start` up to (not including) `stop` by 1."""

    counter: int
    start: int
    stop: int

    @property
    def trips(self) -> int:
        return max(0, self.stop - self.start)


def counted_loop(op: ir.Operation) -> CountedLoop | None:
    """The counter of the `stablehlo.while` `op` when JAX's counted-loop pattern holds, else None."""
    if op.name != "stablehlo.while":
        return None
    cond, body = (region.blocks[0] for region in op.regions)
    cond_ops = [o.operation for o in cond.operations]
    if len(cond_ops) < 2 or cond_ops[-2].name != "stablehlo.compare" or _direction(cond_ops[-2]) != "LT":
        return None
    compare = cond_ops[-2]
    if cond_ops[-1].operands[0] != compare.results[0]:
        return None
    counter = _argument_index(compare.operands[0], cond)
    stop = _scalar_constant(compare.operands[1])
    if counter is None or stop is None:
        return None
    start = _scalar_constant(op.operands[counter])
    step = _increment_of(body, counter)
    if start is None or step != 1:
        return None
    return CountedLoop(counter, start, stop)


def _direction(compare: ir.Operation) -> str:
    # Printed as `#stablehlo<comparison_direction LT>`; the SIGNED / UNSIGNED type does not matter here.
    return str(compare.attributes["comparison_direction"]).rstrip(">").split()[-1]


def _argument_index(value: ir.Value, block: ir.Block) -> int | None:
    for i, argument in enumerate(block.arguments):
        if value == argument:
            return i
    return None


def _scalar_constant(value: ir.Value) -> int | None:
    """The value of an integer scalar `stablehlo.constant` (None for anything else)."""
    owner = defining_op(value)
    if owner is None or owner.name != "stablehlo.constant":
        return None
    attr = constant_value(owner)
    if not isinstance(attr, ir.DenseIntElementsAttr) or ir.ShapedType(attr.type).rank != 0:
        return None
    return int(ir.DenseIntElementsAttr(attr)[0])


def _increment_of(body: ir.Block, counter: int) -> int | None:
    """k when the body returns `counter + k` (k a constant), else None."""
    terminator = [o.operation for o in body.operations][-1]
    added = defining_op(terminator.operands[counter])
    if added is None or added.name != "stablehlo.add":
        return None
    lhs, rhs = added.operands
    argument = body.arguments[counter]
    if lhs == argument:
        return _scalar_constant(rhs)
    if rhs == argument:
        return _scalar_constant(lhs)
    return None
