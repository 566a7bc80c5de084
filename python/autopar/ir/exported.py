"""Reading a serialized `jax.export.Exported` for re-planning: its module, and its shardings dropped or kept.

An Exported written by `jax.export.export(jax.jit(f, in_shardings=...))` (or by autopar) carries a plan
already: `sdy.mesh`, `sdy.sharding` on @main, `sdy.sharding_constraint`s in the body, and the
`mhlo.num_partitions` it was lowered for. Re-planning starts from the unannotated program, so by default
those are dropped (`INPUT_SHARDINGS = drop`); `keep` leaves the module exactly as stored, which is what
inspecting or converting it wants, and which autopar's planners refuse (they plan unannotated modules).
"""

from __future__ import annotations

import re
from typing import Any

from jaxlib.mlir import ir

from autopar.errors import PipelineError
from autopar.ir import host_callbacks, io
from autopar.ir.context import context

INPUT_SHARDINGS = ("drop", "keep")
_SHARDING_ATTRS = ("sdy.sharding", "mhlo.sharding")


def is_exported(data: bytes) -> bool:
    """Whether `data` is (probably) a serialized Exported rather than MLIR text or bytecode."""
    return io._looks_like_exported(data)


def read(data: bytes, source_name: str, input_shardings: str = "drop") -> tuple[ir.Module, Any]:
    """(module, the Exported or None): a serialized Exported's module, with its shardings dropped or kept;
    any other input parsed as `io.parse_bytes` does (and returned as is)."""
    if input_shardings not in INPUT_SHARDINGS:
        raise ValueError(f"input_shardings must be one of {INPUT_SHARDINGS}, got {input_shardings!r}")
    if not is_exported(data):
        return io.parse_bytes(data, source_name=source_name), None
    try:
        from jax import export

        exported = export.deserialize(bytearray(data))
    except Exception:  # flatbuffers raises assorted errors on garbage
        return io.parse_bytes(data, source_name=source_name), None  # its own one-line error
    module = io.parse_bytes(bytes(exported.mlir_module_serialized), source_name=source_name)
    if input_shardings == "drop":
        drop_shardings(module)
    return module, exported


def has_shardings(module: ir.Module) -> bool:
    """Whether the module names a device mesh with axes (a sharded module, not an unannotated one)."""
    return bool(axis_meshes(module))


def axis_meshes(module: ir.Module) -> set[str]:
    """The names of the module's `sdy.mesh` symbols that have axes."""
    from jaxlib.mlir.dialects import sdy

    names = set()
    for op in module.body.operations:
        if op.operation.name == "sdy.mesh" and list(sdy.MeshAttr(op.attributes["mesh"]).axes):
            names.add(ir.StringAttr(op.attributes["sym_name"]).value)
    return names


def drop_shardings(module: ir.Module) -> None:
    """Removes every layout decision: argument/result and op shardings, sharding constraints (Shardy's and
    GSPMD's `@Sharding` custom calls), the partition count, and meshes nothing names any more. Manual
    computations (`shard_map`) are program structure, not layout: they and their meshes stay. So do the
    shardings that place a side effect on one device (`jax.debug.print`'s callback on a maximal mesh):
    without one, XLA's partitioner stops on its RET_CHECK "Side-effect HLO must have sharding"."""
    maximal = host_callbacks.mesh_names(host_callbacks.maximal_meshes(module.operation))
    with context(), ir.Location.unknown():
        attrs = module.operation.attributes
        for name in ("mhlo.num_partitions", "mhlo.num_replicas"):
            if name in attrs:
                del attrs[name]
        doomed: list[ir.Operation] = []

        def visit(op: ir.Operation) -> ir.WalkResult:
            name = op.name
            if name == "func.func":
                _drop_func_shardings(op)
            elif is_layout_constraint(op):
                doomed.append(op)
            elif name != "sdy.manual_computation":
                for key in _SHARDING_ATTRS:
                    if key in op.attributes and not host_callbacks.places_on_one_device(
                        op.attributes[key], maximal
                    ):
                        del op.attributes[key]
            return ir.WalkResult.ADVANCE

        module.operation.walk(visit, walk_order=ir.WalkOrder.PRE_ORDER)
        for op in doomed:
            op.results[0].replace_all_uses_with(op.operands[0])
        for op in reversed(doomed):  # every use is rewired before anything is erased
            op.erase()
        text = module.operation.get_asm()
        for op in list(module.body.operations):
            if op.operation.name == "sdy.mesh":
                name = ir.StringAttr(op.attributes["sym_name"]).value
                if (
                    len(re.findall(rf"@{re.escape(name)}(?![\w$.])", text)) <= 1
                ):  # only its own definition names it
                    op.operation.erase()
    io._verify(module, "<exported module>")


def is_layout_constraint(op: ir.Operation) -> bool:
    """A sharding constraint in a body: Shardy's (`sdy.sharding_constraint`, `sdy.reshard`) or GSPMD's
    `@Sharding` custom call. Each returns its operand's value in a layout of its own mesh."""
    name = op.name
    return name in ("sdy.sharding_constraint", "sdy.reshard") or (
        name == "stablehlo.custom_call"
        and ir.StringAttr(op.attributes["call_target_name"]).value == "Sharding"
    )


def _drop_func_shardings(func_op: ir.Operation) -> None:
    for key in ("arg_attrs", "res_attrs"):
        if key not in func_op.attributes:
            continue
        entries = []
        for attrs in ir.ArrayAttr(func_op.attributes[key]):
            kept = {n.name: n.attr for n in ir.DictAttr(attrs) if n.name not in _SHARDING_ATTRS}
            entries.append(ir.DictAttr.get(kept))
        func_op.attributes[key] = ir.ArrayAttr.get(entries)


# Planners that honour autopar.input_sharding; the stage planners re-plan stages from scratch.
_KEEPING_PLANNERS = ("autopar-intra-op", "autopar-shard")
_OTHER_PLANNERS = ("autopar-inter-op", "autopar-shard-stages", "autopar-pipeshard")


def prepare_kept_shardings(module: ir.Module, pass_names: list[str]) -> None:
    """`keep` before a planning pass: each @main argument's sharding becomes a layout the planner must keep
    (`autopar.input_sharding`), and every other layout decision goes, so the planner plans around the
    inputs as given. The stage planners cannot (they choose stages and meshes anew): one line says so."""
    others = [n for n in pass_names if n in _OTHER_PLANNERS]
    if others and has_shardings(module):
        raise PipelineError(
            f"--input-shardings=keep: {others[0]} cannot plan around the input Exported's shardings (it "
            "chooses stages and their meshes anew); use --input-shardings=drop, or autopar-shard / "
            "autopar-intra-op, which keep them"
        )
    if not any(n in _KEEPING_PLANNERS for n in pass_names) or not has_shardings(module):
        return
    from jaxlib.mlir.dialects import sdy

    from autopar.ir import attrs
    from autopar.runtime import shardings as sh

    meshes = sh.module_meshes(module)
    main = sh.main_func(module)
    with context():
        for i, arg_attrs in enumerate(sh.arg_attrs(main)):
            if "sdy.sharding" not in arg_attrs:
                continue
            sharding = sdy.TensorShardingAttr(arg_attrs["sdy.sharding"])
            mesh = meshes[sharding.mesh_or_ref.value]
            dims = []
            for dim in sharding.dimension_shardings:
                axes = [sdy.AxisRefAttr(a) for a in sdy.DimensionShardingAttr(dim).axes]
                if any(a.sub_axis_info is not None for a in axes):
                    raise PipelineError(
                        f"--input-shardings=keep: argument {i} is split over part of a mesh axis, which "
                        "the planner cannot keep; use --input-shardings=drop"
                    )
                dims.append(tuple(a.name for a in axes))
            kept = attrs.InputSharding(mesh.axis_names, mesh.shape, tuple(dims))
            attrs.set_input_sharding(main, i, kept)
    drop_shardings(module)
