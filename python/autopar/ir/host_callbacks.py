"""Host callbacks (`jax.debug.print`, `jax.pure_callback`, `jax.experimental.io_callback`) through the
pipeshard passes.

JAX lowers a callback to a custom call that names its Python function by index and places it on one device
with a sharding on a maximal mesh (`sdy.mesh @maximal_mesh_0 = <[], device_ids=[0]>`). The pipeshard passes
plan unsharded programs and split @main into stage functions, so before them the placement becomes the
mark `autopar.host_callback` and the maximal mesh goes; `place_in_stage` puts it back into each stage module
the runtime compiles: the callback runs once, on the stage mesh's first device, as under `jax.jit`.
"""

from __future__ import annotations

import re

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import sdy

from autopar.ir import attrs

MARK = attrs.HOST_CALLBACK
_MESH = "maximal_mesh_0"


def maximal_meshes(module_op: ir.Operation) -> list[ir.Operation]:
    """The module's meshes of one device and no axes (`<[], device_ids=[0]>`): where JAX places callbacks."""
    found = []
    for op in module_op.regions[0].blocks[0].operations:
        if op.operation.name == "sdy.mesh":
            mesh = sdy.MeshAttr(op.attributes["mesh"])
            if not list(mesh.axes) and list(mesh.device_ids):
                found.append(op.operation)
    return found


def mesh_names(meshes: list[ir.Operation]) -> set[str]:
    return {ir.StringAttr(m.attributes["sym_name"]).value for m in meshes}


def places_on_one_device(sharding: ir.Attribute, maximal: set[str]) -> bool:
    """Whether an op's `sdy.sharding` names one of the `maximal` meshes (or is GSPMD's `{maximal ...}`)."""
    text = str(sharding)
    if text.startswith('"{maximal'):
        return True
    return any(re.search(rf"@{re.escape(name)}(?![\w$.])", text) for name in maximal)


def calls_back(module_op: ir.Operation) -> bool:
    """Whether the module holds a host callback's custom call (JAX's `xla_ffi_python_cpu_callback`, ...)."""
    found = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "stablehlo.custom_call":
            target = ir.StringAttr(op.attributes["call_target_name"]).value
            if "python" in target and "callback" in target:
                found.append(target)
                return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module_op.walk(visit)
    return bool(found)


def mark(module_op: ir.Operation) -> None:
    """Replaces each maximal-mesh placement by MARK and drops the maximal meshes."""
    meshes = maximal_meshes(module_op)
    if not meshes:
        return
    names = mesh_names(meshes)
    marked = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if "sdy.sharding" in op.attributes and places_on_one_device(op.attributes["sdy.sharding"], names):
            marked.append(op)
        return ir.WalkResult.ADVANCE

    module_op.walk(visit)
    with module_op.context:
        for op in marked:
            del op.attributes["sdy.sharding"]
            op.attributes[MARK] = ir.UnitAttr.get()
    for m in meshes:
        m.erase()


def place_in_stage(module: ir.Module) -> None:
    """Puts each marked callback of a stage module on a maximal mesh of the stage's first device."""
    marked = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if MARK in op.attributes:
            marked.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    if not marked:
        return
    with module.context, ir.Location.unknown():
        with ir.InsertionPoint.at_block_begin(module.body):
            sdy.MeshOp(_MESH, ir.Attribute.parse("#sdy.mesh<[], device_ids=[0]>"))
        for op in marked:
            placed = ", ".join(f"<@{_MESH}, []>" for _ in range(max(len(op.results), 1)))
            op.attributes["sdy.sharding"] = ir.Attribute.parse(f"#sdy.sharding_per_value<[{placed}]>")
            del op.attributes[MARK]
