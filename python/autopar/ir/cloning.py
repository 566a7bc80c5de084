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
