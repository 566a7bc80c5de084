"""ShardParallel(manual_sharding_option=...): the user's PartitionSpecs written onto @main as they are
(Alpa's ManualShardingOption), instead of a planned layout."""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import PartitionSpec
from jaxlib.mlir import ir

from autopar.api.arguments import broadcast_specs
from autopar.runtime import shardings as sh


def annotate_manual(
    module: ir.Module,
    method: Any,
    axis_names: tuple[str, ...],
    mesh_shape: tuple[int, ...],
    call: tuple[tuple[Any, ...], dict[str, Any], list[int]],
    lowered: Any,
) -> None:
    """Annotates @main with `method.manual_sharding_option`'s in/out axis resources; `call` is the
    (positional arguments, keyword arguments, positions of the dynamic ones) of the call being planned."""
    args, kwargs, dynamic = call
    manual = method.manual_sharding_option
    assert manual is not None
    dyn_args = tuple(args[i] for i in dynamic)
    in_specs = broadcast_specs(manual.in_axis_resources, dyn_args, "in_axis_resources") + [None] * len(
        jax.tree.leaves(kwargs)
    )
    out_shapes = jax.tree.unflatten(lowered.out_tree, [0] * lowered.out_tree.num_leaves)
    out_specs = broadcast_specs(manual.out_axis_resources, out_shapes, "out_axis_resources")
    mesh = sh.MeshSpec("mesh", axis_names, mesh_shape)
    for spec in in_specs + out_specs:
        for entry in spec or ():
            for axis in (entry,) if isinstance(entry, str) else (entry or ()):
                if axis not in axis_names:
                    raise ValueError(f"PartitionSpec {spec} names axis {axis!r}; the mesh has {axis_names}")
    sh.annotate_main(
        module, mesh, [s or PartitionSpec() for s in in_specs], [s or PartitionSpec() for s in out_specs]
    )
