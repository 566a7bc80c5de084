"""Compiling an annotated StableHLO module with XLA for a mesh of devices, and running it on jax.Arrays.

The module's `sdy.mesh` and the `sdy.sharding`s on `@main` decide everything: the runtime lays the mesh
over the devices (partition i runs on `devices[i]`), compiles with Shardy as XLA's partitioner, places
each argument with its NamedSharding and assembles each result with its own.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from collections.abc import Sequence
from typing import Any

import jax
import jax.extend as jex
import numpy as np
from jax._src import dispatch  # JAX's runtime tokens (jax is pinned): see ShardedExecutable.__call__
from jax.sharding import Mesh, NamedSharding
from jaxlib.mlir import ir

from autopar.ir.host_callbacks import calls_back
from autopar.ir.io import parse_bytes
from autopar.runtime import shardings as sh
from autopar.runtime.fast_calls import CallingConvention
from autopar.runtime.mesh import format_shape, make_mesh

# MLIR element type spellings that differ from numpy/ml_dtypes names.
_ELEMENT_TYPES = {
    "i1": "bool",
    "bf16": "bfloat16",
    "f16": "float16",
    "f32": "float32",
    "f64": "float64",
    "complex<f32>": "complex64",
    "complex<f64>": "complex128",
}


def element_dtype(element_type: ir.Type) -> np.dtype:
    text = str(element_type)
    if text in _ELEMENT_TYPES:
        return np.dtype(jax.numpy.dtype(_ELEMENT_TYPES[text]))
    for prefix, kind in (("ui", "uint"), ("si", "int"), ("i", "int")):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            return np.dtype(f"{kind}{text[len(prefix) :]}")
    if text.startswith("f8") or text.startswith("f4") or text.startswith("f6"):
        return np.dtype(jax.numpy.dtype("float" + text[1:].lower().replace("e", "_e", 1)))
    raise sh.ShardingError(f"element type {text} has no numpy dtype the runtime knows")


def _avals(types: Sequence[ir.Type]) -> tuple[jax.ShapeDtypeStruct, ...]:
    out = []
    for t in types:
        ranked = ir.RankedTensorType(t)
        out.append(jax.ShapeDtypeStruct(tuple(ranked.shape), element_dtype(ranked.element_type)))
    return tuple(out)


def clone(module: ir.Module) -> ir.Module:
    buffer = io.BytesIO()
    module.operation.write_bytecode(buffer)
    return parse_bytes(buffer.getvalue(), source_name="<module copy>")


def _check_divisible(
    avals: Sequence[jax.ShapeDtypeStruct], specs: Sequence[Any], mesh: Mesh, kind: str
) -> None:
    for i, (aval, spec) in enumerate(zip(avals, specs, strict=True)):
        for dim, entry in enumerate(spec):
            names = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
            ways = int(np.prod([mesh.shape[n] for n in names])) if names else 1
            if aval.shape[dim] % ways:
                raise sh.ShardingError(
                    f"@main {kind} {i}: dimension {dim} of size {aval.shape[dim]} is split {ways} ways by "
                    f"{spec}, which does not divide it"
                )


@dataclasses.dataclass(frozen=True)
class ShardedExecutable:
    """A module compiled for one mesh. Call it with one array per `@main` argument.

    Attributes:
      mesh: the device mesh the module runs on.
      devices: the devices in XLA partition order (partition i runs on devices[i]).
      in_shardings, out_shardings: the NamedSharding of every argument and result of `@main`.
      in_avals, out_avals: their shapes and dtypes.
      donated: indices of arguments whose buffers the call may consume.
      module: the module exactly as compiled (every argument and result annotated).
      loaded: XLA's loaded executable.
      host_callbacks: whether it calls back into Python (`jax.debug.print`, ...).
    """

    mesh: Mesh
    devices: tuple[jax.Device, ...]
    in_shardings: tuple[NamedSharding, ...]
    out_shardings: tuple[NamedSharding, ...]
    in_avals: tuple[jax.ShapeDtypeStruct, ...]
    out_avals: tuple[jax.ShapeDtypeStruct, ...]
    donated: tuple[int, ...]
    module: ir.Module
    loaded: Any
    host_callbacks: bool = False

    def __call__(self, args: Sequence[Any]) -> list[jax.Array]:
        placed = self.place_arguments(args)
        if not self.host_callbacks:
            results = self.loaded.execute_sharded(placed)
        else:
            # As jax.jit's own dispatch does: the run's token goes where `jax.effects_barrier()` and JAX's
            # exit handler wait for it. Without it a step whose outputs nobody waited for could still be
            # calling back at exit, and the process aborted ("terminate called without an active
            # exception") with the callback's output lost.
            results = self.loaded.execute_sharded(placed, with_tokens=True)
            token = results.consume_token()
            for i, device in enumerate(self.devices):
                dispatch.runtime_tokens.set_output_runtime_token(device, token.get_token(i))
        return self._convention.assemble(results.disassemble_into_single_device_arrays())

    @functools.cached_property
    def _convention(self) -> CallingConvention:
        return CallingConvention(
            self.devices, self.in_avals, self.in_shardings, self.out_avals, self.out_shardings
        )

    def place_arguments(self, args: Sequence[Any]) -> list[jax.Array]:
        """Each argument as a jax.Array with its planned sharding (no copy when it already has it)."""
        if len(args) != len(self.in_avals):
            raise TypeError(f"the executable takes {len(self.in_avals)} arrays, got {len(args)}")
        placed = []
        for i, (arg, aval, sharding) in enumerate(zip(args, self.in_avals, self.in_shardings, strict=True)):
            if isinstance(arg, jax.Array) and arg.sharding == sharding and arg.aval.shape == aval.shape:
                if arg.dtype == aval.dtype:  # already where and as planned (a pipeline's own values)
                    placed.append(arg)
                    continue
            array = self._convention.place_host(i, arg)
            if array is not None:  # a host array of the planned shape and dtype
                placed.append(array)
                continue
            shape, dtype = np.shape(arg), getattr(arg, "dtype", None)
            if tuple(shape) != aval.shape:
                raise TypeError(f"argument {i}: expected shape {aval.shape}, got {tuple(shape)}")
            array = jax.device_put(_host_side(arg, sharding), sharding)
            if array.dtype != aval.dtype:
                raise TypeError(f"argument {i}: expected dtype {aval.dtype}, got {dtype or array.dtype}")
            placed.append(array)
        return placed

    def as_text(self) -> str:
        """XLA's compiled (partitioned, optimised) HLO."""
        return self.loaded.hlo_modules()[0].to_string()

    def cost_analysis(self) -> dict[str, float]:
        return dict(self.loaded.cost_analysis())

    def memory_analysis(self) -> Any:
        return self.loaded.get_compiled_memory_stats()


def _host_side(arg: Any, sharding: NamedSharding) -> Any:
    """A CPU array on one device is split on the host: jax.device_put would compile a slicing program for
    every new shape and layout (85 ms each, most of a first call), where the host copy is a memcpy."""
    if (
        isinstance(arg, jax.Array)
        and len(arg.sharding.device_set) == 1
        and arg.sharding != sharding
        and next(iter(arg.sharding.device_set)).platform == "cpu"
        and not jax.dtypes.issubdtype(arg.dtype, jax.dtypes.extended)
    ):
        return np.asarray(arg)
    return arg


def compile(
    module: ir.Module, devices: Sequence[jax.Device] | None = None, host_callbacks: Sequence[Any] = ()
) -> ShardedExecutable:
    """Compiles an annotated module for `devices` (default: all local devices). `module` is not modified.
    `host_callbacks` are the Python callbacks the module's custom calls refer to by index (what JAX's
    lowering registered for `jax.debug.print` and other host callbacks); they must be given when it has any.

    Raises ValueError when the module's mesh does not have one position per device, ShardingError when a
    sharding cannot be run.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    module = clone(module)
    layout = sh.close_main_shardings(module)
    mesh_spec = layout.mesh
    if mesh_spec.size != len(devices):
        raise ValueError(
            f"the module's mesh @{mesh_spec.name} has shape {format_shape(mesh_spec.shape)} "
            f"({mesh_spec.size} devices) but {len(devices)} devices were given"
        )
    if mesh_spec.device_ids:
        # Partition i runs on devices[i]: permuting the devices realises the mesh's device order.
        devices = [devices[i] for i in mesh_spec.device_ids]
        sh.strip_device_ids(module, mesh_spec.name)
    mesh = make_mesh(devices, mesh_spec.shape, mesh_spec.axis_names)
    main = sh.main_func(module)
    in_avals, out_avals = _avals(main.type.inputs), _avals(main.type.results)
    _check_divisible(in_avals, layout.arg_specs, mesh, "argument")
    _check_divisible(out_avals, layout.result_specs, mesh, "result")
    donated = sh.donation_to_buffer_donors(module)
    with module.context:
        module.operation.attributes["mhlo.num_partitions"] = ir.IntegerAttr.get(
            ir.IntegerType.get_signless(32), len(devices)
        )
        module.operation.attributes["mhlo.num_replicas"] = ir.IntegerAttr.get(
            ir.IntegerType.get_signless(32), 1
        )
    loaded = _xla_compile(module, devices, host_callbacks)
    return ShardedExecutable(
        mesh=mesh,
        devices=tuple(devices),
        in_shardings=tuple(NamedSharding(mesh, s) for s in layout.arg_specs),
        out_shardings=tuple(NamedSharding(mesh, s) for s in layout.result_specs),
        in_avals=in_avals,
        out_avals=out_avals,
        donated=donated,
        module=module,
        loaded=loaded,
        host_callbacks=bool(host_callbacks),
    )


def _xla_compile(module: ir.Module, devices: Sequence[jax.Device], host_callbacks: Sequence[Any] = ()) -> Any:
    n = len(devices)
    options = jex.backend.get_compile_options(
        num_replicas=1, num_partitions=n, device_assignment=np.array([d.id for d in devices]).reshape(1, n)
    )
    buffer = io.BytesIO()
    module.operation.write_bytecode(buffer)
    backend = jex.backend.get_backend(devices[0].platform)
    if not host_callbacks and calls_back(module.operation):
        # Without its callbacks such a module crashes the process when the callback runs.
        raise ValueError(
            "the module calls back into Python (a jax.debug.print or other host callback): compile it with "
            "the callbacks JAX's lowering registered (host_callbacks=...), in the process that lowered it"
        )
    if host_callbacks:
        # Only this overload registers callbacks; a callback custom call without them crashes the process
        # when it runs (jaxlib 0.10.2).
        from jaxlib import _jax

        return backend.compile_and_load(
            module, _jax.DeviceList(tuple(devices)), options, list(host_callbacks)
        )
    return backend.compile_and_load(buffer.getvalue(), devices, options)
