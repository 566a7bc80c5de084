"""The hot path of calling a compiled stage: host arguments placed and results assembled with jax's own
batched helpers, the per-device slicing worked out once per executable.

Why not the public API: `jax.device_put` spends about 50 us on a 128 KiB host array and
`jax.make_array_from_single_device_arrays` about 8 us per result (checks and reordering every call), so a
pipeline stage call with a host operand and a dozen results paid about 0.5 ms of Python, ten times what
`jax.jit`'s C++ dispatch spends, and that sat on the critical path of every micro-batch crossing meshes.
`pxla.batched_device_put` (7 us) and `ArrayImpl(..., _skip_checks=True)` (2 us) are what jax itself calls
under those functions. They are internal to the pinned jax (pyproject.toml); tests/runtime/test_fast_calls.py
checks them against the public path on every sharding of a 2x4 mesh, so a jax upgrade that changes them
fails there, not in a user's step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax._src import core
from jax._src.array import ArrayImpl
from jax._src.interpreters import pxla
from jax.sharding import NamedSharding


class CallingConvention:
    """Per executable: each argument's aval, devices and per-device slices; each result's aval and the
    order of XLA's per-partition buffers that its sharding expects."""

    def __init__(
        self,
        devices: Sequence[jax.Device],
        in_avals: Sequence[jax.ShapeDtypeStruct],
        in_shardings: Sequence[NamedSharding],
        out_avals: Sequence[jax.ShapeDtypeStruct],
        out_shardings: Sequence[NamedSharding],
    ) -> None:
        self._in = [
            (core.ShapedArray(a.shape, a.dtype), s, np.dtype(a.dtype), *_slices(s, a.shape))
            for a, s in zip(in_avals, in_shardings, strict=True)
        ]
        position = {d.id: i for i, d in enumerate(devices)}
        self._out = [
            (
                core.ShapedArray(a.shape, a.dtype),
                s,
                [position[d.id] for d in s._addressable_device_assignment],
            )
            for a, s in zip(out_avals, out_shardings, strict=True)
        ]

    def place_host(self, i: int, x: Any) -> jax.Array | None:
        """Host array `x` as argument `i`, or None when it is not a numpy array of exactly the argument's
        shape and dtype (the caller's general path then converts it or says what is wrong)."""
        aval, sharding, dtype, devices, slices = self._in[i]
        if type(x) is not np.ndarray or x.dtype != dtype or x.shape != aval.shape:
            return None
        shards = [x] * len(devices) if slices is None else [x[s] for s in slices]
        return pxla.batched_device_put(aval, sharding, shards, devices)

    def assemble(self, per_output: Sequence[Sequence[Any]]) -> list[jax.Array]:
        """XLA's per-partition result buffers (one list per result, in partition order) as jax.Arrays."""
        return [
            ArrayImpl(aval, sharding, [parts[k] for k in order], committed=True, _skip_checks=True)
            for (aval, sharding, order), parts in zip(self._out, per_output, strict=True)
        ]


def _slices(sharding: NamedSharding, shape: tuple[int, ...]) -> tuple[list[jax.Device], list | None]:
    """The devices an argument goes to, in its sharding's order, and each one's slice (None: the whole
    array on every device)."""
    devices = list(sharding._addressable_device_assignment)
    if sharding.is_fully_replicated:
        return devices, None
    indices = sharding.addressable_devices_indices_map(shape)
    return devices, [indices[d] for d in devices]


def put_tiles(
    sharding: NamedSharding, shape: tuple[int, ...], tiles: Mapping[jax.Device, np.ndarray]
) -> jax.Array:
    """A jax.Array of global `shape` laid out by `sharding` from each device's host tile (one per device
    of the sharding, all of one dtype)."""
    devices = list(sharding._addressable_device_assignment)
    first = tiles[devices[0]]
    aval = core.ShapedArray(shape, first.dtype)
    return pxla.batched_device_put(aval, sharding, [tiles[d] for d in devices], devices)
