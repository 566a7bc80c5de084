"""Indices that are each example's own position in the batch, for ir/micro_batch.py.

`h[jnp.arange(B), idx]` (the hidden state at each example's last token: CLIP's pooled text, a classifier
on a causal LM) and `m.at[jnp.arange(B), idx].set(1)` gather or scatter with an index whose first
component is an iota over the batch dim. Alone, such an iota is unknown: it is the example's position
within its micro-batch, not within the batch (per-example random bits drawn from it differ). Used as the
index of the batch dim of a gather's or scatter's operand, it reads or writes row i of example i in
every micro-batch as in the whole batch, so the op is per example. jnp lowers the index as

    %i = iota dim = 0                                   (the example's position)
    %n = select(compare LT %i, 0), add(%i, B), %i         (negative indices wrap; an iota never is one)
    %v = concatenate(broadcast_in_dim %n, broadcast_in_dim %idx), dim = <index vector dim>

and `own_example_index` reads that shape back, conservatively: anything else keeps the iota unknown.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from autopar.ir.constants import dense_value
from autopar.ir.micro_batch import Kind, join

if TYPE_CHECKING:
    from autopar.ir.micro_batch import Interpreter


def own_example_index(it: Interpreter, a: ir.Operation) -> Kind | None:
    """The kind of a gather's or scatter's indices other than one component that is each example's own
    position, indexing the operand's batch dim one example wide; None when the indices are not so."""
    operand, indices = a.operands[0], a.operands[1]
    if a.name == "stablehlo.gather":
        numbers = stablehlo.GatherDimensionNumbers(a.attributes["dimension_numbers"])
        index_map, one_wide = list(numbers.start_index_map), list(numbers.collapsed_slice_dims)
    else:
        numbers = stablehlo.ScatterDimensionNumbers(a.attributes["scatter_dimension_numbers"])
        index_map, one_wide = list(numbers.scattered_dims_to_operand_dims), list(numbers.inserted_window_dims)
    operand_batch, index_batch = it.batch_dims(operand), it.batch_dims(indices)
    vector_dim = numbers.index_vector_dim
    if len(operand_batch) != 1 or len(index_batch) != 1 or operand_batch[0] not in one_wide:
        return None
    size = _batch_size(it, operand)
    own, others = [], []
    for position, part in _index_parts(indices, vector_dim):
        if position[1] - position[0] == 1 and _is_example_position(it, part, size):
            own.append(position[0])
        else:
            others.append((position, part))
    if len(own) != 1 or index_map[own[0]] != operand_batch[0]:
        return None
    kind = Kind("batch", 0)
    for position, part in others:
        if operand_batch[0] in index_map[position[0] : position[1]]:
            return None  # another component indexes the batch dim too
        kind = join(kind, it.kind(part))
    return None if kind.tag == "unknown" else kind


def crosses_examples(it: Interpreter, a: ir.Operation, b: ir.Operation) -> str | None:
    """Why a gather or scatter (`a`, its twin at 2m `b`) on an operand with batch dims would read or
    write another example's rows, or None when each example's rows stay its own: on each batch dim it is
    a batching dim paired with the indices' batch dim (take_along_axis), each example's own position
    (`h[jnp.arange(B), i]`), or a window over the whole dim with indices that hold no examples (whose
    start is then clamped to 0). Any other index into the batch dim pairs examples across micro-batch
    boundaries: `lax.gather(h, perm)` ran each micro-batch's rows in place of the batch's."""
    operand = a.operands[0]
    batch = it.batch_dims(operand)
    if not batch:
        return None
    index_batch = it.batch_dims(a.operands[1])
    if a.name == "stablehlo.gather":
        numbers = stablehlo.GatherDimensionNumbers(a.attributes["dimension_numbers"])
        batching, paired = list(numbers.operand_batching_dims), list(numbers.start_indices_batching_dims)
        windows = _gather_windows(a), _gather_windows(b)
    else:
        numbers = stablehlo.ScatterDimensionNumbers(a.attributes["scatter_dimension_numbers"])
        batching, paired = list(numbers.input_batching_dims), list(numbers.scatter_indices_batching_dims)
        windows = _scatter_windows(a), _scatter_windows(b)
    own = own_example_index(it, a) is not None
    for d in batch:
        if d in batching:
            if paired[batching.index(d)] not in index_batch:
                return f"{a.name} pairing the batch dim with indices of no example"
        elif own:
            continue  # own_example_index checked that it indexes the one batch dim, one example wide
        elif index_batch or not _whole(d, windows, (operand, b.operands[0])):
            return f"{a.name} whose indices pick rows of other examples"
    return None


def _whole(d: int, windows: tuple[dict[int, int], ...], operands: tuple[ir.Value, ...]) -> bool:
    """Whether the window over dim d is the whole dim, at m and at 2m examples."""
    return all(w.get(d) == _shape(v)[d] for w, v in zip(windows, operands, strict=True))


def _shape(value: ir.Value) -> list[int]:
    return list(ir.RankedTensorType(value.type).shape)


def _gather_windows(a: ir.Operation) -> dict[int, int]:
    """Operand dim -> its slice size, for dims not indexed (a start of 0 or clamped) nor collapsed."""
    numbers = stablehlo.GatherDimensionNumbers(a.attributes["dimension_numbers"])
    sizes = list(ir.DenseI64ArrayAttr(a.attributes["slice_sizes"]))
    indexed = {*numbers.start_index_map, *numbers.collapsed_slice_dims, *numbers.operand_batching_dims}
    return {d: n for d, n in enumerate(sizes) if d not in indexed}


def _scatter_windows(a: ir.Operation) -> dict[int, int]:
    """Operand dim -> the size of the update window over it, for dims not indexed nor inserted."""
    numbers = stablehlo.ScatterDimensionNumbers(a.attributes["scatter_dimension_numbers"])
    skipped = {*numbers.inserted_window_dims, *numbers.input_batching_dims}
    dims = [d for d in range(len(_shape(a.operands[0]))) if d not in skipped]
    update = _shape(a.operands[2])
    indexed = set(numbers.scattered_dims_to_operand_dims)
    return {d: update[u] for d, u in zip(dims, numbers.update_window_dims, strict=True) if d not in indexed}


def _index_parts(indices: ir.Value, vector_dim: int) -> list[tuple[tuple[int, int], ir.Value]]:
    """(first, end) positions in the index vector, and the value giving them: the operands of a
    concatenate along the index vector dim, else the whole index."""
    shape = ir.RankedTensorType(indices.type).shape
    owner = indices.owner
    if (
        vector_dim < len(shape)
        and isinstance(owner, ir.OpView)
        and owner.operation.name == "stablehlo.concatenate"
        and ir.IntegerAttr(owner.operation.attributes["dimension"]).value == vector_dim
    ):
        parts, start = [], 0
        for value in owner.operation.operands:
            width = ir.RankedTensorType(value.type).shape[vector_dim]
            parts.append(((start, start + width), value))
            start += width
        return parts
    return [((0, shape[vector_dim] if vector_dim < len(shape) else 1), indices)]


def _is_example_position(it: Interpreter, value: ir.Value, size: tuple[int, int]) -> bool:
    """Whether each element of `value` is the position of its example along its one batch dim, of `size`
    (at m and 2m) as the operand's: an iota over that dim, through broadcasts (copies along new dims),
    converts, reshapes that only add or drop dims of size 1, and jnp's wrap of negative indices."""
    while True:
        batch = it.batch_dims(value)
        owner = value.owner
        if len(batch) != 1 or _batch_size(it, value) != size or not isinstance(owner, ir.OpView):
            return False
        op = owner.operation
        if op.name == "stablehlo.iota":
            return ir.IntegerAttr(op.attributes["iota_dimension"]).value == batch[0]
        if op.name == "stablehlo.broadcast_in_dim":
            dims = list(ir.DenseI64ArrayAttr(op.attributes["broadcast_dimensions"]))
            if batch[0] not in dims or it.batch_dims(op.operands[0]) != [dims.index(batch[0])]:
                return False
        elif op.name == "stablehlo.reshape":
            if _size_without_batch(it, op.operands[0]) != 1 or _size_without_batch(it, value) != 1:
                return False
        elif op.name == "stablehlo.convert":
            if not isinstance(ir.RankedTensorType(value.type).element_type, ir.IntegerType):
                return False
        elif not (op.name == "stablehlo.select" and _wraps_negative(op)):
            return False
        value = op.operands[2] if op.name == "stablehlo.select" else op.operands[0]


def _batch_size(it: Interpreter, value: ir.Value) -> tuple[int, int]:
    """The size of the value's first batch dim at m and at 2m examples."""
    d = it.batch_dims(value)[0]
    return ir.RankedTensorType(value.type).shape[d], ir.RankedTensorType(
        it.twin.get(value, value).type
    ).shape[d]


def _size_without_batch(it: Interpreter, value: ir.Value) -> int:
    batch = it.batch_dims(value)
    return math.prod(n for d, n in enumerate(ir.RankedTensorType(value.type).shape) if d not in batch)


def _wraps_negative(op: ir.Operation) -> bool:
    """`select(x < 0, x + n, x)`, jnp's wrap of negative indices: x itself where x is never negative."""
    predicate, wrapped = op.operands[0].owner, op.operands[1].owner
    if not all(isinstance(o, ir.OpView) for o in (predicate, wrapped)):
        return False
    predicate, wrapped = predicate.operation, wrapped.operation
    return (
        predicate.name == "stablehlo.compare"
        and "LT" in str(predicate.attributes["comparison_direction"])
        and predicate.operands[0] == op.operands[2]
        and _is_zero(predicate.operands[1])
        and wrapped.name == "stablehlo.add"
        and wrapped.operands[0] == op.operands[2]
    )


def _is_zero(value: ir.Value) -> bool:
    """A constant 0, or a broadcast of one."""
    owner = value.owner
    while isinstance(owner, ir.OpView) and owner.operation.name == "stablehlo.broadcast_in_dim":
        owner = owner.operation.operands[0].owner
    if not isinstance(owner, ir.OpView) or owner.operation.name != "stablehlo.constant":
        return False
    dense = dense_value(owner.operation)
    if not (dense is not None and dense.is_splat):
        return False
    value = dense.get_splat_value()
    return isinstance(value, ir.IntegerAttr) and value.value == 0
