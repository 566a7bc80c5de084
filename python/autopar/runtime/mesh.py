"""Device meshes: a mesh shape and axis names laid over a list of devices, as a `jax.sharding.Mesh`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

DEFAULT_AXIS_NAMES = ("x", "y", "z", "w")


def default_axis_names(rank: int) -> tuple[str, ...]:
    """`x`, `x,y`, `x,y,z`: the names autopar gives mesh axes the user did not name."""
    if rank > len(DEFAULT_AXIS_NAMES):
        return tuple(f"axis{i}" for i in range(rank))
    return DEFAULT_AXIS_NAMES[:rank]


def format_shape(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def check_mesh_shape(mesh_shape: Sequence[int], axis_names: Sequence[str], num_devices: int) -> None:
    """ValueError naming the mesh and the device count when they cannot form a mesh."""
    if not mesh_shape or any(not isinstance(s, int | np.integer) or s < 1 for s in mesh_shape):
        raise ValueError(f"mesh shape {tuple(mesh_shape)} must be a non-empty tuple of positive integers")
    if len(axis_names) != len(mesh_shape):
        raise ValueError(
            f"{len(axis_names)} axis names {tuple(axis_names)} given for the {len(mesh_shape)}-axis mesh "
            f"{format_shape(mesh_shape)}: give one name per axis"
        )
    if len(set(axis_names)) != len(axis_names):
        raise ValueError(f"mesh axis names {tuple(axis_names)} repeat a name: give distinct names")
    size = math.prod(mesh_shape)
    if size != num_devices:
        # Fewer than there are: say how to pick them.
        hint = f" (devices=jax.devices()[:{size}])" if size < num_devices else ""
        if num_devices == 1 and size > 1 and jax.device_count() == 1 and jax.default_backend() == "cpu":
            hint = (
                "; only one CPU device is visible: set "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={size} before jax is imported to get more"
            )
        raise ValueError(
            f"mesh shape {format_shape(mesh_shape)} needs {size} devices but {num_devices} devices were "
            f"given: pass a mesh shape whose product is {num_devices}, or {size} devices{hint}"
        )


def make_mesh(devices: Sequence[jax.Device], mesh_shape: Sequence[int], axis_names: Sequence[str]) -> Mesh:
    """The mesh whose row-major position i holds `devices[i]`, as XLA places partition i on `devices[i]`."""
    check_mesh_shape(mesh_shape, axis_names, len(devices))
    grid = np.array(list(devices), dtype=object).reshape(tuple(mesh_shape))
    # Auto axes: shardings are decided by the plan, never by JAX's explicit-sharding type system.
    return Mesh(grid, tuple(axis_names), axis_types=(AxisType.Auto,) * len(mesh_shape))


def on_auto_axes(x: object) -> object:
    """`x` laid out as it is, over Auto axes. A jax.Array laid out over a mesh with Explicit axes
    (`jax.make_mesh`'s default) carries its sharding in its type, and jax refuses to slice it along a split
    dim ("ShardingTypeError: Use `.at[...].get(out_sharding=)` ..."); the same devices and spec over Auto
    axes slice like any array. Anything else is returned as it is."""
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, jax.sharding.NamedSharding):
        return x
    mesh = sharding.mesh
    if all(t == AxisType.Auto for t in getattr(mesh, "axis_types", ())):
        return x
    auto = Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))
    same = jax.sharding.NamedSharding(auto, sharding.spec, memory_kind=sharding.memory_kind)
    return jax.device_put(x, same)
