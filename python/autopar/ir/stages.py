"""Stage functions as modules of their own: what `autopar-shard-stages` plans and the runtime compiles."""

from __future__ import annotations

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import sdy

from autopar.ir import attrs


def referenced_meshes(fn: ir.Operation) -> list[tuple[str, ir.Attribute]]:
    """(name, `#sdy.mesh`) of every `sdy.mesh` of `fn`'s module that `fn` names in a sharding."""
    module_op = fn.operation.parent
    text = fn.operation.get_asm(enable_debug_info=False)
    found = []
    for op in module_op.regions[0].blocks[0].operations:
        if op.operation.name == "sdy.mesh":
            name = ir.StringAttr(op.attributes["sym_name"]).value
            if f"<@{name}," in text or f"<@{name}>" in text:
                found.append((name, op.attributes["mesh"]))
    return found


def stage_module(fn: ir.Operation) -> ir.Module:
    """A new module whose public @main is a copy of the stage function `fn`, with the `sdy.mesh`es it
    names (none before autopar-shard-stages); its stage attributes are dropped."""
    with fn.context, ir.Location.unknown():
        module = ir.Module.create()
        with ir.InsertionPoint(module.body):
            # Built in place: moving a freshly created MeshOp crashes jaxlib.
            for name, mesh in referenced_meshes(fn):
                sdy.MeshOp(name, mesh)
            clone = fn.clone()
        clone.attributes["sym_name"] = ir.StringAttr.get("main")
        clone.attributes["sym_visibility"] = ir.StringAttr.get("public")
        attrs.clear_stage(clone)
    return module
