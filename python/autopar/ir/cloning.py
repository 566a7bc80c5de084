"""Copying ops of one block to the current insertion point, reading other values (what the rewrites that
write a loop out or run a conditional's branches side by side need; MLIR's IRMapping is not in the
Python bindings)."""

from __future__ import annotations

from collections.abc import Iterable

from jaxlib.mlir import ir


def clone_ops(ops: Iterable[ir.Operation], mapping: dict[ir.Value, ir.Value]) -> None:
    """Clones `ops` in order at the current insertion point. Every operand (also of ops nested in their
    regions) found in `mapping` is read from its image instead, and each clone's results are added to
    `mapping` as the images of the original's, so later ops read them."""
    for op in ops:
        clone = op.clone()
        _remap(clone, mapping)
        for old, new in zip(op.results, clone.results, strict=True):
            mapping[old] = new


def _remap(clone: ir.Operation, mapping: dict[ir.Value, ir.Value]) -> None:
    def visit(op: ir.Operation) -> ir.WalkResult:
        for i, operand in enumerate(op.operands):
            if operand in mapping:
                op.operands[i] = mapping[operand]
        return ir.WalkResult.ADVANCE

    clone.walk(visit)


def defining_op(value: ir.Value) -> ir.Operation | None:
    """The op that defines `value` (None for a block argument)."""
    owner = value.owner
    if isinstance(owner, ir.OpView):
        return owner.operation
    return owner if isinstance(owner, ir.Operation) else None


def outer_operands(op: ir.Operation) -> list[ir.Value]:
    """Operands of op and of ops nested in it that are defined outside op (values a region reads by implicit
    capture included)."""
    values = list(op.operands)
    if op.regions:
        inside: set = set()

        def collect(inner: ir.Operation) -> ir.WalkResult:
            for r in inner.results:
                inside.add(r)
            for region in inner.regions:
                for b in region.blocks:
                    for a in b.arguments:
                        inside.add(a)
            return ir.WalkResult.ADVANCE

        op.walk(collect, walk_order=ir.WalkOrder.PRE_ORDER)

        def visit(inner: ir.Operation) -> ir.WalkResult:
            if inner != op:
                values.extend(v for v in inner.operands if v not in inside)
            return ir.WalkResult.ADVANCE

        op.walk(visit, walk_order=ir.WalkOrder.PRE_ORDER)
    return values


def body_ops(a: ir.Operation) -> list[str]:
    """The ops of a reduce-like op's body, its return left out (["stablehlo.add"] for a sum)."""
    body = a.regions[-1].blocks[0]
    return [op.operation.name for op in body.operations if op.operation.name != "stablehlo.return"]
