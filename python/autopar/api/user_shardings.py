"""Layouts a user's step fixes itself, as parallelize meets them before planning.

Model code written for `jax.jit` over a mesh often pins a few activations with
`jax.lax.with_sharding_constraint` (or flax's `nn.with_logical_constraint` under axis rules). Those name
the user's mesh, not the plan's, and they change no value: parallelize drops them, plans every layout on
its own mesh, and says so in the plan's remarks. `jax.shard_map` is different: its body is written per
device, with its own collectives over its own mesh, so it cannot be re-planned; parallelize refuses it,
naming where it is.
"""

from __future__ import annotations

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import sdy

from autopar.errors import AutoparError, format_location
from autopar.ir import exported

_SHOWN = 3  # locations a remark lists


class ShardMapError(AutoparError, ValueError):
    """The step holds a `jax.shard_map`: a per-device program over a mesh of its own."""


def drop_user_shardings(module: ir.Module, function_name: str) -> tuple[str, ...]:
    """Drops the sharding constraints of a lowered step (their meshes with them) and returns the remark
    that says so; raises ShardMapError for a `jax.shard_map`."""
    manual, constraints = _layout_ops(module)
    # JAX's own constraints over a mesh without axes (jax.random.permutation's key, under no mesh) fix
    # no layout of the user's: they go without a remark.
    with_axes = exported.axis_meshes(module)
    constraints = [op for op in constraints if not _on_mesh_without_axes(op, with_axes)]
    if manual:
        where = format_location(manual[0].location)
        raise ShardMapError(
            f"{function_name} calls jax.shard_map{f' at {where}' if where else ''}: its body is written per "
            "device for a mesh of its own, which autopar cannot re-plan; write that part with jax.numpy "
            "ops (autopar then chooses its layout), or run the step with jax.jit on that mesh"
        )
    if not constraints and not exported.has_shardings(module):
        return ()
    # Read before the ops are erased. A constraint and its transpose in the backward pass share a line:
    # count places, not ops.
    places = sorted({format_location(op.location) or "an unnamed place" for op in constraints})
    del constraints
    exported.drop_shardings(module)
    if not places:
        return ("the step's own shardings were dropped: autopar chooses every layout on the plan's mesh",)
    more = len(places) - _SHOWN
    shown = ", ".join(places[:_SHOWN]) + (
        f" and {more} more place{'s' if more > 1 else ''}" if more > 0 else ""
    )
    return (
        f"the step's sharding constraints at {shown} were dropped: they name the step's own mesh, and "
        "autopar chooses every layout on the plan's mesh",
    )


def _on_mesh_without_axes(op: ir.Operation, with_axes: set[str]) -> bool:
    """A Shardy constraint whose mesh (named, or inline) has no axes: it can only say "replicated"."""
    if op.name != "sdy.sharding_constraint":
        return False
    mesh = sdy.TensorShardingAttr(op.attributes["sharding"]).mesh_or_ref
    if isinstance(mesh, ir.FlatSymbolRefAttr):
        return mesh.value not in with_axes
    return not list(sdy.MeshAttr(mesh).axes)


def _layout_ops(module: ir.Module) -> tuple[list[ir.Operation], list[ir.Operation]]:
    """(shard_map bodies, sharding constraints) anywhere in the module, in program order."""
    manual: list[ir.Operation] = []
    constraints: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "sdy.manual_computation":
            manual.append(op)
        elif exported.is_layout_constraint(op):
            constraints.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit, walk_order=ir.WalkOrder.PRE_ORDER)
    return manual, constraints
