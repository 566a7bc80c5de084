"""The cross-mesh resharding core (passes/inter_op/reshard): every destination device ends up with exactly
its tile, for many shapes and (source, destination) mesh and layout pairs, with and without the local
all-gather; each slice crosses once when the destination replicates; senders share the work."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from autopar import _core

LAYOUTS = [  # (mesh shape, per dim the axes splitting it) for a rank-2 tensor
    ((4,), [[0], []]),
    ((4,), [[], [0]]),
    ((4,), [[], []]),
    ((2, 2), [[0], [1]]),
    ((2, 2), [[1], [0]]),
    ((2, 2), [[0, 1], []]),
    ((2, 2), [[], [1]]),
    ((2,), [[0], []]),
    ((1,), [[], []]),
    ((2, 4), [[0], [1]]),
    ((2, 4), [[], [0, 1]]),
    ((8,), [[0], []]),
]


def run(shape, src, dst, local_all_gather, src_devices, dst_devices):
    """Executes the plan on numpy: each device's buffer from the sends (and the all-gathers)."""
    (src_mesh, src_axes), (dst_mesh, dst_axes) = src, dst
    plan = _core.plan_reshard(
        list(shape),
        4,
        list(src_mesh),
        src_devices,
        src_axes,
        list(dst_mesh),
        dst_devices,
        dst_axes,
        local_all_gather,
        1e-5,
        1e-9,
    )
    full = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    holds = {}  # source device -> its tile's slice
    for p, device in enumerate(src_devices):
        holds[device] = _core.reshard_tile(list(shape), list(src_mesh), src_devices, src_axes, p)
    got = {d: np.full(shape, np.nan, np.float32) for d in dst_devices}
    for send in plan.sends:
        index = tuple(slice(a, b) for a, b in zip(send.slice.start, send.slice.limit, strict=True))
        have = holds[send.src_device]  # the sender holds what it sends
        assert all(
            h0 <= a and b <= h1
            for h0, h1, a, b in zip(have.start, have.limit, send.slice.start, send.slice.limit, strict=True)
        )
        got[send.dst_device][index] = full[index]
    for group in plan.gather_groups:  # all-gather inside the destination mesh
        merged = np.fmax.reduce(np.stack([got[d] for d in group]), axis=0)  # NaN: not received
        for d in group:
            got[d] = merged
    for p, device in enumerate(dst_devices):
        t = _core.reshard_tile(list(shape), list(dst_mesh), dst_devices, dst_axes, p)
        index = tuple(slice(a, b) for a, b in zip(t.start, t.limit, strict=True))
        np.testing.assert_array_equal(got[device][index], full[index])
    return plan


@pytest.mark.parametrize("local_all_gather", [False, True])
@pytest.mark.parametrize(("src", "dst"), list(itertools.product(LAYOUTS, LAYOUTS)))
def test_every_destination_tile_arrives(src, dst, local_all_gather):
    n_src, n_dst = int(np.prod(src[0])), int(np.prod(dst[0]))
    src_devices = list(range(n_src))
    dst_devices = list(range(100, 100 + n_dst))  # another mesh: every byte crosses
    plan = run((8, 16), src, dst, local_all_gather, src_devices, dst_devices)
    assert plan.bytes_between_devices == sum(s.bytes for s in plan.sends)
    assert plan.seconds > 0


def test_a_replicated_destination_receives_each_slice_once_then_all_gathers():
    src, dst = ((4,), [[0], []]), ((4,), [[], []])  # row-split onto 4 devices that all hold the whole
    plain = run((8, 16), src, dst, False, [0, 1, 2, 3], [10, 11, 12, 13])
    once = run((8, 16), src, dst, True, [0, 1, 2, 3], [10, 11, 12, 13])
    whole = 8 * 16 * 4
    assert plain.bytes_between_devices == 4 * whole and once.bytes_between_devices == whole
    assert once.gather_groups == [[10, 11, 12, 13]]


def test_senders_are_balanced_over_replicas_and_local_copies_are_free():
    src, dst = ((2, 2), [[0], []]), ((4,), [[], [0]])  # each row half held twice; columns split four ways
    plan = run((8, 16), src, dst, False, [0, 1, 2, 3], [10, 11, 12, 13])
    sent = {}
    for s in plan.sends:
        sent[s.src_device] = sent.get(s.src_device, 0) + s.bytes
    assert sorted(sent.values()) == [128, 128, 128, 128]  # every replica sends its share
    same = run((8, 16), src, ((2, 2), [[0], []]), False, [0, 1, 2, 3], [0, 1, 2, 3])
    assert same.bytes_between_devices == 0 and same.seconds == 0


@pytest.mark.parametrize(
    ("src_axes", "message"),
    [
        ([[0], [0]], "mesh axis 0 is missing or used twice"),
        ([[0]], "1 dims for a rank-2 tensor"),
    ],
)
def test_bad_layouts_are_value_errors(src_axes, message):
    with pytest.raises(ValueError, match=message):
        _core.plan_reshard([8, 16], 4, [4], [0, 1, 2, 3], src_axes, [1], [9], [[], []])
    with pytest.raises(ValueError, match="dim 0 of size 6 does not split into 4"):
        _core.plan_reshard([6, 16], 4, [4], [0, 1, 2, 3], [[0], []], [1], [9], [[], []])
