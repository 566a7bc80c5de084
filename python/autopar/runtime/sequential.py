"""The sequential stage executor: runs a module outlined by `autopar-inter-op` stage by stage.

Every stage part (`@stage_k_forward`, `@stage_k_backward`, `@stage_k_apply`) is cloned into its own module as
`@main` with the `sdy.mesh` its shardings name (written by `autopar-shard-stages`, which the
`autopar-pipeshard` pipeline runs), compiled by XLA for the devices of its `autopar.mesh`, and run when
`@main` calls it; a value crossing stages moves as its `autopar.transfer` op says (autopar-reshard;
runtime/transfer.py `move`, once per micro-batch when a part first reads it), anything else with
`jax.device_put` (the runtime places every argument with the layout its stage planned). The executor
plans nothing: a stage function without shardings (the output of autopar-inter-op alone) runs replicated
over its devices.

Micro-batches: `@main` is the step for ONE micro-batch (what `autopar-inter-op` plans). Arguments marked
`autopar.batch` arrive with B times the module's batch dim; the executor runs the forward and backward parts
once per micro-batch on its slice, in the order the module's `autopar.schedule` gives (runtime/program.py
merges the per-mesh programs; this process dispatches them asynchronously, so the meshes overlap as far as
XLA's client lets one process overlap them), combines every value those parts hand to the apply parts or to
`@main`'s results as its `autopar.micro_batch` label says, and runs the apply parts once. Reading @main,
the labels and the order are runtime/step.py's (`StepProgram`), shared with the process-per-mesh executor.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
from jaxlib.mlir import ir

from autopar.ir import attrs
from autopar.runtime import executable as rt_exe
from autopar.runtime import program, timeline, transfer
from autopar.runtime.mesh import on_auto_axes
from autopar.runtime.program import Gathered
from autopar.runtime.step import (  # noqa: F401 (the errors are part of this module's interface)
    Call,
    ExecutionError,
    MicroBatchCombineError,
    StepProgram,
    Transfer,
    runnable_stage_module,
)


class SequentialExecutor:
    """`SequentialExecutor(module)(*args)` runs the outlined step; `devices[i]` is cluster device i.

    Args:
      module: the output of autopar-inter-op (not modified).
      devices: the cluster's devices in id order (default: jax.devices()).
      num_micro_batches: B; default the module's `autopar.inter_op.micro_batches`.
      output_combine: output index -> "mean" | "sum" | "concat" | "max" | "min" | "last", overriding its
        label.
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
        host_callbacks: Sequence[Any] = (),
    ):
        self._devices = list(devices) if devices is not None else jax.devices()
        self._host_callbacks = tuple(host_callbacks)
        self.program = StepProgram(
            module,
            num_micro_batches=num_micro_batches,
            output_combine=output_combine,
            approximate_combine=approximate_combine,
            output_names=output_names,
        )
        self.num_micro_batches = self.program.num_micro_batches
        self._stages = {name: self._compile(name, fn) for name, fn in self.program.functions.items()}
        self.record_timeline = False  # time every part of each step (runtime/timeline.py)
        self.last_timeline: timeline.Timeline | None = None

    @property
    def stage_names(self) -> list[str]:
        return list(self._stages)

    def stage_executable(self, name: str) -> rt_exe.ShardedExecutable:
        return self._stages[name]

    def stage_device_count(self, name: str) -> int:
        return self._stages[name].mesh.size

    def as_text(self) -> str:
        """Every stage's compiled HLO, in call order."""
        return "\n".join(f"// @{c.callee}\n{self._stages[c.callee].as_text()}" for c in self.program.calls)

    def __call__(self, *args: Any) -> list[jax.Array]:
        if not self.record_timeline:
            self.last_timeline = None
            return self._step(args)
        outputs, profile = self._profiled(args)
        parts = timeline.part_of(self.program.functions)
        records = [
            (self.program.call_of[(ins.part, ins.stage)].callee, ins.micro_batch, start, end)
            for ins, start, end in profile.events
        ]
        self.last_timeline = timeline.make(timeline.from_events(records, parts), "in-process")
        return outputs

    def profile(self, *args: Any) -> StepProfile:
        """Runs the step waiting for every instruction to finish: when each ran (host seconds from the
        step's start) and the most bytes each device held. For benchmarks: the waits remove all
        overlap, so the step itself is slower than __call__'s."""
        return self._profiled(args)[1]

    def _profiled(self, args: Sequence[Any]) -> tuple[list[jax.Array], StepProfile]:
        events: list[tuple[program.Instruction, float, float]] = []
        peak: dict[int, int] = {}
        started = time.perf_counter()
        last = [started]

        def observe(
            ins: program.Instruction, live: list[dict[ir.Value, Any]], env: dict[ir.Value, Any]
        ) -> None:
            call = self.program.call_of[(ins.part, ins.stage)]
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
        return outputs, StepProfile(events, peak, time.perf_counter() - started)

    def _step(self, args: Sequence[Any], observe: Callable[..., None] | None = None) -> list[jax.Array]:
        prog = self.program
        prog.check_arguments(args)
        B = self.num_micro_batches
        env: dict[ir.Value, Any] = dict(zip(prog.arguments, args, strict=True))
        # Sliced here: a batch laid out over Explicit mesh axes slices once over Auto ones.
        batches = set(prog.batch_arguments)
        slices = prog.micro_batches([on_auto_axes(a) if i in batches else a for i, a in enumerate(args)])
        local: list[dict[ir.Value, Any]] = [
            {prog.arguments[i]: slices[i][m] for i in prog.batch_arguments} for m in range(B)
        ]
        left = [dict(prog.readers) for _ in range(B)]  # readers of each value still to run, per micro-batch
        gathered = {v: Gathered(prog.combine.get(v, "same"), B) for v in prog.accumulated}
        for ins in prog.order:
            call, values = prog.call_of[(ins.part, ins.stage)], local[ins.micro_batch]
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
                        for copy in prog.copies.get(v, ()):  # moved to another mesh for its readers
                            values.pop(copy, None)
            if observe is not None:
                observe(ins, local, env)
        for v, g in gathered.items():
            env[v] = g.result()
        for call in prog.calls:
            if call.part == "apply":
                self._run(call, env, env, env)
        return [env[v] for v in prog.returns]

    # ---- stages --------------------------------------------------------------------------------------

    def _run(
        self, call: Call, local: dict[ir.Value, Any], env: dict[ir.Value, Any], outputs: dict[ir.Value, Any]
    ) -> None:
        """Runs one part on its operands (this micro-batch's values first, then the step's) into `outputs`."""
        stage = self._stages[call.callee]
        operands = [local[v] if v in local else env[v] for v in call.operands]
        for j, t in enumerate(call.transfers):
            if t is not None:  # another mesh's value: moved once per micro-batch, kept for its readers
                if t.result not in local:
                    local[t.result] = self._move(t, operands[j], stage.in_shardings[j])
                operands[j] = local[t.result]
        try:
            results = stage(operands)
        except TypeError as err:
            raise ExecutionError(f"@{call.callee}: {err}") from None
        for value, out in zip(call.results, results, strict=True):
            outputs[value] = out

    def _move(self, t: Transfer, x: jax.Array, sharding: Any) -> jax.Array:
        """`x`, the value transfer `t` moves, on the reading part's mesh as the plan says."""
        planned = self._stages[t.producer.callee].out_shardings[t.index]
        if not x.sharding.is_equivalent_to(planned, x.ndim):  # a combined value: back to its planned layout
            x = jax.device_put(x, planned)
        try:
            return transfer.move(x, t.plan, sharding)
        except ValueError as err:
            raise ExecutionError(
                f"moving result {t.index} of @{t.producer.callee} to stage {t.plan.dst.stage}: {err}"
            ) from None

    def _compile(self, name: str, fn: ir.Operation) -> rt_exe.ShardedExecutable:
        mesh = attrs.get_stage_mesh(fn)
        assert mesh is not None  # split() keeps only functions with a mesh
        ids = list(mesh.device_ids)
        if max(ids) >= len(self._devices):
            raise ExecutionError(
                f"@{name} runs on device {max(ids)} but only {len(self._devices)} devices are available"
            )
        devices = [self._devices[i] for i in ids]
        module = runnable_stage_module(name, fn, self.program.donated_operands.get(name, ()))
        try:
            return rt_exe.compile(module, devices, self._host_callbacks)
        except Exception as err:  # XLA raises XlaRuntimeError with a multi-line message
            raise ExecutionError(f"XLA could not compile @{name}: {str(err).splitlines()[0]}") from None


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
