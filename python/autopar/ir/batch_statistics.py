"""Statistics of the batch's inputs, computed over the whole batch before the micro-batches run.

A loss normalised by the batch's own token count, `sum(l * mask) / sum(mask)`, does not combine over
micro-batches: each micro-batch would divide by its own count, and a ratio of sums is no sum
(ir/micro_batch.py refuses it). But `sum(mask)` reads nothing the stages compute: only the batch
arguments. So the runtime can compute it over the whole batch first (on each micro-batch, combined as its
label says: the sum of the counts) and hand it to every micro-batch as an argument that is the same in all
of them. Divided by that, the loss is a sum over the examples, its gradients too, and they combine exactly.
The same goes for any input statistic fed back into the step: `x - x.mean(0)` over the batch's own mean
is per example once the mean is the whole batch's.

`hoist(small, large)` finds such values where the micro-batch interpretation gives up: an op whose result
is unknown while its operands are not, reading a value that is

  - computed from the batch arguments (and constants, and statistics hoisted before) alone, and
  - a sum (mean, `sum:p` when floating), max or min over the examples, with no batch dim.

Each becomes a new @main argument (marked neither batch nor parameter, named by `autopar.path` after the
op and line it comes from) in both lowerings, which are then interpreted again: a statistic of a hoisted
statistic (the variance about the batch's mean) is found in a later round. Each round's statistics are
computed by a `StatisticsRound`: the step cut down to what they need, run on each micro-batch's slice
and combined (runtime/statistics.py).

    before: %c = stablehlo.reduce(%mask ...)  // sum over the examples
            %l = stablehlo.divide %s, %c       // unknown: a division by a sum over the examples
    after:  func.func @main(..., %c: tensor<f32> {autopar.path = "sum of the batch at loss.py:3"})
            %l = stablehlo.divide %s, %c       // a sum over the examples
"""

from __future__ import annotations

import dataclasses
import io

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import func

from autopar.errors import format_location
from autopar.ir import attrs, micro_batch
from autopar.ir.cloning import defining_op, outer_operands
from autopar.ir.io import parse_bytes

# Rounds of hoisting: each finds the statistics of the last round's (a variance about a hoisted mean).
MAX_ROUNDS = 4
# Ops a statistic may be computed with: no effects, and regions (a reduction's body, a loop's) that read
# only values defined inside them (JAX passes a loop everything it reads).
_EFFECTS = ("stablehlo.custom_call", "stablehlo.rng", "stablehlo.rng_bit_generator", "func.call")


@dataclasses.dataclass(frozen=True)
class StatisticsRound:
    """One round of statistics: `module`'s @main takes, per argument, the step argument `sources[i]`
    (an index into @main's arguments of the planned step, its statistics last) and returns the
    statistics one micro-batch gives; `labels[j]` says how statistic j combines over micro-batches
    ("sum", "mean", "sum:<p>", "max", "min"); they become step arguments `first`, `first + 1`, ..."""

    module: ir.Module
    sources: tuple[int, ...]
    batch_sources: frozenset[int]
    labels: tuple[str, ...]
    first: int


def hoist(
    small: ir.Module, large: ir.Module, micro_batch_size: int, num_micro_batches: int | None = None
) -> list[StatisticsRound]:
    """Hoists the input statistics of `small` (and their twins in `large`, the same step at twice the
    micro-batch; both inlined) into new @main arguments, in place; returns the rounds that compute them."""
    rounds: list[StatisticsRound] = []
    statistics: set[int] = set()  # @main's arguments that are hoisted statistics
    for _ in range(MAX_ROUNDS):
        found = micro_batch.classify(small, large, micro_batch_size, num_micro_batches)
        main = micro_batch.main_function(small)
        inputs = input_values(main, statistics)
        picks = _statistics(main, found, inputs, micro_batch_size)
        if not picks:
            break
        labels = [_label(found, v, micro_batch_size) for v in picks]
        module, sources = cut_to(small, picks)
        marks = attrs.get_argument_marks(main)
        batch = frozenset(i for i in sources if i < len(marks) and marks[i].is_batch)
        first = len(main.regions[0].blocks[0].arguments)
        rounds.append(StatisticsRound(module, tuple(sources), batch, tuple(labels), first))
        for v in picks:
            path = f"batch {_word(found, v, micro_batch_size)}{where(v)}"
            statistics.add(len(main.regions[0].blocks[0].arguments))
            replace_by_argument(main, v, path)
            replace_by_argument(micro_batch.main_function(large), found.twin[v], path)
    return rounds


def input_values(main: ir.Operation, statistics: set[int]) -> set[ir.Value]:
    """The values of @main's body computed from batch arguments, the arguments `statistics` names (hoisted
    statistics, keys) and constants only."""
    block = main.regions[0].blocks[0]
    marks = attrs.get_argument_marks(main)
    inputs = {a for i, a in enumerate(block.arguments) if i in statistics or marks[i].is_batch}
    for op in block.operations:
        op = op.operation
        if op.name in _EFFECTS or (op.regions and not _closed(op)):
            continue
        if all(v in inputs for v in op.operands) and op.results:
            inputs.update(op.results)
    return inputs


def _closed(op: ir.Operation) -> bool:
    """Whether every op inside `op`'s regions reads only values defined inside `op`, and has no effect."""
    if len(outer_operands(op)) > len(op.operands):  # a region reads an outer value
        return False
    effects = []

    def visit(nested: ir.Operation) -> ir.WalkResult:
        if nested.operation.name in _EFFECTS:
            effects.append(nested)
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    op.walk(visit, ir.WalkOrder.PRE_ORDER)
    return not effects


def _statistics(
    main: ir.Operation, found: micro_batch.Classification, inputs: set[ir.Value], m: int
) -> list[ir.Value]:
    """The input statistics read by an op where the interpretation gives up, in program order."""
    picks: dict[ir.Value, None] = {}
    for op in main.regions[0].blocks[0].operations:
        op = op.operation
        if not found.seen(op) or not any(found.kind(r).tag == "unknown" for r in op.results):
            continue
        if any(found.kind(v).tag == "unknown" for v in op.operands):
            continue  # the interpretation gave up before this op
        for v in op.operands:
            root = _root(found, v, inputs, m)
            if root is not None:
                picks[root] = None
    return list(picks)


def _root(
    found: micro_batch.Classification, value: ir.Value, inputs: set[ir.Value], m: int
) -> ir.Value | None:
    """The statistic `value` is, back through broadcasts and conversions (a maximum broadcast over the
    examples; an integer count converted once per division that reads it: all of them read the hoisted
    count), or None when it is none."""
    found_root = None
    while value in inputs and (producer := defining_op(value)) is not None:
        if _label(found, value, m):
            found_root = value  # the ops after it recompute what the whole batch's program computes
        if producer.name not in ("stablehlo.broadcast_in_dim", "stablehlo.convert"):
            break
        value = producer.operands[0]
    return found_root


def _label(found: micro_batch.Classification, value: ir.Value, m: int) -> str:
    """How the statistic combines over micro-batches, or "" when it is not one that combines exactly."""
    kind = found.kind(value)
    if kind.tag not in ("sum", *micro_batch.EXTREMES):
        return ""
    shape = tuple(ir.RankedTensorType(value.type).shape)
    if shape != tuple(ir.RankedTensorType(found.twin[value].type).shape):
        return ""  # a batch dim: not a statistic
    label = kind.label(shape, shape, m)
    floating = not isinstance(ir.RankedTensorType(value.type).element_type, ir.IntegerType)
    scaled = label == "mean" or label.startswith("sum:")
    if label in ("sum", *micro_batch.EXTREMES) or (floating and scaled):
        return label
    return ""  # an integer mean rounds per micro-batch; an affine sum does not combine


def _word(found: micro_batch.Classification, value: ir.Value, m: int) -> str:
    """What the statistic is, for its argument's name: sum, mean, max or min."""
    label = _label(found, value, m)
    return "sum" if label.startswith("sum") else label


def where(value: ir.Value) -> str:
    op = defining_op(value)
    where = format_location(op.location) if op is not None else ""
    return f" at {where}" if where else ""


def replace_by_argument(main: ir.Operation, value: ir.Value, path: str, batch: bool = False) -> ir.Value:
    """Adds an argument of `value`'s type to @main, named by `path` (and a batch argument when `batch`),
    and makes every reader of `value` read it; the ops that computed only `value` are erased."""
    block = main.regions[0].blocks[0]
    argument = append_argument(main, value.type, path, batch)
    producer = defining_op(value)
    value.replace_all_uses_with(argument)
    _erase_dead(block, producer)
    return argument


def append_argument(main: ir.Operation, t: ir.Type, path: str, batch: bool = False) -> ir.Value:
    """A new last argument of @main of type `t`, named `path` (`autopar.path`), a batch argument when
    `batch`; @main's type and argument attributes follow."""
    block = main.regions[0].blocks[0]
    with main.context, ir.Location.unknown():
        argument = block.add_argument(t, ir.Location.unknown())
        function_type = ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value)
        old = (
            list(ir.ArrayAttr(main.attributes["arg_attrs"]))
            if "arg_attrs" in main.attributes
            else [ir.DictAttr.get({})] * len(function_type.inputs)
        )
        named = {attrs.PATH: ir.StringAttr.get(path)} | ({attrs.BATCH: ir.UnitAttr.get()} if batch else {})
        main.attributes["function_type"] = ir.TypeAttr.get(
            ir.FunctionType.get([*function_type.inputs, t], function_type.results)
        )
        main.attributes["arg_attrs"] = ir.ArrayAttr.get([*old, ir.DictAttr.get(named)])
    return argument


def _erase_dead(block: ir.Block, op: ir.Operation | None) -> None:
    """Erases `op` and what computed its operands, as far as nothing else reads them."""
    cone, todo = set(), [op]
    while todo:
        o = todo.pop()
        if o is not None and o not in cone and o.name not in _EFFECTS:
            cone.add(o)
            todo.extend(defining_op(v) for v in o.operands)
    for o in reversed([o.operation for o in block.operations]):  # readers before what they read
        if o in cone and not any(list(r.uses) for r in o.results):
            o.erase()


def cut_to(module: ir.Module, values: list[ir.Value]) -> tuple[ir.Module, list[int]]:
    """A copy of `module` whose @main returns `values` (values of its @main) and keeps only what they
    need; with, per remaining argument, its index among the original @main's arguments."""
    main = micro_batch.main_function(module)
    block = main.regions[0].blocks[0]
    ops = [op.operation for op in block.operations]
    where = []
    for v in values:
        producer = defining_op(v)
        index = next(i for i, op in enumerate(ops) if op == producer)
        where.append((index, next(j for j, r in enumerate(producer.results) if r == v)))
    copy = _copy(module)
    copy_main = micro_batch.main_function(copy)
    copy_block = copy_main.regions[0].blocks[0]
    copy_ops = [op.operation for op in copy_block.operations]
    results = [copy_ops[i].results[j] for i, j in where]
    with copy.context, ir.Location.unknown():
        copy_ops[-1].erase()
        with ir.InsertionPoint(copy_block):
            func.ReturnOp(results)
        for op in reversed(copy_ops[:-1]):
            if not any(list(r.uses) for r in op.results):
                op.erase()
        kept = [i for i, a in enumerate(copy_block.arguments) if list(a.uses)]
        for i in reversed(range(len(copy_block.arguments))):
            if i not in kept:
                copy_block.erase_argument(i)
        types = [a.type for a in copy_block.arguments]
        copy_main.attributes["function_type"] = ir.TypeAttr.get(
            ir.FunctionType.get(types, [v.type for v in results])
        )
        empty = ir.DictAttr.get({})
        copy_main.attributes["arg_attrs"] = ir.ArrayAttr.get([empty] * len(types))
        copy_main.attributes["res_attrs"] = ir.ArrayAttr.get([empty] * len(results))
    return copy, kept


def _copy(module: ir.Module) -> ir.Module:
    buffer = io.BytesIO()
    module.operation.write_bytecode(buffer)
    return parse_bytes(buffer.getvalue(), source_name="<statistics>")
