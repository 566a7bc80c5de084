"""Collectives in XLA's compiled HLO text: which ones, on what shapes, over which mesh axes."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Mapping

import numpy as np

COLLECTIVE_KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")

# `%name = <shape> <kind>[-start](` ; the shape may be a tuple with spaces, so match lazily up to the kind.
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<shape>.+?)\s+"
    r"(?P<kind>" + "|".join(COLLECTIVE_KINDS) + r")(?P<start>-start)?\("
)
_ARRAY = re.compile(r"\b(?P<dtype>pred|[subfc]\d+|bf16|f\d+e\w+|token)\[(?P<dims>[\d,]*)\]")
# `mesh['axis_0'=1,'axis_1'=4,'axis_2'=2], device_ids=([2,4]T(1,0)) {'axis_1'}`: XLA's own view of the
# mesh, optionally with the devices in another order (an iota, possibly transposed, or a list).
_MESH_GROUPS = re.compile(
    r"replica_groups=mesh\[(?P<mesh>[^\]]*)\]"
    r"(?:,\s*device_ids=\((?P<ids>\[[\d,]+\](?:T\([\d,]+\))?|[\d,\s]+)\))?\s*\{(?P<axes>[^}]*)\}"
)
_GROUPS = re.compile(r"replica_groups=(?P<groups>\{\{[^=]*?\}\}|\[[\d,]+\]<=\[[\d,]+\](?:T\([\d,]+\))?|\{\})")

_DTYPE_BYTES = {"pred": 1, "bf16": 2, "token": 0}


def _dtype_bytes(dtype: str) -> int:
    """Bytes per element of an HLO element type: its width is the number after its letters (`f32`, `s4`,
    `f8e4m3fn`, `f4e2m1fn`); narrower than a byte counts as one."""
    if dtype in _DTYPE_BYTES:
        return _DTYPE_BYTES[dtype]
    width = re.match(r"[a-z]+(\d+)", dtype)
    return max(1, int(width.group(1)) // 8) if width else 4


def array_bytes(shape_text: str) -> int:
    """Bytes of every array in an HLO shape (`f32[8,64]`, or a tuple of them)."""
    return sum(
        math.prod(int(d) for d in m.group("dims").split(",") if d) * _dtype_bytes(m.group("dtype"))
        for m in _ARRAY.finditer(shape_text)
    )


@dataclasses.dataclass(frozen=True)
class Collective:
    """One collective instruction of the compiled program.

    Attributes:
      kind: all-reduce, all-gather, reduce-scatter, all-to-all or collective-permute.
      name: the HLO instruction name.
      shapes: the HLO array shapes it produces (`f32[8,64]`; several when XLA combined collectives).
      bytes: bytes it produces per device.
      axes: the mesh axes it communicates over, when XLA printed its groups as mesh axes, else ().
      groups: XLA's replica-group text.
    """

    kind: str
    name: str
    shapes: tuple[str, ...]
    bytes: int
    axes: tuple[str, ...]
    groups: str


def _shapes(shape_text: str, kind: str, is_start: bool) -> list[tuple[str, int]]:
    arrays = [
        (
            m.group(0),
            math.prod(int(d) for d in m.group("dims").split(",") if d) * _dtype_bytes(m.group("dtype")),
        )
        for m in _ARRAY.finditer(shape_text)
        if m.group("dtype") != "token"
    ]
    # Async gathers/permutes return (operand, result): only the result is what the collective produces.
    if is_start and kind in ("all-gather", "collective-permute", "all-to-all") and len(arrays) > 1:
        return arrays[len(arrays) // 2 :]
    return arrays


def parse_collectives(
    hlo_text: str, mesh_shape: Mapping[str, int] | None = None, partition_grid: np.ndarray | None = None
) -> list[Collective]:
    """Every collective in `hlo_text`, in program order.

    `mesh_shape` ({axis name: size}, in order) names the axes: XLA prints groups over its own view of the
    mesh (`mesh['axis_0'=1,'axis_1'=2,'axis_2'=4] {'axis_1'}`), which may add size-1 axes or split ours.
    `partition_grid` (the partition id at each mesh position; default row-major) lets groups printed as
    device lists (`{{0,1},{2,3}}`, `[2,4]<=[8]`) be named by the axes they span too.
    """
    mesh_shape = dict(mesh_shape or {})
    if partition_grid is None and mesh_shape:
        partition_grid = np.arange(math.prod(mesh_shape.values())).reshape(tuple(mesh_shape.values()))
    found = []
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        kind = m.group("kind")
        arrays = _shapes(m.group("shape"), kind, bool(m.group("start")))
        axes: tuple[str, ...] = ()
        groups = ""
        mesh_groups = _MESH_GROUPS.search(line)
        if mesh_groups:
            ids = mesh_groups.group("ids")
            groups = f"mesh[{mesh_groups.group('mesh')}]{f', device_ids=({ids})' if ids else ''} " + (
                f"{{{mesh_groups.group('axes')}}}"
            )
            axes = _axes_of_mesh_groups(mesh_groups, mesh_shape, partition_grid)
        else:
            plain = _GROUPS.search(line)
            groups = plain.group("groups") if plain else ""
            if plain and partition_grid is not None:
                axes = _axes_of_groups(
                    _device_groups(groups, partition_grid.size), list(mesh_shape), partition_grid
                )
        found.append(
            Collective(
                kind, m.group("name"), tuple(s for s, _ in arrays), sum(b for _, b in arrays), axes, groups
            )
        )
    return found


def _axes_of_mesh_groups(
    match: re.Match, mesh_shape: Mapping[str, int], grid: np.ndarray | None
) -> tuple[str, ...]:
    """Our axes for groups printed over XLA's view of the mesh: the devices each group holds, matched
    against our mesh (XLA may merge our axes into one, split one, or order the devices otherwise), else
    XLA's axes renamed onto ours where they only split or drop size-1 axes, else XLA's names."""
    xla_axes = [
        (name.strip().strip("'"), int(size))
        for name, _, size in (part.partition("=") for part in match.group("mesh").split(","))
        if size.strip().isdigit()
    ]
    listed = [a.strip().strip("'") for a in match.group("axes").split(",") if a.strip()]
    if grid is not None and listed and all(a in dict(xla_axes) for a in listed):
        size = math.prod(s for _, s in xla_axes)
        devices = _mesh_devices(match.group("ids"), size)
        if devices is not None and size == grid.size:
            order = [name for name, _ in xla_axes]
            spanned = [order.index(a) for a in listed]
            rest = [i for i in range(len(order)) if i not in spanned]
            moved = np.moveaxis(
                devices.reshape([s for _, s in xla_axes]), rest + spanned, list(range(len(order)))
            )
            groups = moved.reshape(-1, math.prod(xla_axes[i][1] for i in spanned)).tolist()
            axes = _axes_of_groups(groups, list(mesh_shape), grid)
            if axes:
                return axes
    names = _xla_axis_names(match.group("mesh"), mesh_shape)
    return tuple(names.get(a, a) for a in listed)


def _mesh_devices(ids: str | None, size: int) -> np.ndarray | None:
    """The device at each position of XLA's mesh, flat: `device_ids` as an iota (`[2,4]T(1,0)`) or a list;
    row-major when absent; None when not understood."""
    if ids is None:
        return np.arange(size)
    m = re.fullmatch(r"\[([\d,]+)\](?:T\(([\d,]+)\))?", ids.strip())
    if m:
        devices = _iota(m.group(1), m.group(2))
        return devices.reshape(-1) if devices.size == size else None
    values = [int(v) for v in re.split(r"[,\s]+", ids.strip()) if v]
    return np.array(values) if len(values) == size else None


def _device_groups(text: str, num_partitions: int) -> list[list[int]] | None:
    """XLA's replica-group text as lists of partition ids; None when the form is not understood."""
    if text == "{}":
        return [list(range(num_partitions))]
    if text.startswith("{{"):
        return [[int(v) for v in g.split(",") if v] for g in text[2:-2].split("},{")]
    m = re.fullmatch(r"\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", text)
    if not m:
        return None
    return _iota(m.group(2), m.group(3)).reshape(int(m.group(1).split(",")[0]), -1).tolist()


def _iota(dims: str, permutation: str | None) -> np.ndarray:
    """XLA's iota device list `[dims]T(permutation)`: 0, 1, ... laid out as `dims`, then transposed."""
    ids = np.arange(math.prod(int(v) for v in dims.split(","))).reshape([int(v) for v in dims.split(",")])
    return ids.transpose([int(v) for v in permutation.split(",")]) if permutation else ids


def _axes_of_groups(
    groups: list[list[int]] | None, axis_names: list[str], grid: np.ndarray
) -> tuple[str, ...]:
    """The smallest set of mesh axes whose device groups are exactly `groups` (partition ids), else ()."""
    if groups is None:
        return ()
    wanted = {frozenset(g) for g in groups}
    for k in range(1, len(axis_names) + 1):
        for subset in itertools.combinations(range(len(axis_names)), k):
            rest = [i for i in range(len(axis_names)) if i not in subset]
            moved = np.moveaxis(grid, rest + list(subset), list(range(grid.ndim)))
            spans = {
                frozenset(g) for g in moved.reshape(-1, math.prod(grid.shape[i] for i in subset)).tolist()
            }
            if spans == wanted:
                return tuple(axis_names[i] for i in subset)
    return ()


def _xla_axis_names(mesh_text: str, mesh_shape: Mapping[str, int]) -> dict[str, str]:
    """Maps XLA's axis names onto ours: size-1 axes dropped, consecutive XLA axes grouped to match each
    of our axes in order (a split axis's parts are named `y[0]`, `y[1]`). Unmatched -> {} (raw names)."""
    xla_axes = []
    for part in mesh_text.split(","):
        name, _, size = part.partition("=")
        if size.strip().isdigit() and int(size) > 1:
            xla_axes.append((name.strip().strip("'"), int(size)))
    names: dict[str, str] = {}
    k = 0
    for ours, size in mesh_shape.items():
        if size == 1:
            continue
        group = []
        product = 1
        while k < len(xla_axes) and product < size:
            group.append(xla_axes[k][0])
            product *= xla_axes[k][1]
            k += 1
        if product != size:
            return {}
        for j, xla_name in enumerate(group):
            names[xla_name] = ours if len(group) == 1 else f"{ours}[{j}]"
    return names if k == len(xla_axes) else {}


def count_collectives(hlo_text: str) -> dict[str, int]:
    """{kind: count} over every kind (zeros included), from the compiled HLO text."""
    counts = dict.fromkeys(COLLECTIVE_KINDS, 0)
    for c in parse_collectives(hlo_text):
        counts[c.kind] += 1
    return counts
