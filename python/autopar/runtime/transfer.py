"""Moving a value between two stages' meshes as its `autopar.transfer` plan says (autopar-reshard).

Two layers:

- Pure numpy, for a runtime whose devices live in several processes: `outgoing` gives the slices a source
  device sends, cut from the tile it holds; `incoming` / `needed` say which sends a destination device
  receives itself and which it needs once its gather group has all-gathered; `all_gather` shares the
  received slices inside each gather group; `assemble` builds a destination device's tile from them.
  Slices are keyed by their index in `transfer.sends`, so a process ships (index, array) pairs.
- `move(x, transfer, dst_sharding)`: the same plan in one process over jax.Arrays. Each slice is cut from
  its source device's shard on that device, put on its destination device, the gather groups copy each
  other's slices, and each destination tile is assembled on its device;
  `jax.make_array_from_single_device_arrays` makes the array.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autopar.ir import attrs

Bounds = tuple[tuple[int, ...], tuple[int, ...]]  # [start, limit) per dim


def tile_bounds(shape: Sequence[int], end: attrs.TransferEnd, position: int) -> Bounds:
    """The [start, limit) of the tile mesh position `position` (row-major over `end.mesh`) holds."""
    coord = []
    for size in reversed(end.mesh):
        coord.append(position % size)
        position //= size
    coord.reverse()
    start, limit = [], []
    for d, n in enumerate(shape):
        index, parts = 0, 1
        for axis in end.dim_axes[d]:  # major to minor: mixed radix
            index = index * end.mesh[axis] + coord[axis]
            parts *= end.mesh[axis]
        chunk = n // parts
        start.append(index * chunk)
        limit.append((index + 1) * chunk)
    return tuple(start), tuple(limit)


def device_tile(transfer: attrs.Transfer, device: int, side: str) -> Bounds:
    """The tile `device` holds on the source (`side="src"`) or destination (`"dst"`) mesh."""
    end = transfer.src if side == "src" else transfer.dst
    if device not in end.devices:
        raise ValueError(f"device {device} is not on the transfer's {side} mesh {list(end.devices)}")
    return tile_bounds(transfer.shape, end, end.devices.index(device))


def _local(bounds: Bounds, origin: Sequence[int]) -> tuple[slice, ...]:
    start, limit = bounds
    return tuple(slice(a - o, b - o) for a, b, o in zip(start, limit, origin, strict=True))


def outgoing(transfer: attrs.Transfer, device: int, tile: np.ndarray) -> dict[int, np.ndarray]:
    """The slices source `device` sends (local copies included), by send index, cut from `tile`, the
    tile it holds."""
    origin, limit = device_tile(transfer, device, "src")
    expected = tuple(b - a for a, b in zip(origin, limit, strict=True))
    if tuple(np.shape(tile)) != expected:
        raise ValueError(f"device {device} holds a tile of shape {expected}, got {tuple(np.shape(tile))}")
    return {
        k: tile[_local((s.start, s.limit), origin)] for k, s in enumerate(transfer.sends) if s.src == device
    }


def incoming(transfer: attrs.Transfer, device: int) -> list[int]:
    """Indices of the sends destination `device` receives itself."""
    return [k for k, s in enumerate(transfer.sends) if s.dst == device]


def gather_group(transfer: attrs.Transfer, device: int) -> tuple[int, ...] | None:
    """The destination devices `device` all-gathers its tile with (None: it receives its whole tile)."""
    return next((g for g in transfer.gather_groups if device in g), None)


def needed(transfer: attrs.Transfer, device: int) -> list[int]:
    """Indices of the sends whose slices make up destination `device`'s tile: its own, and after the
    all-gather those of its gather group."""
    group = gather_group(transfer, device) or (device,)
    return [k for k, s in enumerate(transfer.sends) if s.dst in group]


def all_gather(
    transfer: attrs.Transfer, received: Mapping[int, Mapping[int, np.ndarray]]
) -> dict[int, dict[int, np.ndarray]]:
    """`received[device]` (send index -> slice) after each gather group shares what its members received."""
    out = {d: dict(pieces) for d, pieces in received.items()}
    for group in transfer.gather_groups:
        shared: dict[int, np.ndarray] = {}
        for d in group:
            shared.update(received.get(d, {}))
        for d in group:
            out[d] = dict(shared)
    return out


def assemble(
    transfer: attrs.Transfer, device: int, pieces: Mapping[int, np.ndarray], dtype: Any = None
) -> np.ndarray:
    """Destination `device`'s tile from the slices it has (send index -> array; `needed` lists them)."""
    missing = [k for k in needed(transfer, device) if k not in pieces]
    if missing:
        raise ValueError(f"device {device} lacks the slices of sends {missing} to assemble its tile")
    origin, limit = device_tile(transfer, device, "dst")
    indices = needed(transfer, device)
    if dtype is None:
        dtype = np.asarray(pieces[indices[0]]).dtype
    tile = np.empty(tuple(b - a for a, b in zip(origin, limit, strict=True)), dtype)
    covered = 0
    for k in indices:
        s = transfer.sends[k]
        tile[_local((s.start, s.limit), origin)] = pieces[k]
        covered += int(np.prod([b - a for a, b in zip(s.start, s.limit, strict=True)]))
    if covered != tile.size:
        raise ValueError(f"the slices sent to device {device} cover {covered} of its {tile.size} elements")
    return tile


def run_numpy(transfer: attrs.Transfer, tiles: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """The whole plan on numpy: source device -> its tile in, destination device -> its tile out."""
    received: dict[int, dict[int, np.ndarray]] = {d: {} for d in transfer.dst.devices}
    for device in dict.fromkeys(transfer.src.devices):
        for k, piece in outgoing(transfer, device, tiles[device]).items():
            received[transfer.sends[k].dst][k] = piece
    gathered = all_gather(transfer, received)
    return {d: assemble(transfer, d, gathered[d]) for d in transfer.dst.devices}


# ---- in one process, over jax.Arrays ------------------------------------------------------------------


def move(x: Any, transfer: attrs.Transfer, dst_sharding: Any) -> Any:
    """`x` (a jax.Array laid out as `transfer.src` says) as a jax.Array with `dst_sharding`, moved as the
    plan says. The plan's device ids are mapped to jax devices by mesh position: position p of
    `transfer.src` is position p of x's mesh, likewise for `dst_sharding`'s mesh."""
    import jax

    shape = tuple(transfer.shape)
    if tuple(x.shape) != shape:
        raise ValueError(f"the transfer is planned for shape {shape}, got {tuple(x.shape)}")
    src_devices = _devices_by_id(x.sharding, transfer.src, shape, "source")
    dst_devices = _devices_by_id(dst_sharding, transfer.dst, shape, "destination")
    shards = {shard.device: shard.data for shard in x.addressable_shards}
    received: dict[int, dict[int, Any]] = {d: {} for d in transfer.dst.devices}
    for k, send in enumerate(transfer.sends):
        origin, limit = device_tile(transfer, send.src, "src")
        data = shards[src_devices[send.src]]
        if (send.start, send.limit) != (origin, limit):
            data = data[_local((send.start, send.limit), origin)]
        received[send.dst][k] = jax.device_put(data, dst_devices[send.dst])
    for group in transfer.gather_groups:  # each member copies the slices the others received
        shared = {k: v for d in group for k, v in received[d].items()}
        for d in group:
            received[d] = {k: jax.device_put(v, dst_devices[d]) for k, v in shared.items()}
    tiles = {d: _assemble_on_device(transfer, d, received[d]) for d in dict.fromkeys(transfer.dst.devices)}
    by_device = {dst_devices[d]: tile for d, tile in tiles.items()}
    arrays = [by_device[device] for device in dst_sharding.addressable_devices_indices_map(shape)]
    return jax.make_array_from_single_device_arrays(shape, dst_sharding, arrays)


@functools.lru_cache(maxsize=1024)
def _devices_by_id(sharding: Any, end: attrs.TransferEnd, shape: tuple[int, ...], what: str) -> dict:
    """Plan device id -> jax device, by mesh position; checks that each holds the tile the plan says.
    Cached: a runtime moves the same value (sharding, plan) every micro-batch; callers only read it."""
    mesh = getattr(sharding, "mesh", None)
    flat = list(mesh.devices.flat) if mesh is not None else sorted(sharding.device_set, key=lambda d: d.id)
    if len(flat) != len(end.devices):
        raise ValueError(f"the {what} mesh has {len(flat)} devices, the plan {len(end.devices)}")
    indices = sharding.devices_indices_map(shape)
    out = {}
    for p, (device_id, device) in enumerate(zip(end.devices, flat, strict=True)):
        start, limit = tile_bounds(shape, end, p)
        index = indices[device]
        got = tuple(s.indices(n)[:2] for s, n in zip(index, shape, strict=True))
        if got != tuple(zip(start, limit, strict=True)):
            raise ValueError(
                f"the {what} device at mesh position {p} holds {got}, the plan says "
                f"{tuple(zip(start, limit, strict=True))}: the sharding does not match the plan"
            )
        out[device_id] = device
    return out


def _assemble_on_device(transfer: attrs.Transfer, device: int, pieces: Mapping[int, Any]) -> Any:
    """The destination tile from its slices, on the slices' device (one piece that is the whole tile is
    used as it is; otherwise the slices are concatenated dim by dim, a grid over the tile)."""
    import jax.numpy as jnp

    origin = device_tile(transfer, device, "dst")[0]
    indices = needed(transfer, device)
    if len(indices) == 1:
        return pieces[indices[0]]
    blocks = {tuple(transfer.sends[k].start): pieces[k] for k in indices}

    def build(prefix_dims: int, items: dict[tuple[int, ...], Any]) -> Any:
        if prefix_dims == len(origin):
            (only,) = items.values()
            return only
        groups: dict[int, dict[tuple[int, ...], Any]] = {}
        for start, piece in items.items():
            groups.setdefault(start[prefix_dims], {})[start] = piece
        parts = [build(prefix_dims + 1, groups[key]) for key in sorted(groups)]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=prefix_dims)

    return build(0, blocks)


# ---- between processes: a source's slices out, a destination's array in ----------------------------------


def slices_to_send(x: Any, transfer: attrs.Transfer) -> dict[int, np.ndarray]:
    """Every slice the plan sends, by send index, cut on the host from the shards of `x` (a jax.Array laid
    out as `transfer.src` says, all of whose devices this process holds). A replicated source tile is
    read from the device the plan chose for each send; each slice leaves once."""
    shape = tuple(transfer.shape)
    if tuple(x.shape) != shape:
        raise ValueError(f"the transfer is planned for shape {shape}, got {tuple(x.shape)}")
    src_devices = _devices_by_id(x.sharding, transfer.src, shape, "source")
    shards = {shard.device: shard.data for shard in x.addressable_shards}
    out: dict[int, np.ndarray] = {}
    tiles: dict[int, np.ndarray] = {}
    for k, send in enumerate(transfer.sends):
        if send.src not in tiles:
            tiles[send.src] = np.asarray(shards[src_devices[send.src]])
        origin, limit = device_tile(transfer, send.src, "src")
        if (tuple(send.start), tuple(send.limit)) == (origin, limit):  # the whole tile: no copy
            out[k] = tiles[send.src]
        else:
            out[k] = np.array(tiles[send.src][_local((send.start, send.limit), origin)])  # keeps 0-d
    return out


def array_from_slices(slices: Mapping[int, np.ndarray], transfer: attrs.Transfer, dst_sharding: Any) -> Any:
    """The destination value as a jax.Array with `dst_sharding` from every slice the plan sent (by send
    index): each destination device's tile is assembled from the slices it receives and, in a gather
    group, from those its group received (the all-gather inside the destination mesh)."""
    from autopar.runtime.fast_calls import put_tiles

    shape = tuple(transfer.shape)
    dst_devices = _devices_by_id(dst_sharding, transfer.dst, shape, "destination")
    received = {d: {k: slices[k] for k in incoming(transfer, d)} for d in dict.fromkeys(transfer.dst.devices)}
    gathered = all_gather(transfer, received)
    tiles = {dst_devices[d]: _tile(transfer, d, gathered[d]) for d in received}
    return put_tiles(dst_sharding, shape, tiles)


def _tile(transfer: attrs.Transfer, device: int, pieces: Mapping[int, np.ndarray]) -> np.ndarray:
    """Destination `device`'s tile: the one slice that is all of it as it is, else assembled."""
    indices = needed(transfer, device)
    if len(indices) == 1:
        s = transfer.sends[indices[0]]
        if (tuple(s.start), tuple(s.limit)) == device_tile(transfer, device, "dst"):
            return pieces[indices[0]]
    return assemble(transfer, device, pieces)
