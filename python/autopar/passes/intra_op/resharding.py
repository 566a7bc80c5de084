"""Reshards between layouts: the steps XLA takes from a produced layout to a required one, the
intermediate layouts the emitter writes so that it takes them, and their cost.

Layouts are as in strategies.py: entry a is the tensor dim mesh axis a shards, or -1. Besides the
collectives, a reshard can pay a copy XLA adds (`_gather_relayout_cost`, under `relayout_gathers`): XLA
gathers along a tensor's physically outermost dim only, so for an all-gather along any other dim layout
assignment gives the operand a layout with the gathered dim outermost and a transposing copy brings the
whole result back. Over 8 devices, `f32[64,512]` sharded on dim 1 and gathered:

    before (what the plan asks):  all-gather(f32[64,64]{1,0}), dimensions={1} -> f32[64,512]{1,0}
    after (what XLA compiles):    all-gather(f32[64,64]{0,1}), dimensions={1} -> f32[64,512]{0,1}
                                  copy -> f32[64,512]{1,0}

The calibration's tables time gathers along dim 0, without the copy (tests/passes/intra_op/test_intra_op.py
checks the copy in XLA's compiled program and its price).
"""

from __future__ import annotations

import numpy as np

from autopar.cost import MeshModel
from autopar.passes.intra_op.strategies import FORBIDDEN, shards_of, tensor_bytes

# The order of a reshard's steps (`reshard_steps`): all at once, the all-to-all before the all-gather, or
# the all-gather first.
DIRECT, MOVE_FIRST, GATHER_FIRST = 0, 1, 2


def reshard_steps(
    produced: np.ndarray, required: np.ndarray, mesh_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How XLA turns each produced layout into each required layout ([Sp, Sc] each): bit masks over mesh
    axes of the axes it all-gathers (sharded, then replicated), the axes it moves between dims with an
    all-to-all, and the axes of dims whose split must be re-ordered across devices with a
    collective-permute; and where it gives up and rematerializes the whole tensor.

    Slicing a dim further is free only when the new axes are minor to the axes that stay on it: a dim split
    over (z) that must be split over (x, y, z) holds, on device (x, y, z), rows of z's chunk, but needs row
    x*4 + y*2 + z; likewise gathering a dim's major axis while a minor one stays. XLA exchanges such parts
    with a collective-permute (measured on GPT steps on 2x2x2: 8 permutes the per-axis model missed).
    All-to-all works for axes that all move from one dim to one other dim; axes moving between two or more
    pairs of dims ([x, y, z] all on dim 2 to x, y on dim 0 and z on dim 1) make XLA's partitioner replicate
    the tensor and slice it again ("Involuntary full rematerialization").

    XLA also rematerializes many reshards that mix kinds in one step: one dim losing an axis to an
    all-gather and another to an all-to-all ((x, y) on dim 0 to y on dim 2, the last rematerialization of
    the GPT 2x4 plans); an all-gather or an all-to-all together with a new slice (x on dim 1 to y on dim 0
    on 2x4, (x, y) on dim 0 to z on dim 2 on 2x2x2). One kind per step it does not
    (tests/passes/intra_op/test_strategies_reshard_steps.py checks every pair of 2x4 layouts and a sample
    of 2x2x2 ones): the emitter
    writes the intermediate layouts as constraints (`reshard_waypoints`). Where a gather and a move meet,
    the all-to-all goes first when the moving axes are minor to the gathered ones on a dim they share
    (MOVE_FIRST: it then moves a tensor still split over the gathered axes), else the all-gather
    (GATHER_FIRST); where two dims want different orders, or the axes interleave, the reshard is priced as
    the rematerialization XLA runs. Slices come last. Returned: gather, move and permute masks, remat, the
    order, and the factor by which the collectives' tensor is larger than the required layout's per-device
    part (the slices not yet done).
    """
    p = produced[:, None, :].astype(np.int16)
    c = required[None, :, :].astype(np.int16)
    axes = len(mesh_shape)
    active = (np.asarray(mesh_shape) > 1)[None, None, :]
    bits = (1 << np.arange(axes)).astype(np.int64)
    sharded = (p >= 0) & active
    gathered = sharded & (c < 0)
    gather = gathered @ bits
    moving = sharded & (c >= 0) & (p != c)
    move = moving @ bits
    route = np.where(moving, p * 64 + c, -1)  # (source dim, target dim) of each moving axis
    remat = np.zeros(gather.shape, dtype=bool)
    for a in range(axes):
        for b in range(a + 1, axes):
            remat |= moving[..., a] & moving[..., b] & (route[..., a] != route[..., b])
    index = np.arange(axes)
    rank = int(max(produced.max(initial=-1), required.max(initial=-1))) + 1
    sliced = (p < 0) & (c >= 0) & active
    move_first = np.zeros(gather.shape, dtype=bool)
    gather_first = np.zeros(gather.shape, dtype=bool)
    for dim in range(rank):
        g, m = gathered & (p == dim), moving & (p == dim)
        both = g.any(axis=-1) & m.any(axis=-1)
        g_major = np.where(g, index, axes).min(axis=-1)
        g_minor = np.where(g, index, -1).max(axis=-1)
        m_major = np.where(m, index, axes).min(axis=-1)
        m_minor = np.where(m, index, -1).max(axis=-1)
        moves_minor = both & (m_major > g_minor)
        gathers_minor = both & (g_major > m_minor)
        move_first |= moves_minor
        gather_first |= gathers_minor
        remat |= both & ~moves_minor & ~gathers_minor
    remat |= move_first & gather_first
    two_kinds = gathered.any(axis=-1) & moving.any(axis=-1)
    order = np.where(two_kinds, np.where(move_first, MOVE_FIRST, GATHER_FIRST), DIRECT)
    order = np.where(remat, DIRECT, order)
    # Slices (an axis newly splitting a dim) come last, after the collectives: sliced together with a
    # gather or a move, XLA rematerializes (x on dim 1 to y on dim 0 on 2x4); last, they are local. The
    # collectives then carry the tensor not yet split over the sliced axes.
    slice_last = sliced.any(axis=-1) & (gathered.any(axis=-1) | moving.any(axis=-1)) & ~remat
    unsliced = np.ones(gather.shape)
    for a, size in enumerate(mesh_shape):
        unsliced = np.where(slice_last & sliced[..., a], unsliced * size, unsliced)
    permute = np.zeros(gather.shape, dtype=np.int64)
    for dim in range(rank):
        stay = (p == dim) & (c == dim) & active
        new = (c == dim) & (p != dim) & active
        gone = (p == dim) & (c != dim) & active
        last_stay = np.where(stay, index, -1).max(axis=-1)
        first_new = np.where(new, index, axes).min(axis=-1)
        first_gone = np.where(gone, index, axes).min(axis=-1)
        reordered = (last_stay >= 0) & ((first_new < last_stay) | (first_gone < last_stay))
        permute |= np.where(reordered, (stay | new | gone) @ bits, 0)
    remat_axes = sharded @ bits
    gather = np.where(remat, remat_axes, gather)
    move = np.where(remat, 0, move)
    permute = np.where(remat, 0, permute)
    return gather, move, permute, remat, order.astype(np.int8), unsliced


def reshard_waypoints(
    produced: np.ndarray, required: np.ndarray, mesh_shape: tuple[int, ...]
) -> list[np.ndarray]:
    """The layouts between `produced` and `required` (one layout each) that XLA must pass through to reshard
    without rematerializing, one kind of step each (see `reshard_steps`); empty when one step will do."""
    *_, remat, order, unsliced = reshard_steps(produced[None, :], required[None, :], mesh_shape)
    if remat[0, 0]:
        return []
    active = np.asarray(mesh_shape) > 1
    sharded = (produced >= 0) & active
    gathered, moving = sharded & (required < 0), sharded & (required >= 0) & (produced != required)
    steps = []
    if order[0, 0] == MOVE_FIRST:  # moving axes take their new dims; gathered ones stay for now
        steps.append(np.where(moving, required, produced))
    elif order[0, 0] == GATHER_FIRST:  # gathered axes leave; moving ones stay for now
        steps.append(np.where(gathered, -1, produced))
    if unsliced[0, 0] > 1:  # everything but the slices
        steps.append(np.where(moving, required, np.where(gathered, -1, produced)))
    out: list[np.ndarray] = []
    for step in steps:
        last = out[-1] if out else produced
        if not np.array_equal(step, last) and not np.array_equal(step, required):
            out.append(step.astype(produced.dtype))
    return out


def _mask_axes(mask: int) -> list[int]:
    return [a for a in range(8) if mask >> a & 1]


def _collective_cost(masks: np.ndarray, volume: np.ndarray, price, mesh: MeshModel) -> np.ndarray:
    """[Sp, Sc] seconds of one collective per entry over the axes of `masks` (0: none) on `volume` bytes per
    device; `price` None forbids it. Affine in the bytes (one intercept and slope per axis set) unless the
    mesh has measured tables (then priced once per distinct bytes: autopar/cost/tables.py)."""
    out, volume = np.zeros(masks.shape), np.broadcast_to(volume, masks.shape)
    for mask in np.unique(masks[masks > 0]):
        chosen, axes = masks == mask, _mask_axes(int(mask))
        if price is None:
            out[chosen] = FORBIDDEN
        elif not mesh.tables:
            intercept = price(0.0, axes)
            out[chosen] = intercept + (price(1.0, axes) - intercept) * volume[chosen]
        else:
            distinct, back = np.unique(volume[chosen], return_inverse=True)
            out[chosen] = np.array([price(float(v), axes) for v in distinct])[back]
    return out


def reshard_cost(
    produced: np.ndarray,
    required: np.ndarray,
    shape: tuple[int, ...],
    itemsize: int,
    mesh: MeshModel,
    allow_all_gather: bool,
    allow_all_to_all: bool,
) -> np.ndarray:
    """[Sp, Sc] seconds to turn each produced layout into each required layout, as XLA does it
    (`reshard_steps`): one all-gather per tensor dim that loses axes (`gather_steps`), one all-to-all over
    the moved ones (all-gather + slice when all-to-all is off), and a collective-permute where a dim's
    split is re-ordered; slicing is free. Sizes are the per-device bytes of the required layout before its
    slices (an all-to-all that runs before the all-gather moves the tensor still split over the gathered
    axes), but for a rematerialization: all-gathers that end with the whole tensor."""
    total = float(tensor_bytes(shape, itemsize))
    per_device = total / shards_of(required, mesh.shape).astype(np.float64)  # [Sc]
    gather, move, permute, remat, order, unsliced = reshard_steps(produced, required, mesh.shape)
    # The gathers of a rematerialization produce the whole tensor.
    cost = _gather_cost(produced, np.where(remat, gather, 0), shape, np.float64(total), mesh.all_gather, mesh)
    gather = np.where(remat, 0, gather)
    # The collectives carry the tensor before its slices; an all-to-all that runs first, before the
    # gathers too.
    volume = per_device[None, :] * unsliced
    gathered_share = np.ones(gather.shape)
    for a, size in enumerate(mesh.shape):
        gathered_share = np.where(gather >> a & 1, gathered_share / size, gathered_share)
    move_volume = volume * np.where(order == MOVE_FIRST, gathered_share, 1.0)
    move_price = mesh.all_to_all if allow_all_to_all else mesh.all_gather
    cost += _collective_cost(move, move_volume, move_price, mesh)
    gather_price = mesh.all_gather if allow_all_gather else None
    cost += _gather_cost(produced, gather, shape, volume, gather_price, mesh)
    cost += _collective_cost(permute, volume, mesh.collective_permute, mesh)
    return np.minimum(cost, FORBIDDEN)


def gather_steps(
    produced: np.ndarray, gather: np.ndarray, shape: tuple[int, ...], mesh_shape: tuple[int, ...]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The all-gathers XLA runs for a reshard's gathered axes (`gather`, [Sp, Sc] bit masks over mesh axes,
    from `reshard_steps`; `produced` the [Sp] layouts they leave): one per tensor dim that loses axes, the
    last dim first (XLA's all-gather has one `dimensions`; measured on 2x4 and 2x2x2, checked in
    tests/passes/intra_op/test_strategies_reshard_steps.py). Per step: its axes' mask, the share of the
    reshard's gathered bytes it produces (the dims before it are still split over their gathered axes),
    and the per-device elements of the dims before it, for the copy `_gather_cost` prices."""
    sizes = np.asarray(mesh_shape, dtype=np.int64)
    axes = np.arange(len(mesh_shape))
    active = sizes > 1
    steps = []
    for dim in reversed(range(len(shape))):
        on_dim = ((produced == dim) & active[None, :]).astype(np.int64) @ (1 << axes)  # [Sp]
        mask = gather & on_dim[:, None]
        if not mask.any():
            continue
        share = np.ones(gather.shape)
        before = np.ones(gather.shape)
        for earlier in range(dim):
            on_earlier = (produced == earlier) & active[None, :]  # [Sp, A]
            split = np.prod(np.where(on_earlier, sizes[None, :], 1), axis=-1).astype(np.float64)  # [Sp]
            for a in axes[active]:
                lost_here = (gather >> a & 1).astype(bool) & on_earlier[:, a][:, None]
                share = np.where(lost_here, share / sizes[a], share)
            before *= shape[earlier] / split[:, None]
        steps.append((mask, share, before))
    return steps


def _gather_cost(
    produced: np.ndarray,
    gather: np.ndarray,
    shape: tuple[int, ...],
    volume: np.ndarray | np.float64,
    price,
    mesh: MeshModel,
) -> np.ndarray:
    """[Sp, Sc] seconds of the all-gathers of `gather` (bit masks over mesh axes) producing `volume` bytes
    per device, one per tensor dim (`gather_steps`), each with the copy XLA adds after a gather along a dim
    that is not the outermost (under `mesh.device.relayout_gathers`): one read and one write of that
    gather's bytes at the device's memory bandwidth. No copy when every dim before the gathered one has one
    element per device (the two layouts are then the same bytes)."""
    cost = np.zeros(gather.shape)
    for mask, share, before in gather_steps(produced, gather, shape, mesh.shape):
        step_volume = volume * share
        cost += _collective_cost(mask, step_volume, price, mesh)
        if mesh.device.relayout_gathers:
            relayout = (mask > 0) & (before > 1)
            cost += np.where(relayout, 2.0 * step_volume / mesh.device.memory_bandwidth, 0.0)
    return cost
