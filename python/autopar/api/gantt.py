"""The pipeline schedule as a Gantt chart: predicted from a PipeshardExecutionPlan (the schedule core's
simulation of the programs autopar-schedule writes) or measured (a step run with `record_timeline`,
runtime/timeline.py). Drawing needs matplotlib (api/plots.py imports it); `predicted` does not."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autopar.runtime.timeline import Timeline, TimelineEvent, make

if TYPE_CHECKING:
    from autopar.api.pipeshard import PipeshardExecutionPlan

# One colour per part; the micro-batch number is written in its box.
PART_COLOURS = {
    "forward": "#4C72B0",
    "backward": "#DD8452",
    "backward_input": "#DD8452",
    "backward_weight": "#55A868",
    "apply": "#8172B3",
}


def durations(schedule: str, slowest: float) -> dict[str, float]:
    """The part durations behind `estimated_bubble` and the predicted chart: every stage as slow as the
    slowest (`slowest` seconds per micro-batch), a forward a third of it, a backward two thirds (zb-h1:
    each half a third), apply parts free."""
    if schedule == "zb-h1":
        return {"forward": slowest / 3, "backward": slowest / 3, "backward_weight": slowest / 3, "apply": 0.0}
    return {"forward": slowest / 3, "backward": 2 * slowest / 3, "backward_weight": 0.0, "apply": 0.0}


def predicted(plan: PipeshardExecutionPlan) -> Timeline:
    """The schedule of `plan` simulated by the C++ schedule core (`_core.simulate_schedule`) under
    `durations`: one event per instruction of each mesh's program (zero-length apply parts kept)."""
    from autopar import _core

    if not plan.schedule or not plan.stages:
        return Timeline((), "predicted")
    meshes: list[tuple[int, ...]] = []
    for s in plan.stages:
        if s.device_ids not in meshes:
            meshes.append(s.device_ids)
    chunks = len(plan.stages) // len(meshes)
    built = _core.build_schedule(plan.schedule, len(meshes), plan.num_micro_batches, chunks)
    slowest = max(s.estimated_cost for s in plan.stages)
    run = _core.simulate_schedule(built, **durations(plan.schedule, slowest))
    events = [
        TimelineEvent(
            tuple(sorted(plan.stages[ins.stage].device_ids)), ins.stage, ins.part, ins.micro_batch, start, end
        )
        for program, starts, ends in zip(built.program, run.start, run.end, strict=True)
        for ins, start, end in zip(program, starts, ends, strict=True)
    ]
    return make(events, "predicted")


def bubble(timeline: Timeline) -> float:
    """Idle time over busy time on the timeline's meshes (0 when nothing ran)."""
    busy = sum(timeline.busy().values())
    meshes = len(timeline.meshes())
    return (meshes * timeline.seconds - busy) / busy if busy > 0 else 0.0


def time_unit(seconds: float) -> tuple[str, float]:
    """A readable unit for a span of `seconds`: (name, seconds per unit)."""
    for name, size in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= 2 * size:
            return name, size
    return "ns", 1e-9


def draw(ax: Any, timeline: Timeline, title: str) -> None:
    """One row per mesh (by first device), one box per part, coloured by part, labelled by micro-batch
    (and stage, when a mesh runs several)."""
    from matplotlib.patches import Patch

    meshes = timeline.meshes()
    unit, size = time_unit(timeline.seconds or 1e-9)
    stages_on = {m: {e.stage for e in timeline.events if e.devices == m} for m in meshes}
    row = {m: i for i, m in enumerate(meshes)}
    span = (timeline.seconds or 1e-9) / size
    for e in timeline.events:
        width = (e.end - e.start) / size
        y = row[e.devices]
        ax.broken_barh(
            [(e.start / size, max(width, span * 1e-3))],
            (y - 0.4, 0.8),
            facecolors=PART_COLOURS.get(e.part, "#999999"),
            edgecolors="white",
            linewidth=0.6,
        )
        label = "A" if e.micro_batch < 0 else str(e.micro_batch)
        if len(stages_on[e.devices]) > 1 and e.micro_batch >= 0:
            label += f"\ns{e.stage}"
        if width > span * (0.008 * len(label.split("\n")[0]) + 0.004):
            ax.text(e.start / size + width / 2, y, label, ha="center", va="center", fontsize=7, color="white")
    ax.set_yticks(range(len(meshes)))
    ax.set_yticklabels([_mesh_label(m, stages_on[m]) for m in meshes], fontsize=8)
    ax.set_ylim(len(meshes) - 0.5, -0.5)
    ax.set_xlim(0, span * 1.01)
    ax.set_xlabel(f"time ({unit}) from the step's start")
    busy = ", ".join(f"{timeline.busy()[m] / size:.3g}" for m in meshes)
    ax.set_title(
        f"{title}: {span:.3g} {unit}, bubble {bubble(timeline):.3f} (idle / busy), "
        f"busy {unit} per mesh {busy}",
        fontsize=9,
    )
    present = sorted({e.part for e in timeline.events if e.end > e.start}, key=list(PART_COLOURS).index)
    handles = [Patch(color=PART_COLOURS[p], label=p.replace("_", " ")) for p in present if p in PART_COLOURS]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    ax.grid(axis="x", alpha=0.3)


def _mesh_label(devices: tuple[int, ...], stages: set[int]) -> str:
    ids = f"{devices[0]}-{devices[-1]}" if len(devices) > 2 else ",".join(map(str, devices))
    return f"mesh {ids}\nstage {','.join(map(str, sorted(stages)))}"
