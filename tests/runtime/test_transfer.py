"""runtime/transfer.py: a value moved by its cross-mesh plan arrives whole on every destination device, on
numpy (what a multi-process runtime ships) and over jax.Arrays on the 8 CPU devices (`move`), for many
shapes and (source, destination) submesh and layout pairs, with and without the local all-gather."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from autopar import _core, cost
from autopar.ir import attrs
from autopar.passes import reshard
from autopar.runtime import transfer

LAYOUTS = [  # (mesh shape, per dim the mesh axes splitting it) for a rank-2 tensor
    ((4,), ((0,), ())),
    ((4,), ((), (0,))),
    ((4,), ((), ())),
    ((2, 2), ((0,), (1,))),
    ((2, 2), ((1,), (0,))),
    ((2, 2), ((0, 1), ())),
    ((2, 2), ((), (1,))),
    ((2,), ((0,), ())),
    ((1,), ((), ())),
]
LINK = cost.Link(1e-5, 1e-9)


def _end(stage: int, layout, devices) -> attrs.TransferEnd:
    mesh, axes = layout
    return attrs.TransferEnd(stage, tuple(devices), tuple(mesh), tuple(tuple(a) for a in axes))


def _plan(shape, src, dst, gather: bool, src_devices, dst_devices) -> attrs.Transfer:
    return reshard.plan(shape, 4, _end(0, src, src_devices), _end(1, dst, dst_devices), gather, LINK)


def _tiles(full: np.ndarray, end: attrs.TransferEnd) -> dict[int, np.ndarray]:
    out = {}
    for p, device in enumerate(end.devices):
        start, limit = transfer.tile_bounds(full.shape, end, p)
        out[device] = full[tuple(slice(a, b) for a, b in zip(start, limit, strict=True))]
    return out


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(LAYOUTS, LAYOUTS)))
def test_tile_bounds_match_the_core(src, dst):
    del dst
    shape = (8, 12)
    end = _end(0, src, range(int(np.prod(src[0]))))
    for p in range(len(end.devices)):
        t = _core.reshard_tile(
            list(shape), list(end.mesh), list(end.devices), [list(a) for a in end.dim_axes], p
        )
        assert transfer.tile_bounds(shape, end, p) == (tuple(t.start), tuple(t.limit))


@pytest.mark.parametrize("gather", [False, True])
@pytest.mark.parametrize("shape", [(8, 12), (4, 4), (16, 8)])
@pytest.mark.parametrize(("src", "dst"), list(itertools.product(LAYOUTS, LAYOUTS)))
def test_numpy_plan_assembles_every_destination_tile(src, dst, shape, gather):
    n_src, n_dst = int(np.prod(src[0])), int(np.prod(dst[0]))
    for src_devices, dst_devices in (
        (list(range(n_src)), list(range(10, 10 + n_dst))),  # another mesh: every byte crosses
        (list(range(n_src)), list(reversed(range(n_dst)))),  # shared devices: local copies
    ):
        plan = _plan(shape, src, dst, gather, src_devices, dst_devices)
        full = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        got = transfer.run_numpy(plan, _tiles(full, plan.src))
        assert got.keys() == set(plan.dst.devices)
        for device, tile in _tiles(full, plan.dst).items():
            np.testing.assert_array_equal(got[device], tile)
        if gather and n_dst > 1 and not any(dst[1]) and dst_devices[0] >= 10:
            # A replicated destination all-gathers: each element crosses once, not once per replica.
            assert plan.gather_groups and plan.bytes == full.nbytes


def test_numpy_helpers_refuse_what_the_plan_does_not_say():
    plan = _plan((4, 4), LAYOUTS[0], LAYOUTS[2], True, [0, 1, 2, 3], [4, 5, 6, 7])
    with pytest.raises(ValueError, match="holds a tile of shape"):
        transfer.outgoing(plan, 0, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="not on the transfer's src mesh"):
        transfer.outgoing(plan, 4, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="lacks the slices of sends"):
        transfer.assemble(plan, 4, {})
    # the received slices alone are part of the tile; the gather group's members hold the rest
    assert transfer.incoming(plan, 4) != transfer.needed(plan, 4)
    assert transfer.gather_group(plan, 4) == (4, 5, 6, 7)


def _sharding(end: attrs.TransferEnd) -> NamedSharding:
    devices = {d.id: d for d in jax.devices()}
    mesh = Mesh(
        np.array([devices[i] for i in end.devices]).reshape(end.mesh),
        tuple(f"a{i}" for i in range(len(end.mesh))),
    )
    spec = [tuple(f"a{a}" for a in axes) or None for axes in end.dim_axes]
    return NamedSharding(mesh, PartitionSpec(*spec))


MOVE_LAYOUTS = [LAYOUTS[i] for i in (0, 1, 2, 3, 5, 7, 8)]


@pytest.mark.parametrize("gather", [False, True])
@pytest.mark.parametrize(("src", "dst"), list(itertools.product(MOVE_LAYOUTS, MOVE_LAYOUTS)))
def test_move_preserves_the_value(src, dst, gather):
    shape = (8, 12)
    n_src, n_dst = int(np.prod(src[0])), int(np.prod(dst[0]))
    for src_devices, dst_devices in (
        (list(range(n_src)), list(range(4, 4 + n_dst))),  # two submeshes
        (list(range(n_src)), list(reversed(range(n_dst)))),  # the same devices in another order
    ):
        plan = _plan(shape, src, dst, gather, src_devices, dst_devices)
        full = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        x = jax.device_put(full, _sharding(plan.src))
        target = _sharding(plan.dst)
        y = transfer.move(x, plan, target)
        assert y.sharding == target
        np.testing.assert_array_equal(np.asarray(y), full)
        for shard in y.addressable_shards:  # each device holds its own tile, on itself
            assert shard.data.devices() == {shard.device}
            np.testing.assert_array_equal(np.asarray(shard.data), full[shard.index])


def test_move_refuses_an_array_laid_out_otherwise():
    plan = _plan((8, 12), LAYOUTS[0], LAYOUTS[1], True, [0, 1, 2, 3], [4, 5, 6, 7])
    x = jax.device_put(np.zeros((8, 12), np.float32), _sharding(_end(0, LAYOUTS[1], [0, 1, 2, 3])))
    with pytest.raises(ValueError, match="the sharding does not match the plan"):
        transfer.move(x, plan, _sharding(plan.dst))
    with pytest.raises(ValueError, match="planned for shape"):
        transfer.move(
            jax.device_put(np.zeros((4, 12), np.float32), _sharding(plan.src)), plan, _sharding(plan.dst)
        )
