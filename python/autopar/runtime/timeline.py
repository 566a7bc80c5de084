"""When each stage part ran in a pipelined step: the runtimes' own timestamps, recorded on request.

`executor.record_timeline = True` (or `f.record_timeline = True` on a parallelized function) makes each
step time every part it runs, waiting for the part's results before the next starts (as `profile` does,
so a mesh's parts no longer overlap their own dispatch), and keep the step's `Timeline` as
`executor.last_timeline`. Off (the default), a step records nothing. The process-per-mesh runtime's
workers report their events with the wall-clock time of their step's start, so their events share one
time axis (on one machine exactly; across hosts up to the hosts' clock offset).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from jaxlib.mlir import ir

from autopar.ir import attrs


@dataclasses.dataclass(frozen=True)
class TimelineEvent:
    """One part run: on the mesh of cluster `devices` (sorted), stage `stage`'s `part` ("forward",
    "backward", "backward_input", "backward_weight", "apply") for micro-batch `micro_batch` (-1: apply),
    from `start` to `end`, seconds from the step's start."""

    devices: tuple[int, ...]
    stage: int
    part: str
    micro_batch: int
    start: float
    end: float


@dataclasses.dataclass(frozen=True)
class Timeline:
    """A step's events (`TimelineEvent`s, by start), measured or predicted.

    Attributes:
      events: the parts run.
      source: "processes", "in-process" (measured, each part waited for) or "predicted" (simulated).
      seconds: the step's duration (the last end).
    """

    events: tuple[TimelineEvent, ...]
    source: str

    @property
    def seconds(self) -> float:
        return max((e.end for e in self.events), default=0.0)

    def meshes(self) -> list[tuple[int, ...]]:
        """The distinct meshes, by their first device."""
        return sorted({e.devices for e in self.events})

    def busy(self) -> dict[tuple[int, ...], float]:
        """Seconds each mesh ran parts."""
        out: dict[tuple[int, ...], float] = {}
        for e in self.events:
            out[e.devices] = out.get(e.devices, 0.0) + e.end - e.start
        return out


def part_of(functions: Mapping[str, ir.Operation]) -> dict[str, tuple[tuple[int, ...], int, str]]:
    """callee -> (its mesh's sorted device ids, stage, part), from the stage functions' attributes."""
    out = {}
    for name, fn in functions.items():
        mesh = attrs.get_stage_mesh(fn)
        out[name] = (tuple(sorted(mesh.device_ids)) if mesh else (), attrs.get_stage(fn), attrs.get_part(fn))
    return out


def from_events(
    events: Iterable[tuple[str, int, float, float]],
    parts: Mapping[str, tuple[tuple[int, ...], int, str]],
    offset: float = 0.0,
) -> list[TimelineEvent]:
    """(callee, micro-batch, start, end) records as TimelineEvents, shifted by `offset` seconds."""
    out = []
    for callee, m, start, end in events:
        devices, stage, part = parts[callee]
        out.append(TimelineEvent(devices, stage, part, m, start + offset, end + offset))
    return out


def make(events: Iterable[TimelineEvent], source: str) -> Timeline:
    """A timeline of these events, by start."""
    return Timeline(tuple(sorted(events, key=lambda e: (e.start, e.devices))), source)
