"""Reading and writing Shardy shardings on `@main`: `sdy.mesh`, `sdy.sharding` <-> `PartitionSpec`.

The runtime needs, for every argument and result of `@main`, the `PartitionSpec` over the module's mesh:
arguments are placed with it before a call and results are assembled with it after. Unannotated arguments
and results are made explicitly replicated before compiling, because XLA would otherwise choose their
layout itself and the runtime could not know it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from jax.sharding import PartitionSpec
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import func, sdy

from autopar.errors import AutoparError
from autopar.ir.stages import find_function

SHARDING_ATTR = "sdy.sharding"
ALIASING_ATTR = "tf.aliasing_output"
DONOR_ATTR = "jax.buffer_donor"


class ShardingError(AutoparError, ValueError):
    """A module's shardings cannot be run: unknown mesh, unsupported sharding form, non-dividing axes."""


@dataclasses.dataclass(frozen=True)
class MeshSpec:
    """An `sdy.mesh`: its symbol, axes in order, and device ids (empty = row-major identity)."""

    name: str
    axis_names: tuple[str, ...]
    shape: tuple[int, ...]
    device_ids: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        size = 1
        for s in self.shape:
            size *= s
        return size


def main_func(module: ir.Module) -> func.FuncOp:
    main = find_function(module.operation)
    if main is not None:
        return main
    raise ShardingError("the module has no @main function: lower a function with jax.jit(...).lower(...)")


def module_meshes(module: ir.Module | ir.Operation) -> dict[str, MeshSpec]:
    meshes = {}
    for op in module.operation.regions[0].blocks[0].operations:
        if isinstance(op, sdy.MeshOp):
            name = ir.StringAttr(op.attributes["sym_name"]).value
            attr = sdy.MeshAttr(op.attributes["mesh"])
            axes = [sdy.MeshAxisAttr(a) for a in attr.axes]
            meshes[name] = MeshSpec(
                name, tuple(a.name for a in axes), tuple(a.size for a in axes), tuple(attr.device_ids)
            )
    return meshes


def strip_device_ids(module: ir.Module, mesh_name: str) -> None:
    """Removes `device_ids` from the mesh: the runtime orders the devices it hands XLA instead.

    Executing a module whose mesh carries a device permutation crashed jaxlib 0.10.2 (segfault in
    execute_sharded); handing XLA the devices already permuted gives the same placement.
    """
    for op in module.body.operations:
        if isinstance(op, sdy.MeshOp) and ir.StringAttr(op.attributes["sym_name"]).value == mesh_name:
            with module.context:
                axes = list(sdy.MeshAttr(op.attributes["mesh"]).axes)
                op.attributes["mesh"] = sdy.MeshAttr.get(axes, [])


def add_mesh(module: ir.Module, mesh: MeshSpec) -> None:
    """Inserts `sdy.mesh @name = <[...]>` at the start of the module (must be built in place: moving a
    freshly created MeshOp crashes jaxlib)."""
    with module.context, ir.Location.unknown(), ir.InsertionPoint.at_block_begin(module.body):
        axes = [sdy.MeshAxisAttr.get(n, s) for n, s in zip(mesh.axis_names, mesh.shape, strict=True)]
        sdy.MeshOp(mesh.name, sdy.MeshAttr.get(axes, list(mesh.device_ids)))


def sharding_to_spec(attr: ir.Attribute, ndim: int, what: str) -> tuple[str, PartitionSpec]:
    """`#sdy.sharding<@mesh, [{"x"}, {}]>` -> ("mesh", P("x", None)). `what` names the value in errors."""
    sharding = sdy.TensorShardingAttr(attr)
    mesh_ref = sharding.mesh_or_ref
    if not isinstance(mesh_ref, ir.FlatSymbolRefAttr):
        raise ShardingError(f"{what}: sharding {attr} does not name an sdy.mesh symbol; use @mesh references")
    if list(sharding.unreduced_axes):
        raise ShardingError(f"{what}: unreduced axes in {attr} are not supported by the runtime")
    dims = list(sharding.dimension_shardings)
    if len(dims) != ndim:
        raise ShardingError(f"{what}: sharding {attr} has {len(dims)} dimensions, the value has {ndim}")
    entries: list[str | tuple[str, ...] | None] = []
    for dim in dims:
        axes = []
        for axis in map(sdy.AxisRefAttr, sdy.DimensionShardingAttr(dim).axes):
            if axis.sub_axis_info is not None:
                raise ShardingError(f"{what}: sub-axis {axis} in {attr} has no PartitionSpec equivalent")
            axes.append(axis.name)
        entries.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
    while entries and entries[-1] is None:
        entries.pop()  # P('x', None) and P('x') are the same layout; keep specs canonical
    return mesh_ref.value, PartitionSpec(*entries)


def spec_to_sharding(spec: PartitionSpec, ndim: int, mesh_name: str) -> ir.Attribute:
    """PartitionSpec -> closed `#sdy.sharding` (call inside the module's context)."""
    if len(spec) > ndim:
        raise ShardingError(f"PartitionSpec {spec} has {len(spec)} entries for a rank-{ndim} value")
    dims = []
    for i in range(ndim):
        entry = spec[i] if i < len(spec) else None
        names = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        dims.append(sdy.DimensionShardingAttr.get([sdy.AxisRefAttr.get(n) for n in names], is_closed=True))
    return sdy.TensorShardingAttr.get(mesh_name, dims)


def _with_attr(attrs: ir.Attribute, key: str, value: ir.Attribute | None) -> ir.DictAttr:
    entries = {n.name: n.attr for n in ir.DictAttr(attrs)}
    if value is None:
        entries.pop(key, None)
    else:
        entries[key] = value
    return ir.DictAttr.get(entries)


def _rank(t: ir.Type) -> int:
    return ir.RankedTensorType(t).rank


def arg_attrs(main: func.FuncOp) -> list[ir.DictAttr]:
    n = len(main.type.inputs)
    return (
        [ir.DictAttr(a) for a in main.arg_attrs]
        if "arg_attrs" in main.attributes
        else [ir.DictAttr.get({}) for _ in range(n)]
    )


def result_attrs(main: func.FuncOp) -> list[ir.DictAttr]:
    n = len(main.type.results)
    return (
        [ir.DictAttr(a) for a in main.result_attrs]
        if "res_attrs" in main.attributes
        else [ir.DictAttr.get({}) for _ in range(n)]
    )


def set_arg_attr(main: func.FuncOp, index: int, key: str, value: ir.Attribute | None) -> None:
    attrs = arg_attrs(main)
    attrs[index] = _with_attr(attrs[index], key, value)
    main.arg_attrs = ir.ArrayAttr.get(attrs)


def set_result_attr(main: func.FuncOp, index: int, key: str, value: ir.Attribute | None) -> None:
    attrs = result_attrs(main)
    attrs[index] = _with_attr(attrs[index], key, value)
    main.result_attrs = ir.ArrayAttr.get(attrs)


def annotate_main(
    module: ir.Module,
    mesh: MeshSpec,
    arg_specs: Sequence[PartitionSpec | None],
    result_specs: Sequence[PartitionSpec | None],
) -> None:
    """Writes `mesh` and the given specs (None = leave as is) onto `@main`'s arguments and results."""
    if mesh.name not in module_meshes(module):
        add_mesh(module, mesh)
    main = main_func(module)
    with module.context, ir.Location.unknown():
        for i, (spec, t) in enumerate(zip(arg_specs, main.type.inputs, strict=True)):
            if spec is not None:
                set_arg_attr(main, i, SHARDING_ATTR, spec_to_sharding(spec, _rank(t), mesh.name))
        for i, (spec, t) in enumerate(zip(result_specs, main.type.results, strict=True)):
            if spec is not None:
                set_result_attr(main, i, SHARDING_ATTR, spec_to_sharding(spec, _rank(t), mesh.name))


def replicate_main(module: ir.Module, mesh_name: str, devices: int) -> None:
    """Every @main argument and result replicated over a one-axis mesh of `devices`."""
    main = main_func(module)
    annotate_main(
        module,
        MeshSpec(mesh_name, ("x",), (devices,)),
        [PartitionSpec()] * len(main.type.inputs),
        [PartitionSpec()] * len(main.type.results),
    )


@dataclasses.dataclass(frozen=True)
class MainShardings:
    """The layout of `@main`'s interface: one mesh, and a spec for every argument and result."""

    mesh: MeshSpec
    arg_specs: tuple[PartitionSpec, ...]
    result_specs: tuple[PartitionSpec, ...]


def close_main_shardings(module: ir.Module) -> MainShardings:
    """Reads every argument and result spec, making unannotated ones explicitly replicated."""
    meshes = module_meshes(module)
    main = main_func(module)
    used: set[str] = set()
    arg_specs, result_specs = [], []
    with module.context, ir.Location.unknown():
        for kind, attrs, types, specs in (
            ("argument", arg_attrs(main), list(main.type.inputs), arg_specs),
            ("result", result_attrs(main), list(main.type.results), result_specs),
        ):
            for i, (attrs_i, t) in enumerate(zip(attrs, types, strict=True)):
                if SHARDING_ATTR in attrs_i:
                    name, spec = sharding_to_spec(attrs_i[SHARDING_ATTR], _rank(t), f"@main {kind} {i}")
                    if name not in meshes:
                        raise ShardingError(f"@main {kind} {i}: sharding names @{name}, no such sdy.mesh")
                    used.add(name)
                    specs.append(spec)
                else:
                    specs.append(None)
        if len(used) > 1:
            raise ShardingError(
                f"@main uses several meshes {sorted(used)}: the runtime runs one mesh per module"
            )
        if not used and not meshes:
            raise ShardingError(
                "the module has no sdy.mesh: annotate it (autopar-intra-op does) before compiling"
            )
        mesh = meshes[used.pop()] if used else next(iter(meshes.values()))
        for i, t in enumerate(main.type.inputs):
            if arg_specs[i] is None:
                arg_specs[i] = PartitionSpec()
                set_arg_attr(main, i, SHARDING_ATTR, spec_to_sharding(arg_specs[i], _rank(t), mesh.name))
        for i, t in enumerate(main.type.results):
            if result_specs[i] is None:
                result_specs[i] = PartitionSpec()
                set_result_attr(
                    main, i, SHARDING_ATTR, spec_to_sharding(result_specs[i], _rank(t), mesh.name)
                )
    return MainShardings(mesh, tuple(arg_specs), tuple(result_specs))


def donation_to_buffer_donors(module: ir.Module) -> tuple[int, ...]:
    """Turns JAX's fixed `tf.aliasing_output` pairs into `jax.buffer_donor` marks; returns donated args.

    JAX pairs a donated argument with an output of the same shape before any plan exists; once the plan
    gives them different layouts their per-device buffers differ in size and XLA rejects the pair. A donor
    mark lets XLA alias the buffer with any output whose per-device buffer matches.
    """
    main = main_func(module)
    donated = []
    with module.context, ir.Location.unknown():
        for i, attrs in enumerate(arg_attrs(main)):
            if ALIASING_ATTR in attrs or DONOR_ATTR in attrs:
                donated.append(i)
                set_arg_attr(main, i, ALIASING_ATTR, None)
                set_arg_attr(main, i, DONOR_ATTR, ir.BoolAttr.get(True))
    return tuple(donated)
