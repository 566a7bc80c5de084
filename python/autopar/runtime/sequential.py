"""The sequential stage executor: runs a module outlined by `autopar-inter-op` stage by stage.

Every stage part (`@stage_k_forward`, `@stage_k_backward`, `@stage_k_apply`) is cloned into its own module as
`@main` with the `sdy.mesh` its shardings name (written by `autopar-shard-stages`, which the
`autopar-pipeshard` pipeline runs), compiled by XLA for the devices of its `autopar.mesh`, and run when
`@main` calls it; values move between submeshes with `jax.device_put` (the runtime places every argument
with the layout its stage planned). The executor plans nothing: a stage function without shardings (the
output of autopar-inter-op alone) runs replicated over its devices.

Micro-batches (no pipelining yet): `@main` is the step for ONE micro-batch (what `autopar-inter-op` plans).
Arguments marked `autopar.batch` arrive with B times the module's batch dim; the executor runs the forward
and backward parts once per micro-batch on its slice, accumulates every value those parts hand to the
apply parts or to `@main`'s results (gradients, loss), averages them over the B micro-batches (Alpa's
`apply_grad_get_mean`: exact for losses that are means over the batch) and runs the apply parts once.
Non-float accumulated values keep the last micro-batch's value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec
from jaxlib.mlir import ir

from autopar.errors import AutoparError
from autopar.ir import attrs
from autopar.ir.stages import stage_module
from autopar.runtime import executable as rt_exe
from autopar.runtime import shardings as sh


class ExecutionError(AutoparError):
    """A stage module could not be compiled or run (names the stage)."""


@dataclasses.dataclass
class _Call:
    """One `func.call` of @main: the stage it runs, its operand and result values, its part."""

    callee: str
    operands: list[ir.Value]
    results: list[ir.Value]
    part: str


class SequentialExecutor:
    """`SequentialExecutor(module)(*args)` runs the outlined step; `devices[i]` is cluster device i.

    Args:
      module: the output of autopar-inter-op (not modified).
      devices: the cluster's devices in id order (default: jax.devices()).
      num_micro_batches: B; default the module's `autopar.inter_op.micro_batches`.
    """

    def __init__(
        self,
        module: ir.Module,
        devices: Sequence[Any] | None = None,
        *,
        num_micro_batches: int | None = None,
    ):
        self._devices = list(devices) if devices is not None else jax.devices()
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
        if len(args) != len(self._args):
            raise ExecutionError(f"@main takes {len(self._args)} arguments, got {len(args)}")
        B = self.num_micro_batches
        env: dict[ir.Value, Any] = dict(zip(self._args, args, strict=True))
        slices = self._micro_batches(args)
        sums: dict[ir.Value, Any] = {}
        for m in range(B):
            local = dict(env)
            for i in self._batch_args:
                local[self._args[i]] = slices[i][m]
            for call in self._calls:
                if call.part != "apply":
                    self._run(call, local)
            for v in self._accumulated:
                sums[v] = local[v] if m == 0 else sums[v] + local[v]
        for v, total in sums.items():
            env[v] = total / B if jnp.issubdtype(total.dtype, jnp.inexact) else local[v]
        for call in self._calls:
            if call.part == "apply":
                self._run(call, env)
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
            calls.append(_Call(callee, list(op.operands), list(op.results), part))
        raise ExecutionError("@main has no return")

    def _values_to_accumulate(self) -> list[ir.Value]:
        """Results of forward/backward parts read by an apply part or returned by @main."""
        produced = [v for c in self._calls if c.part != "apply" for v in c.results]
        read_once = {v for c in self._calls if c.part == "apply" for v in c.operands} | set(self._returns)
        return [v for v in produced if v in read_once]

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

    def _run(self, call: _Call, env: dict[ir.Value, Any]) -> None:
        stage = self._stages[call.callee]
        try:
            outputs = stage([env[v] for v in call.operands])
        except TypeError as err:
            raise ExecutionError(f"@{call.callee}: {err}") from None
        for value, out in zip(call.results, outputs, strict=True):
            env[value] = out

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
