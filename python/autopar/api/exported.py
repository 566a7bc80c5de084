"""Planned modules as `jax.export.Exported`: `autopar.export(f, *args)` and `autopar-opt --emit=exported`.

The Exported carries the planned module itself (its `sdy.mesh`, argument/result shardings and in-body
`sdy.sharding_constraint`s, serialized as JAX serializes its own: a VHLO portable artifact with Shardy
attributes) and the plan's argument and result layouts as NamedShardings over an abstract mesh of the
planned shape. `jax.export.deserialize(...).call(...)` then runs it on any concrete mesh of that shape,
as it runs what `jax.export.export(jax.jit(f, in_shardings=..., out_shardings=...))` wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.sharding import AbstractMesh, AxisType, NamedSharding
from jaxlib.mlir import ir

from autopar.errors import AutoparError
from autopar.ir import attrs as attrs_lib
from autopar.ir.host_callbacks import calls_back
from autopar.runtime import shardings as sh


class ExportError(AutoparError, ValueError):
    """A module or function cannot be written as a sharded jax.export.Exported."""


def check_reexportable(source: Any) -> None:
    """ExportError (one line, naming the cause) for an input jax.export.Exported that one re-exported
    single-platform module cannot stand for."""
    if len(source.platforms) > 1:
        raise ExportError(
            f"the input Exported is for {len(source.platforms)} platforms ({', '.join(source.platforms)}) "
            "and its module picks one when called: export it for one platform "
            "(jax.export.export(fn, platforms=['cuda'])), or emit text or bytecode"
        )
    if source.ordered_effects:
        effects = ", ".join(map(str, source.ordered_effects))
        raise ExportError(
            f"the input Exported has ordered effects ({effects}), which a re-export does not keep in "
            "order: remove them, or emit text or bytecode"
        )
    if source.uses_global_constants:  # dimension variables: symbolic shapes
        raise ExportError(
            "the input Exported is shape-polymorphic: export it with static shapes, or emit text or bytecode"
        )


def check_exportable(module: ir.Module) -> sh.MainShardings:
    """The single mesh and @main layouts of a planned module; ExportError (one line) saying what is missing
    or what form cannot be exported. Unannotated arguments/results read as replicated; `module` is not
    modified."""
    from autopar.runtime.executable import clone

    attrs = module.operation.attributes
    stages = sorted({_stage_of(op) for op in module.body.operations} - {None})
    if attrs_lib.INTER_OP_PLAN in attrs or stages:
        count = f"{len(stages)} stages" if stages else "several stages"
        raise ExportError(
            f"the module is a pipeshard plan ({count} on their own submeshes): one jax.export.Exported "
            "runs on one mesh; export a ShardParallel plan (autopar-intra-op) instead"
        )
    if calls_back(module.operation):  # the Exported would name a Python function nobody registers
        raise ExportError(
            "the module calls back into Python (a jax.debug.print or other host callback), which a "
            "serialized Exported cannot carry, and calling it would crash: remove the callbacks to export"
        )
    meshes = [m for m in sh.module_meshes(module).values() if m.axis_names]
    if not meshes:
        raise ExportError(
            "the module has no sdy.mesh: only planned modules can be exported; run autopar-intra-op first"
        )
    if len(meshes) > 1:
        names = ", ".join(f"@{m.name}" for m in meshes)
        raise ExportError(
            f"the module has {len(meshes)} device meshes ({names}): an Exported runs on one mesh"
        )
    try:
        return sh.close_main_shardings(clone(module))
    except sh.ShardingError as err:
        raise ExportError(f"cannot export: {err}") from None


def _stage_of(op: ir.Operation) -> int | None:
    return attrs_lib.get_stage(op)


def module_to_exported(
    module: ir.Module,
    *,
    fun_name: str = "main",
    in_tree: Any = None,
    out_tree: Any = None,
    in_avals: Sequence[Any] | None = None,
    out_avals: Sequence[Any] | None = None,
    platforms: Sequence[str] | None = None,
    kept_var_idx: Sequence[int] | None = None,
) -> jax.export.Exported:
    """A planned single-mesh module as a `jax.export.Exported`. `module` is not modified.

    `kept_var_idx`: which of `in_avals` @main takes (jax.export drops unused arguments from the module and
    records the ones kept); default all.

    Without trees and avals, @main's flat signature is used (`exp.call(*arrays)`, a tuple of results);
    `platforms` defaults to `default_platforms()`.
    """
    from jax._src import core
    from jax._src.export import _export

    from autopar.runtime.executable import _avals, clone

    layout = check_exportable(module)
    module = clone(module)
    sh.close_main_shardings(module)
    mesh_spec = layout.mesh
    # The caller's concrete mesh decides the devices: a device order the plan chose is not part of the
    # exported layout (JAX's own exports carry none either).
    sh.strip_device_ids(module, mesh_spec.name)
    main = sh.main_func(module)
    if not all(isinstance(t, ir.RankedTensorType) for t in [*main.type.inputs, *main.type.results]):
        raise ExportError("@main has non-tensor arguments or results (tokens?): only pure functions export")
    with module.context:
        attrs = module.operation.attributes
        attrs_lib.clear_all(module.operation)  # planning figures, not part of the program
        i32 = ir.IntegerType.get_signless(32)
        attrs["mhlo.num_partitions"] = ir.IntegerAttr.get(i32, mesh_spec.size)
        attrs["mhlo.num_replicas"] = ir.IntegerAttr.get(i32, 1)
        attrs["jax.uses_shape_polymorphism"] = ir.BoolAttr.get(False)
    flat_in = [core.ShapedArray(a.shape, a.dtype) for a in _avals(main.type.inputs)]
    flat_out = [core.ShapedArray(a.shape, a.dtype) for a in _avals(main.type.results)]
    in_avals = tuple(flat_in if in_avals is None else in_avals)
    out_avals = tuple(flat_out if out_avals is None else out_avals)
    kept = tuple(range(len(in_avals)) if kept_var_idx is None else sorted(kept_var_idx))
    if any(not 0 <= i < len(in_avals) for i in kept):
        raise ExportError(f"kept_var_idx {kept} names arguments beyond the {len(in_avals)} given")
    kept_avals = tuple(in_avals[i] for i in kept)
    for kind, given, flat in (("argument", kept_avals, flat_in), ("result", out_avals, flat_out)):
        if len(given) != len(flat):
            raise ExportError(f"@main has {len(flat)} {kind}s but {len(given)} {kind} avals were given")
        for i, (a, b) in enumerate(zip(given, flat, strict=True)):
            physical = core.physical_aval(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.extended) else a
            if tuple(physical.shape) != tuple(b.shape) or physical.dtype != b.dtype:
                raise ExportError(f"@main {kind} {i} is {b.str_short()}, the function's is {a.str_short()}")
    if in_tree is None:
        in_tree = jax.tree.structure((tuple(range(len(in_avals))), {}))
    if out_tree is None:
        out_tree = jax.tree.structure(tuple(range(len(out_avals))))
    abstract_mesh = AbstractMesh(
        tuple(mesh_spec.shape),
        tuple(mesh_spec.axis_names),
        axis_types=(AxisType.Auto,) * len(mesh_spec.shape),
    )
    by_position = dict(zip(kept, layout.arg_specs, strict=True))
    # An argument the module does not take has no sharding (None: unspecified, as jax.export writes it).
    in_shardings = tuple(
        NamedSharding(abstract_mesh, by_position[i]) if i in by_position else None
        for i in range(len(in_avals))
    )
    out_shardings = tuple(NamedSharding(abstract_mesh, s) for s in layout.result_specs)
    return _export.Exported(
        fun_name=fun_name,
        in_tree=in_tree,
        in_avals=in_avals,
        out_tree=out_tree,
        out_avals=out_avals,
        _has_named_shardings=True,
        _in_named_shardings=in_shardings,
        _out_named_shardings=out_shardings,
        in_shardings_hlo=(None,) * len(in_shardings),
        out_shardings_hlo=(None,) * len(out_shardings),
        nr_devices=mesh_spec.size,
        platforms=tuple(platforms) if platforms else default_platforms(),
        ordered_effects=(),
        unordered_effects=(),
        disabled_safety_checks=(),
        mlir_module_serialized=_serialize(module),
        calling_convention_version=jax.config.jax_export_calling_convention_version,
        module_kept_var_idx=kept,
        uses_global_constants=False,
        _get_vjp=None,
    )


def default_platforms() -> tuple[str, ...]:
    """The platform an Exported is for when none is given: the first of `JAX_PLATFORMS` when set (which
    starts no backend), else JAX's default backend."""
    import os

    named = [p.strip() for p in os.environ.get("JAX_PLATFORMS", "").split(",") if p.strip()]
    return (named[0],) if named else (jax.default_backend(),)


def _serialize(module: ir.Module) -> bytes:
    """As jax.export serializes: a VHLO portable artifact 4 weeks back, Shardy attributes kept."""
    from jaxlib import _jax
    from jaxlib.mlir.dialects import stablehlo

    target = stablehlo.get_version_from_compatibility_requirement(
        stablehlo.StablehloCompatibilityRequirement.WEEK_4
    )
    text = module.operation.get_asm(enable_debug_info=True)
    return bytes(_jax.mlir.serialize_portable_artifact(text, target, True))


def export(
    fn: Callable[..., Any],
    *args: Any,
    method: Any = None,
    mesh: Any = None,
    static_argnums: int | Sequence[int] = (),
    batch_argnums: int | Sequence[int] | None = None,
    platforms: Sequence[str] | None = None,
) -> jax.export.Exported:
    """Plans `fn` for `args` (arrays or jax.ShapeDtypeStruct) and returns the plan as a jax.export.Exported.

    `method` is `parallelize`'s (default ShardParallel); `mesh` is the mesh to plan for: a
    `jax.sharding.Mesh` or `AbstractMesh` (its shape and axis names), a shape such as `(2, 4)` or `8`, or
    None for the method's mesh over all local devices. Planning needs no devices: a mesh larger than this
    process's device count can be exported. `exp.serialize()` gives the bytes, `jax.export.deserialize`
    reads them back, and `exp.call(*args)` runs the plan on a mesh of the same shape and axis names.
    """
    from autopar.api import arguments, pipeshard
    from autopar.api.methods import ShardParallel
    from autopar.api.parallelize import ParallelizedFunction

    method = ShardParallel() if method is None else method
    if isinstance(platforms, str):  # one platform, not its letters (jax.export would take "cpu" as c, p, u)
        platforms = (platforms,)
    if platforms is not None and not all(isinstance(p, str) and p for p in platforms):
        raise TypeError(f"platforms must be platform names such as ('cpu', 'cuda'), got {platforms!r}")
    if isinstance(method, pipeshard.PipeshardParallel):
        raise ExportError(
            "PipeshardParallel plans run stages on separate submeshes, which one jax.export.Exported cannot "
            "express: export with ShardParallel (or DataParallel, Zero2Parallel, Zero3Parallel)"
        )
    if not isinstance(method, ShardParallel):
        raise TypeError(f"method must be a ShardParallel (or subclass), got {type(method).__name__}")
    method = _with_mesh(method, mesh)
    shape, _ = method.mesh_for(len(jax.local_devices()))
    size = 1
    for s in shape:
        size *= s
    devices = jax.local_devices()
    # Planning only counts devices; a plan for more devices than this process has is still exportable.
    planning_devices = devices[:size] if len(devices) >= size else [_Placeholder(i) for i in range(size)]
    function = ParallelizedFunction(
        fn,
        method=method,
        devices=planning_devices,
        static_argnums=static_argnums,
        static_argnames=(),  # an export takes positional arguments only
        donate_argnums=(),
        batch_argnums=batch_argnums,
    )
    # As jax.export(jax.jit(fn)): NNX modules the step updates in place are not added to its outputs.
    function.carry_modules = False
    try:
        entry = function._entry(args, {})
    except AutoparError as err:
        raise err.with_traceback(None) from None
    if entry.host_callbacks:
        raise ExportError(
            f"{function.__name__} calls back into Python (jax.debug.print, jax.pure_callback, ...): a "
            "serialized Exported cannot carry host callbacks; remove them to export"
        )
    dynamic, _ = function._split(args)
    dyn_args = tuple(args[i] for i in dynamic)
    abstract = jax.tree.map(arguments.abstract, dyn_args)
    in_avals = [
        jax.core.ShapedArray(a.shape, a.dtype, weak_type=bool(a.weak_type)) for a in jax.tree.leaves(abstract)
    ]
    closed = function._abstract(args)
    out_info = jax.eval_shape(
        lambda *dyn: fn(*_merge(closed, dynamic, dyn)),
        *abstract,
    )
    out_avals = [
        jax.core.ShapedArray(o.shape, o.dtype, weak_type=bool(o.weak_type)) for o in jax.tree.leaves(out_info)
    ]
    return module_to_exported(
        entry.module,
        fun_name=getattr(fn, "__name__", "fun"),
        in_tree=entry.in_tree,
        out_tree=entry.out_tree,
        in_avals=in_avals,
        out_avals=out_avals,
        platforms=platforms,
    )


def _merge(all_args: tuple[Any, ...], dynamic: list[int], dyn: tuple[Any, ...]) -> list[Any]:
    merged = list(all_args)
    for i, value in zip(dynamic, dyn, strict=True):
        merged[i] = value
    return merged


class _Placeholder:
    """Stands for a device while planning: planning reads how many there are, nothing else."""

    def __init__(self, index: int):
        self.id = index
        self.platform = jax.default_backend()


def _with_mesh(method: Any, mesh: Any) -> Any:
    """`method` planning for `mesh` (None = as it is)."""
    import dataclasses

    if mesh is None:
        return method
    if isinstance(mesh, int):
        shape, names = (mesh,), None
    elif isinstance(mesh, tuple | list):
        shape, names = tuple(mesh), None
    elif hasattr(mesh, "axis_names") and hasattr(mesh, "axis_sizes"):
        shape, names = tuple(mesh.axis_sizes), tuple(mesh.axis_names)
    elif hasattr(mesh, "axis_names") and hasattr(mesh, "devices"):
        shape, names = tuple(mesh.devices.shape), tuple(mesh.axis_names)
    else:
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh, an AbstractMesh or a shape like (2, 4), got {mesh!r}"
        )
    if method.mesh_shape is not None and tuple(method.mesh_shape) != shape:
        raise ValueError(
            f"mesh {shape} and the method's mesh_shape {tuple(method.mesh_shape)} disagree: give one"
        )
    updates: dict[str, Any] = {"mesh_shape": shape}
    if names is not None:
        updates["axis_names"] = names
    return dataclasses.replace(method, **updates)
