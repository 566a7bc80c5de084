"""The pipelined step as the executors read it from a module outlined by `autopar-inter-op`.

`StepProgram(module)` reads @main once: its arguments (which are batch arguments, sliced into micro-batches),
its stage calls (part, stage, operands, results), the values gathered over micro-batches (those an apply part
reads or @main returns) and how each combines (its `autopar.micro_batch` label, ir/micro_batch.py), the order
to run the forward and backward parts in (runtime/program.py, from `autopar.schedule`), and how many parts of
a micro-batch read each value. The executors (in-process: runtime/sequential.py; a process per mesh:
runtime/processes.py) only run it: nothing here compiles or moves data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
from jaxlib.mlir import ir

from autopar.errors import AutoparError, format_location
from autopar.ir import attrs
from autopar.ir.micro_batch import DECLARABLE
from autopar.runtime import program


class ExecutionError(AutoparError):
    """A stage module could not be compiled or run (names the stage)."""


# Reasons of ops that mix the values along dim 0, which are also what a time-major batch argument gives.
MIXES_EXAMPLES = ("span examples", "pairs different examples", "cuts into the batch dim")


class MicroBatchCombineError(ExecutionError):
    """A value of the micro-batch step does not combine exactly into the full-batch step's value."""


@dataclasses.dataclass
class Call:
    """One `func.call` of @main: the stage function it runs, its operand and result values, its part.
    An operand another stage's mesh produced and a transfer op moves (autopar-reshard) is listed as the
    value it moves, with that transfer in `transfers` (None for the others; empty: none)."""

    callee: str
    operands: list[ir.Value]
    results: list[ir.Value]
    part: str
    function: ir.Operation
    stage: int
    transfers: list[Transfer | None] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Transfer:
    """A transfer op of @main: `result` is `source` (result `index` of `producer`) moved to another
    stage's mesh as `plan` says."""

    result: ir.Value
    source: ir.Value
    producer: Call
    index: int
    plan: attrs.Transfer


class StepProgram:
    """@main of an outlined module, read for an executor (see the module docstring).

    Args:
      module: the output of autopar-inter-op (not modified; the program's values live as long as it).
      num_micro_batches: B; default the module's `autopar.inter_op.micro_batches`.
      output_combine: output index -> "mean" | "sum" | "concat" | "max" | "min" | "last", overriding its
        label.
      approximate_combine: average the values whose combination is not exact instead of refusing them.
      output_names: the outputs' pytree paths, for messages (default "[<i>]").
    """

    def __init__(
        self,
        module: ir.Module,
        *,
        num_micro_batches: int | None = None,
        output_combine: Mapping[int, str] | None = None,
        approximate_combine: bool = False,
        output_names: Sequence[str] | None = None,
    ):
        self.module = module  # the ops and values read below live only as long as their module
        self.main, self.functions = split(module)
        if num_micro_batches is None:
            num_micro_batches = attrs.get_micro_batches(module.operation) or 1
        if num_micro_batches < 1:
            raise ExecutionError(f"num_micro_batches must be >= 1, got {num_micro_batches}")
        self.num_micro_batches = num_micro_batches
        block = self.main.regions[0].blocks[0]
        self.arguments = list(block.arguments)
        self.batch_arguments = batch_arguments(self.main)
        # The transfer results of each value that transfer ops move (a micro-batch's copies go with it).
        self.copies: dict[ir.Value, list[ir.Value]] = {}
        self.calls, self.returns = self._read_main(block)
        self.accumulated = self._values_to_accumulate()
        self._labelled = attrs.get_micro_batch_size(module.operation) is not None
        self._output_names = list(output_names or [f"[{i}]" for i in range(len(self.returns))])
        declared = dict(output_combine or {})
        self.combine = (
            {v: self._combination(v, declared, approximate_combine) for v in self.accumulated}
            if num_micro_batches > 1
            else {}
        )
        self.call_of = {(c.part, c.stage): c for c in self.calls}
        parts = [(c.part, c.stage) for c in self.calls]
        try:
            self.order = program.dispatch_order(
                attrs.get_schedule(module.operation), parts, num_micro_batches, self._needs()
            )
        except AutoparError as err:
            raise ExecutionError(str(err)) from None
        self.donated_operands = self._donated_operands()
        # How many forward/backward parts read each value (a micro-batch's copy is freed after the last).
        self.readers: dict[ir.Value, int] = {}
        for c in self.calls:
            if c.part != "apply":
                for v in set(c.operands):
                    self.readers[v] = self.readers.get(v, 0) + 1

    def _donated_operands(self) -> dict[str, tuple[int, ...]]:
        """Per apply function, the operands whose buffers it may reuse for its results: a donated @main
        argument (donate_argnums) that this apply part alone reads last (the forward and backward parts
        that read it run before every apply part) and that @main does not return. XLA then writes the new
        parameters and optimizer state into the old ones' buffers."""
        from autopar.runtime import shardings as sh

        donated = [
            v
            for v, a in zip(self.arguments, sh.arg_attrs(self.main.opview), strict=True)
            if sh.ALIASING_ATTR in a or sh.DONOR_ATTR in a
        ]
        out: dict[str, list[int]] = {}
        for v in donated:
            applies = [c for c in self.calls if c.part == "apply" and v in c.operands]
            if len(applies) != 1 or v in self.returns or applies[0].operands.count(v) != 1:
                continue
            out.setdefault(applies[0].callee, []).append(applies[0].operands.index(v))
        return {callee: tuple(sorted(operands)) for callee, operands in out.items()}

    def check_arguments(self, args: Sequence[Any]) -> None:
        if len(args) != len(self.arguments):
            raise ExecutionError(f"@main takes {len(self.arguments)} arguments, got {len(args)}")

    def _read_main(self, block: ir.Block) -> tuple[list[Call], list[ir.Value]]:
        funcs = self.functions
        calls: list[Call] = []
        producer: dict[ir.Value, tuple[Call, int]] = {}
        moved: dict[ir.Value, Transfer] = {}
        for op in block.operations:
            op = op.operation
            if op.name == "func.return":
                return calls, list(op.operands)
            plan = attrs.get_transfer(op) if op.name == "stablehlo.custom_call" else None
            if plan is not None:
                if len(op.operands) != 1 or op.operands[0] not in producer:
                    raise ExecutionError(f"a {attrs.TRANSFER} op of @main must move a result of a stage call")
                source = op.operands[0]
                t = Transfer(op.results[0], source, *producer[source], plan)
                moved[t.result] = t
                self.copies.setdefault(source, []).append(t.result)
                continue
            if op.name != "func.call":
                raise ExecutionError(
                    f"@main must only call stages and move values between them, found {op.name}"
                )
            callee = ir.FlatSymbolRefAttr(op.attributes["callee"]).value
            if callee not in funcs:
                raise ExecutionError(f"@main calls @{callee}, which has no {attrs.MESH}")
            part = attrs.get_part(funcs[callee]) or ""
            stage = attrs.get_stage(funcs[callee])
            operands = [moved[v].source if v in moved else v for v in op.operands]
            transfers = [moved.get(v) for v in op.operands] if any(v in moved for v in op.operands) else []
            call = Call(callee, operands, list(op.results), part, funcs[callee], stage or 0, transfers)
            calls.append(call)
            producer.update((value, (call, index)) for index, value in enumerate(op.results))
        raise ExecutionError("@main has no return")

    def _needs(self) -> dict[tuple[str, int], set[tuple[str, int]]]:
        """Per forward/backward part, the forward/backward parts whose results it reads."""
        producer = {v: (c.part, c.stage) for c in self.calls if c.part != "apply" for v in c.results}
        return {
            (c.part, c.stage): {producer[v] for v in c.operands if v in producer}
            for c in self.calls
            if c.part != "apply"
        }

    def _values_to_accumulate(self) -> list[ir.Value]:
        """Results of forward/backward parts read by an apply part or returned by @main."""
        produced = [v for c in self.calls if c.part != "apply" for v in c.results]
        read_once = {v for c in self.calls if c.part == "apply" for v in c.operands} | set(self.returns)
        return [v for v in produced if v in read_once]

    def _combination(self, value: ir.Value, declared: dict[int, str], approximate: bool) -> str:
        """The label that says how `value`'s B micro-batch values combine; refuses inexact ones."""
        outputs = [i for i, r in enumerate(self.returns) if r == value]
        read_by_apply = any(value in c.operands for c in self.calls if c.part == "apply")
        for i in outputs:
            if i in declared:
                if declared[i] not in DECLARABLE:
                    raise MicroBatchCombineError(
                        f"{self._output(i)}: combine it by one of {sorted(DECLARABLE)}, not {declared[i]!r}"
                    )
                return DECLARABLE[declared[i]]
        if not self._labelled:
            raise MicroBatchCombineError(
                f"{self.num_micro_batches} micro-batches but the module's ops carry no {attrs.MICRO_BATCH} "
                "labels (how each value combines into the full batch): plan it with autopar.parallelize, "
                "or run one micro-batch"
            )
        label, where = _label_of(value, self.calls, self.arguments, self.batch_arguments)
        exact = label in ("same", "mean", "sum", "max", "min") or label.startswith(("sum:", "concat:"))
        if label.startswith("concat:") and read_by_apply:
            exact = False  # an apply part planned for one micro-batch cannot read the whole batch
        if exact:
            return label
        if approximate and not label.startswith("concat:"):
            return "mean"
        what = self._output(outputs[0]) if outputs else "a value the apply step reads (a gradient?)"
        why = label.split(":", 1)[1] if label.startswith("unknown:") else f"it is {label!r}"
        # No combination of the micro-batches' values gives these: declaring one or averaging would not help.
        uncombinable = label.startswith("concat:") or label == "const:irregular"
        if label == "const:irregular":
            why = (
                "it changes with the micro-batch's size but not in proportion to it (a count in the state "
                "plus x.shape[0]?), so no combination of the micro-batches' values gives the full batch's "
                "(compute it outside the step)"
            )
        if label.startswith("concat:"):  # read by an apply part
            why = (
                "it holds one value per example (per-example gradients?), and the apply step, planned "
                "once per step, would see only one micro-batch of them; reduce it over the examples "
                "before the optimizer reads it"
            )
        hint = (
            f"declare how it combines with output_combine={{{self._output_names[outputs[0]]!r}: "
            "'mean' | 'sum' | 'concat' | 'max' | 'min' | 'last'}, "
            if outputs and not uncombinable
            else ""
        )
        average = "" if uncombinable else "average it as Alpa does with approximate_combine=True, "
        if any(reason in why for reason in MIXES_EXAMPLES):
            why += (
                " (micro-batches split dim 0 of every batch argument: time-major data needs its batch first)"
            )
        raise MicroBatchCombineError(
            f"{what}{f' (computed at {where})' if where else ''} does not combine exactly over "
            f"{self.num_micro_batches} micro-batches: {why}; {hint}{average}or use num_micro_batches=1"
        )

    def _output(self, i: int) -> str:
        """Output i as messages name it: by its path, or, for a step that returns one array (path ''), as
        the output its output_combine key '' names."""
        name = self._output_names[i]
        return f"output {name}" if name else "the step's output (output_combine key '')"

    def micro_batches(self, args: Sequence[Any]) -> dict[int, list[Any]]:
        B = self.num_micro_batches
        if B > 1 and not self.batch_arguments:
            raise ExecutionError(
                f"{B} micro-batches but no @main argument is marked {attrs.BATCH}: mark the batch "
                "arguments (parallelize does it from batch_argnums) or use one micro-batch"
            )
        out = {}
        for i in self.batch_arguments:
            planned = ir.RankedTensorType(self.arguments[i].type).shape
            x = args[i]
            shape = tuple(jnp.shape(x))
            if not shape or shape[0] != B * planned[0] or tuple(shape[1:]) != tuple(planned[1:]):
                raise ExecutionError(
                    f"batch argument {i} has shape {shape}; the plan is for micro-batches of shape "
                    f"{tuple(planned)}, so it must have shape {(B * planned[0], *planned[1:])} "
                    f"({B} micro-batches)"
                )
            m = planned[0]
            out[i] = [x[k * m : (k + 1) * m] for k in range(B)] if B > 1 else [x]
        return out


def _label_of(
    value: ir.Value, calls: list[Call], args: list[ir.Value], batch_args: list[int]
) -> tuple[str, str]:
    """(label, location) of a value of @main: its defining op's `autopar.micro_batch` label inside the
    stage function that returns it. Ops without a label are the same in every micro-batch when all their
    operands are (ir/micro_batch.py labels only the others); an op on example data without one was added
    after labelling and cannot be trusted."""
    for i, arg in enumerate(args):
        if arg == value:
            return ("concat:0" if i in batch_args else "same"), ""
    call = next(c for c in calls if value in c.results)
    block = call.function.regions[0].blocks[0]
    returned = list(block.operations)[-1].operation.operands[call.results.index(value)]

    def argument_label(number: int) -> str:
        return _label_of(call.operands[number], calls, args, batch_args)[0]

    owner = returned.owner
    where = "" if isinstance(owner, ir.Block) else format_location(owner.location)
    return _value_label(returned, argument_label, {}), where


_SHARDY = {"sdy.sharding_constraint", "sdy.reshard"}


def _value_label(value: ir.Value, argument_label: Callable[[int], str], memo: dict[ir.Value, str]) -> str:
    """The `autopar.micro_batch` label of a value inside a stage function."""
    if value in memo:
        return memo[value]
    owner = value.owner
    if isinstance(owner, ir.Block):  # an argument of the stage function: the caller's value
        label = argument_label(value.arg_number)
    elif (labels := attrs.get_micro_batch_labels(owner)) is not None:
        label = labels[value.result_number]
    else:
        inner = [_value_label(v, argument_label, memo) for v in owner.operands]
        live = [x for x in inner if x != "same"]
        if not live:
            label = "same"
        elif owner.name in attrs.LABEL_CARRYING_OPS and len(live) == 1:
            # A reshape or transpose may move the batch dim: a per-example value is then not concatenated.
            moved = live[0].startswith("concat:") and owner.name not in _SHARDY
            label = "batch" if moved else live[0]
        else:
            label = f"unknown:{owner.name} on example data was added after labelling"
    memo[value] = label
    return label


def runnable_stage_module(name: str, fn: ir.Operation, donated: Sequence[int] = ()) -> ir.Module:
    """The stage function `fn` as a module an executor compiles for its mesh's devices: as
    autopar-shard-stages sharded it, or replicated over its devices when nothing sharded it (the output of
    autopar-inter-op alone). The `donated` arguments are marked as buffer donors."""
    from autopar.ir import host_callbacks
    from autopar.ir.stages import stage_module
    from autopar.runtime import shardings as sh

    mesh = attrs.get_stage_mesh(fn)
    if mesh is None:
        raise ExecutionError(f"@{name} has no {attrs.MESH}")
    module = stage_module(fn)
    if not sh.module_meshes(module):
        sh.replicate_main(module, "mesh", len(mesh.device_ids))
    host_callbacks.place_in_stage(module)
    if donated:
        main = sh.main_func(module)
        with module.context:
            for i in donated:
                sh.set_arg_attr(main, i, sh.DONOR_ATTR, ir.BoolAttr.get(True))
    return module


def stage_meshes(module: ir.Module) -> list[tuple[int, ...]]:
    """The distinct device sets of the module's stage functions, in order of appearance."""
    meshes: list[tuple[int, ...]] = []
    for fn in split(module)[1].values():
        mesh = attrs.get_stage_mesh(fn)
        ids = tuple(sorted(mesh.device_ids)) if mesh is not None else ()
        if ids not in meshes:
            meshes.append(ids)
    return meshes


def batch_arguments(main: ir.Operation) -> list[int]:
    return [i for i, marks in enumerate(attrs.get_argument_marks(main)) if marks.is_batch]


def split(module: ir.Module) -> tuple[ir.Operation, dict[str, ir.Operation]]:
    main, stages = None, {}
    for op in module.body.operations:
        if op.operation.name != "func.func":
            continue
        name = ir.StringAttr(op.attributes["sym_name"]).value
        if name == "main":
            main = op.operation
        elif attrs.get_stage_mesh(op) is not None:
            stages[name] = op.operation
    if main is None or not stages:
        raise ExecutionError("the module has no @main calling stage functions: run autopar-inter-op first")
    return main, stages
