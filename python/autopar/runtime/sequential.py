"""The sequential stage executor: runs a module outlined by `autopar-inter-op` stage by stage.

Every stage part (`@stage_k_forward`, `@stage_k_backward`, `@stage_k_apply`) is cloned into its own module as
`@main` with the `sdy.mesh` its shardings name (written by `autopar-shard-stages`, which the
`autopar-pipeshard` pipeline runs), compiled by XLA for the devices of its `autopar.mesh`, and run when
`@main` calls it; values move between submeshes with `jax.device_put` (the runtime places every argument
with the layout its stage planned). The executor plans nothing: a stage function without shardings (the
output of autopar-inter-op alone) runs replicated over its devices.

Micro-batches (no pipelining yet): `@main` is the step for ONE micro-batch (what `autopar-inter-op` plans).
Arguments marked `autopar.batch` arrive with B times the module's batch dim; the executor runs the forward
and backward parts once per micro-batch on its slice, combines every value those parts hand to the apply
parts or to `@main`'s results as its `autopar.micro_batch` label says (ir/micro_batch.py: a mean is
averaged, a sum summed, a per-example output concatenated, a value equal in every micro-batch taken
once), and runs the apply parts once. A value whose combination is not exact is refused when the
executor is built, naming it, unless the caller declares it (`output_combine`) or accepts Alpa's average
(`approximate_combine=True`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec
from jaxlib.mlir import ir

from autopar.errors import AutoparError, format_location
from autopar.ir import attrs
from autopar.ir.micro_batch import DECLARABLE
from autopar.ir.stages import stage_module
from autopar.runtime import executable as rt_exe
from autopar.runtime import program
from autopar.runtime import shardings as sh
from autopar.runtime.program import Gathered


class ExecutionError(AutoparError):
    """A stage module could not be compiled or run (names the stage)."""


class MicroBatchCombineError(ExecutionError):
    """A value of the micro-batch step does not combine exactly into the full-batch step's value."""


@dataclasses.dataclass
class _Call:
    """One `func.call` of @main: the stage it runs, its operand and result values, its part."""

    callee: str
    operands: list[ir.Value]
    results: list[ir.Value]
    part: str
    function: ir.Operation
    stage: int


class SequentialExecutor:
    """`SequentialExecutor(module)(*args)` runs the outlined step; `devices[i]` is cluster device i.

    Args:
      module: the output of autopar-inter-op (not modified).
      devices: the cluster's devices in id order (default: jax.devices()).
      num_micro_batches: B; default the module's `autopar.inter_op.micro_batches`.
      output_combine: output index -> "mean" | "sum" | "concat" | "last", overriding its label.
      approximate_combine: average the values whose combination is not exact instead of refusing them.
      output_names: the outputs' pytree paths, for messages (default "[<i>]").
    """

    def __init__(
        self,
        module: ir.Module,
        devices: Sequence[Any] | None = None,
        *,
        num_micro_batches: int | None = None,
        output_combine: Mapping[int, str] | None = None,
        approximate_combine: bool = False,
        output_names: Sequence[str] | None = None,
    ):
        self._devices = list(devices) if devices is not None else jax.devices()
        self._module = module  # the ops and values read below live only as long as their module
        self._main, funcs = _split(module)
        if num_micro_batches is None:
            num_micro_batches = attrs.get_micro_batches(module.operation) or 1
        if num_micro_batches < 1:
            raise ExecutionError(f"num_micro_batches must be >= 1, got {num_micro_batches}")
        self.num_micro_batches = num_micro_batches
        block = self._main.regions[0].blocks[0]
        self._args = list(block.arguments)
        self._batch_args = _batch_arguments(self._main)
        self._calls, self._returns = self._read_main(block, funcs)
        self._accumulated = self._values_to_accumulate()
        self._labelled = attrs.get_micro_batch_size(module.operation) is not None
        self._output_names = list(output_names or [f"[{i}]" for i in range(len(self._returns))])
        declared = dict(output_combine or {})
        self._combine = (
            {v: self._combination(v, declared, approximate_combine) for v in self._accumulated}
            if num_micro_batches > 1
            else {}
        )
        self._call_of = {(c.part, c.stage): c for c in self._calls}
        parts = [(c.part, c.stage) for c in self._calls]
        try:
            self._order = program.dispatch_order(
                attrs.get_schedule(module.operation), parts, num_micro_batches, self._needs()
            )
        except AutoparError as err:
            raise ExecutionError(str(err)) from None
        # How many forward/backward parts read each value (a micro-batch's copy is freed after the last).
        self._readers: dict[ir.Value, int] = {}
        for c in self._calls:
            if c.part != "apply":
                for v in set(c.operands):
                    self._readers[v] = self._readers.get(v, 0) + 1
        self._stages = {name: self._compile(name, fn) for name, fn in funcs.items()}

    @property
    def stage_names(self) -> list[str]:
        return list(self._stages)

    def stage_executable(self, name: str) -> rt_exe.ShardedExecutable:
        return self._stages[name]

    def as_text(self) -> str:
        """Every stage's compiled HLO, in call order."""
        return "\n".join(f"// @{c.callee}\n{self._stages[c.callee].as_text()}" for c in self._calls)

    def __call__(self, *args: Any) -> list[jax.Array]:
        return self._step(args)

    def profile(self, *args: Any) -> StepProfile:
        """Runs the step waiting for every instruction to finish: when each ran (host seconds from the
        step's start) and the most bytes each device held. For benchmarks: the waits remove all
        overlap, so the step itself is slower than __call__'s."""
        events: list[tuple[program.Instruction, float, float]] = []
        peak: dict[int, int] = {}
        started = time.perf_counter()
        last = [started]

        def observe(
            ins: program.Instruction, live: list[dict[ir.Value, Any]], env: dict[ir.Value, Any]
        ) -> None:
            call = self._call_of[(ins.part, ins.stage)]
            jax.block_until_ready(
                [live[ins.micro_batch][v] for v in call.results if v in live[ins.micro_batch]]
            )
            now = time.perf_counter()
            events.append((ins, last[0] - started, now - started))
            last[0] = now
            held = _bytes_by_device([*env.values(), *(x for values in live for x in values.values())])
            for d, b in held.items():
                peak[d] = max(peak.get(d, 0), b)

        outputs = self._step(args, observe)
        jax.block_until_ready(outputs)
        return StepProfile(events, peak, time.perf_counter() - started)

    def _step(self, args: Sequence[Any], observe: Callable[..., None] | None = None) -> list[jax.Array]:
        if len(args) != len(self._args):
            raise ExecutionError(f"@main takes {len(self._args)} arguments, got {len(args)}")
        B = self.num_micro_batches
        env: dict[ir.Value, Any] = dict(zip(self._args, args, strict=True))
        slices = self._micro_batches(args)
        local: list[dict[ir.Value, Any]] = [
            {self._args[i]: slices[i][m] for i in self._batch_args} for m in range(B)
        ]
        left = [dict(self._readers) for _ in range(B)]  # readers of each value still to run, per micro-batch
        gathered = {v: Gathered(self._combine.get(v, "same"), B) for v in self._accumulated}
        for ins in self._order:
            call, values = self._call_of[(ins.part, ins.stage)], local[ins.micro_batch]
            self._run(call, values, env, values)
            readers = left[ins.micro_batch]
            for v in call.results:
                if v in gathered:  # accumulated on arrival; this micro-batch's copy goes with its readers
                    gathered[v].add(ins.micro_batch, values[v])
                    if not readers.get(v):
                        del values[v]
            for v in set(call.operands):  # free what no later part of this micro-batch reads
                if v in readers:
                    readers[v] -= 1
                    if readers[v] == 0:
                        values.pop(v, None)
            if observe is not None:
                observe(ins, local, env)
        for v, g in gathered.items():
            env[v] = g.result()
        for call in self._calls:
            if call.part == "apply":
                self._run(call, env, env, env)
        return [env[v] for v in self._returns]

    # ---- reading @main ---------------------------------------------------------------------------------

    def _read_main(
        self, block: ir.Block, funcs: dict[str, ir.Operation]
    ) -> tuple[list[_Call], list[ir.Value]]:
        calls = []
        for op in block.operations:
            op = op.operation
            if op.name == "func.return":
                return calls, list(op.operands)
            if op.name != "func.call":
                raise ExecutionError(f"@main must only call stages, found {op.name}")
            callee = ir.FlatSymbolRefAttr(op.attributes["callee"]).value
            if callee not in funcs:
                raise ExecutionError(f"@main calls @{callee}, which has no {attrs.MESH}")
            part = attrs.get_part(funcs[callee]) or ""
            stage = attrs.get_stage(funcs[callee])
            calls.append(_Call(callee, list(op.operands), list(op.results), part, funcs[callee], stage or 0))
        raise ExecutionError("@main has no return")

    def _needs(self) -> dict[tuple[str, int], set[tuple[str, int]]]:
        """Per forward/backward part, the forward/backward parts whose results it reads."""
        producer = {v: (c.part, c.stage) for c in self._calls if c.part != "apply" for v in c.results}
        return {
            (c.part, c.stage): {producer[v] for v in c.operands if v in producer}
            for c in self._calls
            if c.part != "apply"
        }

    def _values_to_accumulate(self) -> list[ir.Value]:
        """Results of forward/backward parts read by an apply part or returned by @main."""
        produced = [v for c in self._calls if c.part != "apply" for v in c.results]
        read_once = {v for c in self._calls if c.part == "apply" for v in c.operands} | set(self._returns)
        return [v for v in produced if v in read_once]

    def _combination(self, value: ir.Value, declared: dict[int, str], approximate: bool) -> str:
        """The label that says how `value`'s B micro-batch values combine; refuses inexact ones."""
        outputs = [i for i, r in enumerate(self._returns) if r == value]
        read_by_apply = any(value in c.operands for c in self._calls if c.part == "apply")
        for i in outputs:
            if i in declared:
                if declared[i] not in DECLARABLE:
                    raise MicroBatchCombineError(
                        f"output {self._output_names[i]}: combine it by one of {sorted(DECLARABLE)}, not "
                        f"{declared[i]!r}"
                    )
                return DECLARABLE[declared[i]]
        if not self._labelled:
            raise MicroBatchCombineError(
                f"{self.num_micro_batches} micro-batches but the module's ops carry no {attrs.MICRO_BATCH} "
                "labels (how each value combines into the full batch): plan it with autopar.parallelize, "
                "or run one micro-batch"
            )
        label, where = _label_of(value, self._calls, self._args, self._batch_args)
        exact = label in ("same", "mean", "sum") or label.startswith(("sum:", "concat:"))
        if label.startswith("concat:") and read_by_apply:
            exact = False  # an apply part planned for one micro-batch cannot read the whole batch
        if exact:
            return label
        if approximate and not label.startswith("concat:"):
            return "mean"
        what = (
            f"output {self._output_names[outputs[0]]}"
            if outputs
            else "a value the apply step reads (a gradient?)"
        )
        why = label.split(":", 1)[1] if label.startswith("unknown:") else f"it is {label!r}"
        hint = (
            f"declare how it combines with output_combine={{{self._output_names[outputs[0]]!r}: "
            "'mean' | 'sum' | 'concat' | 'last'}, "
            if outputs
            else ""
        )
        raise MicroBatchCombineError(
            f"{what}{f' (computed at {where})' if where else ''} does not combine exactly over "
            f"{self.num_micro_batches} micro-batches: {why}; {hint}average it as Alpa does with "
            "approximate_combine=True, or use num_micro_batches=1"
        )

    def _micro_batches(self, args: Sequence[Any]) -> dict[int, list[Any]]:
        B = self.num_micro_batches
        if B > 1 and not self._batch_args:
            raise ExecutionError(
                f"{B} micro-batches but no @main argument is marked {attrs.BATCH}: mark the batch "
                "arguments (parallelize does it from batch_argnums) or use one micro-batch"
            )
        out = {}
        for i in self._batch_args:
            planned = ir.RankedTensorType(self._args[i].type).shape
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

    # ---- stages --------------------------------------------------------------------------------------

    def _run(
        self, call: _Call, local: dict[ir.Value, Any], env: dict[ir.Value, Any], outputs: dict[ir.Value, Any]
    ) -> None:
        """Runs one part on its operands (this micro-batch's values first, then the step's) into `outputs`."""
        stage = self._stages[call.callee]
        try:
            results = stage([local[v] if v in local else env[v] for v in call.operands])
        except TypeError as err:
            raise ExecutionError(f"@{call.callee}: {err}") from None
        for value, out in zip(call.results, results, strict=True):
            outputs[value] = out

    def _compile(self, name: str, fn: ir.Operation) -> rt_exe.ShardedExecutable:
        mesh = attrs.get_stage_mesh(fn)
        assert mesh is not None  # _split keeps only functions with a mesh
        ids = list(mesh.device_ids)
        if max(ids) >= len(self._devices):
            raise ExecutionError(
                f"@{name} runs on device {max(ids)} but only {len(self._devices)} devices are available"
            )
        devices = [self._devices[i] for i in ids]
        module = stage_module(fn)
        if not sh.module_meshes(module):  # not sharded (autopar-shard-stages did not run): replicated
            main = sh.main_func(module)
            sh.annotate_main(
                module,
                sh.MeshSpec("mesh", ("x",), (len(devices),)),
                [PartitionSpec()] * len(main.type.inputs),
                [PartitionSpec()] * len(main.type.results),
            )
        try:
            return rt_exe.compile(module, devices)
        except Exception as err:  # XLA raises XlaRuntimeError with a multi-line message
            raise ExecutionError(f"XLA could not compile @{name}: {str(err).splitlines()[0]}") from None


def _label_of(
    value: ir.Value, calls: list[_Call], args: list[ir.Value], batch_args: list[int]
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


# Ops added after labelling (Shardy's constraints, canonicalization's reshapes) that carry their operand's
# label.
_CARRYING = {
    "sdy.sharding_constraint",
    "sdy.reshard",
    "stablehlo.reshape",
    "stablehlo.transpose",
    "stablehlo.convert",
    "stablehlo.broadcast_in_dim",
    "stablehlo.copy",
}
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
        elif owner.name in _CARRYING and len(live) == 1:
            # A reshape or transpose may move the batch dim: a per-example value is then not concatenated.
            moved = live[0].startswith("concat:") and owner.name not in _SHARDY
            label = "batch" if moved else live[0]
        else:
            label = f"unknown:{owner.name} on example data was added after labelling"
    memo[value] = label
    return label


@dataclasses.dataclass(frozen=True)
class StepProfile:
    """`SequentialExecutor.profile`: (instruction, start, end) in host seconds from the step's start, the
    most bytes each device (by id) held between instructions, and the step's seconds."""

    events: list[tuple[program.Instruction, float, float]]
    peak_bytes: dict[int, int]
    seconds: float


def _bytes_by_device(arrays: Sequence[Any]) -> dict[int, int]:
    held: dict[int, int] = {}
    for x in arrays:
        for shard in getattr(x, "addressable_shards", ()):
            held[shard.device.id] = held.get(shard.device.id, 0) + shard.data.nbytes
    return held


def _batch_arguments(main: ir.Operation) -> list[int]:
    return [i for i, marks in enumerate(attrs.get_argument_marks(main)) if marks.is_batch]


def _split(module: ir.Module) -> tuple[ir.Operation, dict[str, ir.Operation]]:
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
