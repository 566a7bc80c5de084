"""Static attributes written with the batch size, for ir/micro_batch.py.

The two lowerings of a step (at m and 2m examples) pair op by op, and an op's kind is read from its
operands. But a step can use the batch size as a Python number: `h[:, h.shape[0] // 4]` slices another
column at each size, and `h[: h.shape[0] // 2]` keeps the first half of each micro-batch, not of the
batch. Both ran under PipeshardParallel and gave another loss than jax.jit (7 % and 3 % off), silently.

So an op's attributes must agree between the lowerings, except the per-dim ones (slice bounds, slice
sizes, padding, windows) at the batch dims of its operand, where the sizes differ by nature; and there,
a slice must keep every example of each micro-batch or every k-th (`h[::2]`), a dynamic slice or update
the whole batch dim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxlib.mlir import ir

if TYPE_CHECKING:
    from autopar.ir.micro_batch import Interpreter

# Attributes with one entry per dim of operand 0 (`padding` of reduce_window: one row per dim).
_PER_OPERAND_DIM = {
    "start_indices",
    "limit_indices",
    "strides",
    "slice_sizes",
    "edge_padding_low",
    "edge_padding_high",
    "interior_padding",
    "window_dimensions",
    "window_strides",
    "base_dilations",
    "window_dilations",
    "padding",
}
_PER_DIM_OPS = {
    "stablehlo.slice",
    "stablehlo.dynamic_slice",
    "stablehlo.gather",
    "stablehlo.pad",
    "stablehlo.reduce_window",
    "stablehlo.select_and_scatter",
}


def written_with_batch_size(it: Interpreter, a: ir.Operation, b: ir.Operation) -> str | None:
    """Why op `a` and its twin `b` (at 2m) are not the same op on more examples, or None."""
    if a.name == "stablehlo.constant":
        return None  # its value is read by the interpretation (a power of m, or irregular)
    ours, theirs = _attributes(a), _attributes(b)
    batch = set(it.batch_dims(a.operands[0])) if a.operands else set()
    for name in sorted(set(ours) | set(theirs)):
        x, y = ours.get(name), theirs.get(name)
        if str(x) == str(y):
            continue
        if a.name in _PER_DIM_OPS and name in _PER_OPERAND_DIM and x is not None and y is not None:
            differing = {d for d, (u, v) in enumerate(zip(_rows(x), _rows(y), strict=True)) if u != v}
            if differing <= batch:
                continue
        return (
            f"{a.name}'s {name} changes with the micro-batch size (the step uses the batch size as a number)"
        )
    return _takes_part_of_the_batch(it, a, b, batch)


def _takes_part_of_the_batch(
    it: Interpreter, a: ir.Operation, b: ir.Operation, batch: set[int]
) -> str | None:
    if not batch or a.name not in (
        "stablehlo.slice",
        "stablehlo.dynamic_slice",
        "stablehlo.dynamic_update_slice",
    ):
        return None
    sizes = _shape(a.operands[0]), _shape(b.operands[0])
    for d in sorted(batch):
        if a.name == "stablehlo.slice":
            if not all(_every_kth(op, n[d], d) for op, n in zip((a, b), sizes, strict=True)):
                return "a slice that keeps some of each micro-batch's examples (not all, nor every k-th)"
        elif a.name == "stablehlo.dynamic_slice":
            if any(
                _ints(op.attributes["slice_sizes"])[d] != n[d] for op, n in zip((a, b), sizes, strict=True)
            ):
                return "a dynamic slice of part of the batch dim"
        elif any(_shape(op.operands[1])[d] != n[d] for op, n in zip((a, b), sizes, strict=True)):
            return "a dynamic update of part of the batch dim"
    return None


def _every_kth(op: ir.Operation, size: int, d: int) -> bool:
    """Whether slice `op` keeps every k-th example along dim d, of `size`: from one of the first k, to the
    end, k dividing the size (so each micro-batch keeps the examples the whole batch keeps)."""
    start, limit, stride = (_ints(op.attributes[k])[d] for k in ("start_indices", "limit_indices", "strides"))
    return start < stride and limit == size and size % stride == 0


def _attributes(op: ir.Operation) -> dict[str, ir.Attribute]:
    # By name: reading an attribute by its position aborts the process where the bindings cannot cast it
    # (docs/platform.md, "IR and passes").
    return {name: op.attributes[name] for name in op.attributes}


def _rows(attr: ir.Attribute) -> list[tuple[int, ...]]:
    """Per operand dim, its entries (one, or a padding's (low, high))."""
    if isinstance(attr, ir.DenseIntElementsAttr):
        values = [int(v) for v in attr]
        shape = ir.ShapedType(attr.type).shape
        width = shape[1] if len(shape) == 2 else 1
        return [tuple(values[i : i + width]) for i in range(0, len(values), width)]
    return [(v,) for v in _ints(attr)]


def _ints(attr: ir.Attribute) -> list[int]:
    if isinstance(attr, ir.DenseI64ArrayAttr):
        return list(attr)
    if isinstance(attr, ir.DenseIntElementsAttr):
        return [int(v) for v in attr]
    return list(ir.DenseI64ArrayAttr(attr))


def _shape(value: ir.Value) -> list[int]:
    return list(ir.RankedTensorType(value.type).shape)


def keeps_order(a: ir.Operation) -> bool:
    """Whether the op maps a largest value to the largest: a reshape, or a convert to a float, from a
    bool, or to an integer at least as wide and of the same signedness (not to bool, nor one that wraps)."""
    if a.name in ("stablehlo.reshape", "stablehlo.transpose", "stablehlo.copy", "stablehlo.broadcast_in_dim"):
        return True
    if a.name != "stablehlo.convert":
        return False
    source = ir.RankedTensorType(a.operands[0].type).element_type
    result = ir.RankedTensorType(a.results[0].type).element_type
    if not isinstance(result, ir.IntegerType):
        return True
    if not isinstance(source, ir.IntegerType):
        return False  # a float cut to an integer: out-of-range values are not ordered by any rule we know
    if source.width == 1:
        return True
    return result.width >= source.width and source.is_unsigned == result.is_unsigned
