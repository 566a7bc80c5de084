"""Values computed from the batch alone that do not split into micro-batches, taken from the whole batch.

Mixup written in the step (`p * x + (1 - p) * jnp.roll(x, 1, axis=0)`, as big_vision does), a sample
standard deviation over the batch (`x.std(0, ddof=1)`), a median or a cumulative count over the batch:
the micro-batch interpretation gives up on each (it pairs examples of different micro-batches, or
divides by N - 1), yet each reads nothing the stages compute, only the batch arguments, PRNG keys and
scalars. `prepare(small, large, full)` takes every such value that something else reads from `full`, the
step lowered at the whole batch, and makes it a new @main argument of `small` and `large` (the step at m
and 2m examples per micro-batch): a batch argument when it holds one row per example along dim 0, which
the runtime cuts into micro-batches like the batch, else an argument that is the same in every
micro-batch. The runtime computes them once per step, before the micro-batches, from the step cut down to
them (runtime/statistics.py). A value with its examples along another dim stays refused.

    before: %r = stablehlo.concatenate %x_tail, %x_head, dim = 0   // unknown: examples regrouped
            %m = stablehlo.add %scaled, %r_scaled                  // read by the first layer's dot
    after:  func.func @main(..., %arg9: tensor<4x16xf32> {autopar.batch,
                                                           autopar.path = "add of the whole batch at ..."})
"""

from __future__ import annotations

import dataclasses
import math

from jaxlib.mlir import ir

from autopar.ir import attrs, micro_batch
from autopar.ir.batch_statistics import cut_to, input_values, replace_by_argument, where
from autopar.ir.cloning import defining_op

# Non-batch arguments a prepared value may read: PRNG keys (2 words) and scalars such as a step count;
# parameters are larger, and recomputing the model from them once more before the step is not this.
MAX_SMALL_ARGUMENT = 16


@dataclasses.dataclass(frozen=True)
class PreparedInputs:
    """`module`'s @main takes the step's arguments `sources` (indices into the planned @main's arguments,
    at the whole batch) and returns the prepared values, step arguments `first`, `first + 1`, ..."""

    module: ir.Module
    sources: tuple[int, ...]
    first: int


@dataclasses.dataclass(frozen=True)
class Candidates:
    """The values of a step to prepare over the whole batch, and the classification that found them."""

    found: micro_batch.Classification
    values: list[ir.Value]

    def __bool__(self) -> bool:
        return bool(self.values)


def candidates(small: ir.Module, large: ir.Module, m: int, B: int) -> Candidates:
    """The values of `small` to prepare over the whole batch (see the module docstring)."""
    found = micro_batch.classify(small, large, m, B)
    main = micro_batch.main_function(small)
    inputs = input_values(main, _small_arguments(main))
    picks: dict[ir.Value, None] = {}
    for op in main.regions[0].blocks[0].operations:
        op = op.operation
        if all(r in inputs for r in op.results) and op.results:
            continue  # computed from the batch alone: a reader inside what is prepared
        for v in op.operands:
            while (p := defining_op(v)) is not None and p.name == "stablehlo.broadcast_in_dim":
                if p.operands[0] not in inputs or found.kind(p.operands[0]).tag != "unknown":
                    break
                v = p.operands[0]  # a median broadcast over the examples: the median, once
            if v in inputs and found.kind(v).tag == "unknown" and defining_op(v) is not None:
                if _layout(v, found.twin[v], m) is not None and _poisons_every_reader(found, v):
                    picks[v] = None
    return Candidates(found, list(picks))


def _poisons_every_reader(found: micro_batch.Classification, value: ir.Value) -> bool:
    """Whether every op reading `value` gives up on it. A reader that does not (a gather by
    `jnp.arange(B)`, each example's own row: ir/micro_batch_indices.py) relies on the micro-batch's own
    value, which the whole batch's would break."""
    for use in value.uses:
        reader = use.owner
        if reader.name != "func.return" and not any(found.kind(r).tag == "unknown" for r in reader.results):
            return False
    return True


def prepare(
    small: ir.Module, large: ir.Module, full: ir.Module, chosen: Candidates, m: int
) -> PreparedInputs | None:
    """Replaces the `chosen` values of `small` (`candidates` of it and `large`, unchanged since) and their
    twins in `large` by new @main arguments, in place; returns what computes them from `full`, or None
    when there are none (or `full` does not pair up)."""
    main, main_full = micro_batch.main_function(small), micro_batch.main_function(full)
    twins = _pair(main, main_full)
    if not chosen or twins is None:
        return None
    module, sources = cut_to(full, [twins[v] for v in chosen.values])
    first = len(main.regions[0].blocks[0].arguments)
    for v in chosen.values:
        twin = chosen.found.twin[v]
        per_example = _layout(v, twin, m)
        path = f"{defining_op(v).name.removeprefix('stablehlo.')} of the whole batch{where(v)}"
        replace_by_argument(main, v, path, batch=per_example)
        replace_by_argument(micro_batch.main_function(large), twin, path, batch=per_example)
    return PreparedInputs(module, tuple(sources), first)


def _small_arguments(main: ir.Operation) -> set[int]:
    """Non-batch arguments small enough to be keys or scalars."""
    types = ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value).inputs
    marks = attrs.get_argument_marks(main)
    return {
        i
        for i, t in enumerate(types)
        if not marks[i].is_batch
        and isinstance(t, ir.RankedTensorType)
        and math.prod(t.shape) <= MAX_SMALL_ARGUMENT
    }


def _layout(small: ir.Value, large: ir.Value, m: int) -> bool | None:
    """True when `small` holds one row per example along dim 0, False when it has no batch dim, None
    otherwise (it cannot be cut into micro-batches)."""
    a, b = (tuple(ir.RankedTensorType(v.type).shape) for v in (small, large))
    batch = micro_batch.shape_batch_dims(a, b)
    if not batch:
        return False
    return True if batch == [0] and (a[0], b[0]) == (m, 2 * m) else None


def _pair(main: ir.Operation, full: ir.Operation) -> dict[ir.Value, ir.Value] | None:
    """Each value of `main`'s body and its twin in `full`'s (the same step at another batch size)."""
    ops, ops_full = ([op.operation for op in f.regions[0].blocks[0].operations] for f in (main, full))
    if len(ops) != len(ops_full) or any(a.name != b.name for a, b in zip(ops, ops_full, strict=True)):
        return None
    twins: dict[ir.Value, ir.Value] = {}
    for a, b in zip(ops, ops_full, strict=True):
        twins.update(zip(a.results, b.results, strict=True))
    return twins
