"""The sequential stage executor: runs a module outlined by `autopar-inter-op` stage by stage.

Every stage function (`@stage_k_forward`, `@stage_k_backward`, `@stage_k_apply`) is cloned into its own
module as `@main`, compiled by XLA for the devices of its `autopar.mesh`, and run when `@main` calls it;
values move between submeshes with `jax.device_put`. No pipelining: the whole batch goes through each
stage once, which is what makes the result directly comparable with the unsharded step. Stages without
shardings run replicated over their submesh (the intra-op pass adds shardings per stage).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.extend.backend
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxlib.mlir import ir

from autopar.errors import AutoparError


class ExecutionError(AutoparError):
    """A stage module could not be compiled or run (names the stage)."""


@dataclasses.dataclass
class CompiledStage:
    name: str
    devices: list[Any]
    executable: Any
    sharding: NamedSharding
    num_outputs: int


class SequentialExecutor:
    """`SequentialExecutor(module)(*args)` runs the outlined step; `devices[i]` is cluster device i."""

    def __init__(self, module: ir.Module, devices: Sequence[Any] | None = None):
        self._devices = list(devices) if devices is not None else jax.devices()
        self._main, funcs = _split(module)
        self._stages = {name: self._compile(name, fn) for name, fn in funcs.items()}

    @property
    def stage_names(self) -> list[str]:
        return list(self._stages)

    def __call__(self, *args: Any) -> list[jax.Array]:
        block = self._main.regions[0].blocks[0]
        if len(args) != len(block.arguments):
            raise ExecutionError(f"@main takes {len(block.arguments)} arguments, got {len(args)}")
        env: dict[ir.Value, Any] = dict(zip(block.arguments, args, strict=True))
        for op in block.operations:
            op = op.operation
            if op.name == "func.return":
                return [env[v] for v in op.operands]
            if op.name != "func.call":
                raise ExecutionError(f"@main must only call stages, found {op.name}")
            stage = self._stages[ir.FlatSymbolRefAttr(op.attributes["callee"]).value]
            inputs = [jax.device_put(env[v], stage.sharding) for v in op.operands]
            for value, out in zip(op.results, _run(stage, inputs), strict=True):
                env[value] = out
        raise ExecutionError("@main has no return")

    def _compile(self, name: str, fn: ir.Operation) -> CompiledStage:
        mesh = ir.DictAttr(fn.attributes["autopar.mesh"])
        ids = list(ir.DenseI64ArrayAttr(mesh["device_ids"]))
        if max(ids) >= len(self._devices):
            raise ExecutionError(
                f"@{name} runs on device {max(ids)} but only {len(self._devices)} devices are available"
            )
        devices = [self._devices[i] for i in ids]
        text = _stage_module_text(fn, len(devices))
        options = jax.extend.backend.get_compile_options(
            num_replicas=1,
            num_partitions=len(devices),
            device_assignment=np.array([d.id for d in devices]).reshape(1, len(devices)),
        )
        backend = jax.extend.backend.get_backend()
        try:
            executable = backend.compile_and_load(text, devices, options)
        except Exception as err:  # XLA raises XlaRuntimeError with a multi-line message
            raise ExecutionError(f"XLA could not compile @{name}: {str(err).splitlines()[0]}") from None
        sharding = NamedSharding(Mesh(np.array(devices), ("stage",)), PartitionSpec())
        num_outputs = len(
            fn.regions[0].blocks[0].operations[len(fn.regions[0].blocks[0].operations) - 1].operands
        )
        return CompiledStage(name, devices, executable, sharding, num_outputs)


def _split(module: ir.Module) -> tuple[ir.Operation, dict[str, ir.Operation]]:
    main, stages = None, {}
    for op in module.body.operations:
        if op.operation.name != "func.func":
            continue
        name = ir.StringAttr(op.attributes["sym_name"]).value
        if name == "main":
            main = op.operation
        elif "autopar.mesh" in op.attributes:
            stages[name] = op.operation
    if main is None or not stages:
        raise ExecutionError("the module has no @main calling stage functions: run autopar-inter-op first")
    return main, stages


def _stage_module_text(fn: ir.Operation, num_devices: int) -> str:
    with fn.context, ir.Location.unknown():
        module = ir.Module.create()
        i32 = ir.IntegerType.get_signless(32)
        module.operation.attributes["mhlo.num_partitions"] = ir.IntegerAttr.get(i32, num_devices)
        module.operation.attributes["mhlo.num_replicas"] = ir.IntegerAttr.get(i32, 1)
        with ir.InsertionPoint(module.body):
            clone = fn.clone()
        clone.attributes["sym_name"] = ir.StringAttr.get("main")
        clone.attributes["sym_visibility"] = ir.StringAttr.get("public")
        return module.operation.get_asm(enable_debug_info=False)


def _run(stage: CompiledStage, inputs: list[jax.Array]) -> list[jax.Array]:
    results = stage.executable.execute_sharded(inputs)
    per_output = results.disassemble_into_single_device_arrays()
    return [
        jax.make_array_from_single_device_arrays(shards[0].shape, stage.sharding, shards)
        for shards in per_output
    ]
