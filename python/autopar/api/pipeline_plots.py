"""Pictures of a pipeshard plan (`PipeshardExecutionPlan.plot`): the cluster's devices coloured by stage
mesh; each stage's time per micro-batch and memory per device against the budget; the schedule as a Gantt
chart, predicted (api/gantt.py) and, given a measured timeline, as it ran. matplotlib is imported on
demand (api/plots.py `new_figure`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopar.api import gantt
from autopar.api.plots import REPLICATED, STAGE_COLOURS, byte_unit, cell, image_format, new_figure, save

if TYPE_CHECKING:
    from autopar.api.pipeshard import PipeshardExecutionPlan
    from autopar.runtime.timeline import Timeline


def plot_pipeshard_plan(
    plan: PipeshardExecutionPlan, path: str | os.PathLike, timeline: Timeline | None = None
) -> Path:
    image_format(path)
    return save(pipeshard_figure(plan, timeline), path)


def pipeshard_figure(
    plan: PipeshardExecutionPlan, timeline: Timeline | None = None, what: str = "plan.plot"
) -> Any:
    """The cluster by stage, stage time and memory, the predicted (and measured) schedule, one figure."""
    charts = [gantt.predicted(plan)] + ([timeline] if timeline is not None and timeline.events else [])
    charts = [c for c in charts if c.events]
    meshes = max((len(c.meshes()) for c in charts), default=1)
    gantt_height = 0.7 + 0.45 * meshes
    fig = new_figure(what, figsize=(13, 3.4 + gantt_height * len(charts)))
    top, *rest = fig.subfigures(
        1 + len(charts), 1, height_ratios=[3.4] + [gantt_height] * len(charts), squeeze=False
    )[:, 0]
    left, right = top.subfigures(1, 2, width_ratios=[1, 1.4])
    draw_cluster(left, plan)
    draw_stage_costs(right, plan)
    for sf, chart in zip(rest, charts, strict=True):
        draw_timeline(sf, chart)
    fig.suptitle(_pipeshard_title(plan), fontsize=11)
    return fig


def _pipeshard_title(plan: PipeshardExecutionPlan) -> str:
    schedule = f", {plan.schedule}" if plan.schedule else ""
    stages, micro_batches = _count(len(plan.stages), "stage"), _count(plan.num_micro_batches, "micro-batch")
    return (
        f"{plan.method} on a {plan.cluster[0]}x{plan.cluster[1]} cluster: {stages}, "
        f"{micro_batches}{schedule}, estimated {plan.estimated_latency:.3g} s per step"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith("h") else f"{n} {noun}s"


def draw_timeline(sf: Any, timeline: Timeline) -> None:
    title = (
        "schedule as predicted (schedule core, every stage as slow as the slowest)"
        if timeline.source == "predicted"
        else f"schedule as measured ({timeline.source} runtime, each part waited for)"
    )
    gantt.draw(sf.subplots(), timeline, title)


def mesh_of(plan: PipeshardExecutionPlan) -> dict[int, int]:
    """stage index -> its mesh's index (distinct device sets in stage order): the colour of its devices,
    bars and legend entry (interleaved 1F1B runs several stages on each mesh)."""
    meshes: list[tuple[int, ...]] = []
    for s in plan.stages:
        if s.device_ids not in meshes:
            meshes.append(s.device_ids)
    return {s.index: meshes.index(s.device_ids) for s in plan.stages}


def _colour(mesh: int) -> str:
    return STAGE_COLOURS[mesh % len(STAGE_COLOURS)]


def draw_cluster(sf: Any, plan: PipeshardExecutionPlan) -> None:
    """The cluster's devices, host by host, coloured by the stage mesh that runs on them."""
    from matplotlib.patches import Patch

    ax = sf.subplots()
    hosts, per_host = plan.cluster
    mesh = mesh_of(plan)
    stages_of: dict[int, list[int]] = {}
    for s in plan.stages:
        for d in s.device_ids:
            stages_of.setdefault(d, []).append(s.index)
    for d in range(hosts * per_host):
        r, c = divmod(d, per_host)
        stages = stages_of.get(d, [])
        ax.add_patch(cell(c, r, _colour(mesh[stages[0]]) if stages else REPLICATED))
        text = f"device {d}\n" + (f"stage {','.join(map(str, stages))}" if stages else "idle")
        ax.text(
            c + 0.5, r + 0.5, text, ha="center", va="center", fontsize=7, color="white" if stages else "k"
        )
    ax.set_xlim(0, per_host)
    ax.set_ylim(hosts, 0)
    ax.set_aspect("equal")
    ax.set_xticks([c + 0.5 for c in range(per_host)], [str(c) for c in range(per_host)], fontsize=8)
    ax.set_yticks([r + 0.5 for r in range(hosts)], [f"host {r}" for r in range(hosts)], fontsize=8)
    ax.tick_params(length=0)
    entries: dict[int, list[str]] = {}
    for s in plan.stages:
        entries.setdefault(mesh[s.index], []).append(
            f"stage {s.index}: {_layers(s.layers)}, submesh {s.submesh[0]}x{s.submesh[1]}, "
            f"logical mesh {s.logical_mesh[0]}x{s.logical_mesh[1]}"
        )
    handles = [Patch(color=_colour(m), label="; ".join(texts)) for m, texts in entries.items()]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=7, frameon=False)
    ax.set_title("cluster: devices (by host) and the stages running on each", fontsize=9)


def _layers(span: tuple[int, int]) -> str:
    return f"layer {span[0]}" if span[1] - span[0] == 1 else f"layers {span[0]}-{span[1] - 1}"


def _percent(part: float, whole: float) -> str:
    share = 100 * part / whole
    return f"{share:.3g}%" if share >= 0.001 else "<0.001%"


def draw_stage_costs(sf: Any, plan: PipeshardExecutionPlan) -> None:
    """Per stage: seconds per micro-batch; bytes per device (with in-flight micro-batches, and the
    state it owns between steps) against the memory budget."""
    time_ax, memory_ax = sf.subplots(1, 2)
    x = [s.index for s in plan.stages]
    mesh = mesh_of(plan)
    colours = [_colour(mesh[i]) for i in x]
    costs = [s.estimated_cost for s in plan.stages]
    unit, size = gantt.time_unit(max(costs, default=0.0) or 1e-9)
    bars = time_ax.bar(x, [c / size for c in costs], color=colours)
    time_ax.bar_label(bars, fmt="%.3g", fontsize=7 if len(x) <= 4 else 6)
    time_ax.set_ylabel(f"{unit} per micro-batch")
    time_ax.set_title("estimated time per stage", fontsize=9)
    _stage_ticks(time_ax, x)
    budget = getattr(plan, "memory_budget", 0)
    peak = [s.estimated_memory for s in plan.stages]
    state = [s.state_memory for s in plan.stages]
    unit, size = byte_unit(max([*peak, *state, budget]) or 1)
    w = 0.38
    memory_ax.bar(
        [i - w / 2 for i in x],
        [p / size for p in peak],
        w,
        color=colours,
        label="with in-flight micro-batches",
    )
    memory_ax.bar([i + w / 2 for i in x], [s / size for s in state], w, color=colours, alpha=0.45, hatch="//",
                  label="state it owns (parameters, optimizer)")  # fmt: skip
    if budget:
        memory_ax.axhline(
            budget / size, color="#C44E52", ls="--", lw=1.2, label=f"budget {budget / size:.3g} {unit}"
        )
        if max(peak, default=0) < budget / 20:  # tiny stages under a large budget: a log scale shows both
            memory_ax.set_yscale("log")
        for i, p in zip(x, peak, strict=True):
            if len(x) <= 4:  # more would overlap: the title gives the largest share
                memory_ax.text(i - w / 2, p / size, _percent(p, budget), ha="center", va="bottom", fontsize=7)
    memory_ax.set_ylabel(f"{unit} per device")
    share = f": at most {_percent(max(peak, default=0), budget)} of the budget" if budget else ""
    memory_ax.set_title(f"estimated memory per device{share}", fontsize=9)
    memory_ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)
    _stage_ticks(memory_ax, x)


def _stage_ticks(ax: Any, x: Sequence[int]) -> None:
    ax.set_xticks(list(x), [f"stage {i}" if len(x) <= 4 else str(i) for i in x], fontsize=8)
    if len(x) > 4:
        ax.set_xlabel("stage")
    ax.grid(axis="y", alpha=0.3)
