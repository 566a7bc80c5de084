"""Measured collective times: a calibrated profile's per-size samples, priced by interpolation.

One alpha and beta per collective cannot follow a CPU host's collectives from 1 KiB to 64 MiB: up to a
few MiB per device the bytes move through the caches, beyond that at memory speed, 4-6x slower per byte
(docs/cost_model.md, "Measured collective tables"). The least-squares line, weighted so that small sizes
count, then prices a 10 MiB gradient all-reduce at half of what it takes. A `CollectiveTable` keeps what
`python -m autopar.calibrate` measured for one collective kind over one set of mesh axes, and prices a
size between two samples on the straight line through them; below the smallest sample it costs the
smallest sample's time (the latency floor), above the largest it follows the last segment's slope.
Times are made non-decreasing in size first (a later sample faster than an earlier one is noise).

A table may also carry `merged_operand`: the seconds each further collective of its kind adds when a step
ends with several independent ones (the parameter gradients), which XLA may merge into one. On an
accelerator the merged collective pays one latency; XLA's CPU runtime still meets once per operand, so
32 gradient all-reduces over 8 devices cost 32 latencies merged or not (docs/cost_model.md, "Merged
gradient collectives"). `python -m autopar.calibrate` measures it; without it merging is priced as one
latency.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class CollectiveTable:
    """Measured seconds of `kind` over the mesh axes `axes` (indices, ascending) at `sizes` bytes per
    device (the cost model's convention: an all-reduce's or all-to-all's buffer, an all-gather's output, a
    reduce-scatter's input)."""

    kind: str
    axes: tuple[int, ...]
    sizes: tuple[float, ...]
    seconds: tuple[float, ...]
    merged_operand: float = 0.0  # seconds per further operand of a merged collective (module docstring)

    def __post_init__(self) -> None:
        where = f"{self.kind} table over axes {list(self.axes)}"
        if not self.merged_operand >= 0:  # also refuses NaN
            raise ValueError(f"{where}: merged_operand must be >= 0 seconds")
        if not self.sizes or len(self.sizes) != len(self.seconds):
            raise ValueError(f"{where}: needs as many times as sizes, at least one")
        if any(b <= a for a, b in zip(self.sizes, self.sizes[1:], strict=False)) or self.sizes[0] <= 0:
            raise ValueError(f"{where}: sizes must be positive and distinct")
        if any(s < 0 for s in self.seconds):
            raise ValueError(f"{where}: times must be >= 0")
        if not self.axes or list(self.axes) != sorted(set(self.axes)):
            raise ValueError(f"{self.kind} table: axes {list(self.axes)} must be distinct and ascending")
        running, floored = 0.0, []
        for s in self.seconds:
            running = max(running, s)
            floored.append(running)
        object.__setattr__(self, "seconds", tuple(floored))

    def at(self, num_bytes: float) -> float:
        """Seconds at `num_bytes` per device, interpolated."""
        sizes, seconds = self.sizes, self.seconds
        if num_bytes <= sizes[0] or len(sizes) == 1:
            return seconds[0] if num_bytes <= sizes[0] else seconds[0] * num_bytes / sizes[0]
        i = min(bisect.bisect_left(sizes, num_bytes), len(sizes) - 1)  # the segment (i-1, i)
        if sizes[i] == num_bytes:  # a measured size: its own time, without rounding
            return seconds[i]
        slope = (seconds[i] - seconds[i - 1]) / (sizes[i] - sizes[i - 1])
        return seconds[i - 1] + slope * (num_bytes - sizes[i - 1])


TABLE_KEYS = frozenset({"axes", "samples", "merged_operand"})


def find(tables: Sequence[CollectiveTable], kind: str, axes: Sequence[int]) -> CollectiveTable | None:
    """The table of `kind` over exactly the axes `axes`, if measured."""
    wanted = tuple(sorted(axes))
    return next((t for t in tables if t.kind == kind and t.axes == wanted), None)


def from_profile(kind: str, entries, num_axes: int) -> tuple[CollectiveTable, ...]:
    """The tables of a profile's `mesh.collectives.<kind>.tables`: [{"axes": [0], "samples": [[bytes,
    seconds], ...], "merged_operand": seconds (optional)}, ...]. ValueError names what is wrong."""
    if not isinstance(entries, list):
        raise ValueError(f"mesh.collectives.{kind}.tables must be a list")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not {"axes", "samples"} <= set(entry) <= TABLE_KEYS:
            raise ValueError(
                f"mesh.collectives.{kind}.tables: each entry has 'axes' and 'samples' (and optionally "
                "'merged_operand'), nothing else"
            )
        axes = tuple(int(a) for a in entry["axes"])
        if any(not 0 <= a < num_axes for a in axes):
            raise ValueError(
                f"mesh.collectives.{kind}.tables: axes {list(axes)} outside a {num_axes}-axis mesh"
            )
        samples = sorted((float(b), float(s)) for b, s in entry["samples"])
        sizes, seconds = tuple(b for b, _ in samples), tuple(s for _, s in samples)
        try:
            merged_operand = float(entry.get("merged_operand", 0.0))
        except (TypeError, ValueError):
            raise ValueError(
                f"mesh.collectives.{kind}.tables: merged_operand must be seconds, a number"
            ) from None
        out.append(CollectiveTable(kind, axes, sizes, seconds, merged_operand))
    return tuple(out)


def regrouped(
    tables: Sequence[CollectiveTable], groups: Sequence[Sequence[int]]
) -> tuple[CollectiveTable, ...]:
    """The tables of a coarser mesh whose axis i is the original axes `groups[i]` used together: a table
    carries over when its axes are a union of whole groups."""
    out = []
    for table in tables:
        chosen = [i for i, g in enumerate(groups) if set(g) <= set(table.axes)]
        if sorted(a for i in chosen for a in groups[i]) == list(table.axes):
            out.append(dataclasses.replace(table, axes=tuple(chosen)))
    return tuple(out)
