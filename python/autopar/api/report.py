"""`plan.report(path)`: one self-contained HTML file (pictures embedded as base64 PNG, no external assets)
with the plan's text, its pictures (api/plots.py) and its tables: for a mesh plan the tensors and their
layouts and the collectives; for a pipeshard plan the stages, the transfers between them and the
schedule (predicted, and measured when a timeline is given). Written atomically."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autopar.api import gantt, plots

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #eee; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { font-size: 0.85em; color: #555; }
"""


def write_report(plan: Any, path: str | os.PathLike, timeline: Any = None) -> Path:
    """Writes the report of `plan` (an ExecutionPlan or a PipeshardExecutionPlan; `timeline`: a measured
    runtime.timeline.Timeline for the latter) to `path`."""
    return write_text(render(plan, timeline), path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    with plots.atomic_path(path, ".html") as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


def render(plan: Any, timeline: Any = None) -> str:
    """The report as one HTML string."""
    from autopar.api.pipeshard import PipeshardExecutionPlan

    pictures = [
        (title, plots.png_bytes(make()))
        for title, make in plots.figure_sections(plan, timeline, "plan.report")
    ]
    body = [f"<h1>{_e(plan.method)} plan</h1>", _section("plan", "Plan", f"<pre>{_e(str(plan))}</pre>")]
    figures = "".join(
        f'<figure><img alt="{_e(title)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{_e(title)}</figcaption></figure>"
        for title, png in pictures
    )
    body.append(_section("pictures", "Pictures", figures))
    if isinstance(plan, PipeshardExecutionPlan):
        body += _pipeshard_tables(plan, timeline)
    else:
        body += _mesh_tables(plan)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(plan.method)} plan</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _mesh_tables(plan: Any) -> list[str]:
    sizes = dict(plan.mesh_shape)
    rows = []
    for group, t in plots.layout_rows(plan):
        split = 1
        for entry in t.spec:
            for axis in plots.mesh_axes(entry):
                split *= sizes[axis]
        spec = "replicated" if all(e is None for e in t.spec) else str(t.spec)
        rows.append([group, t.path, t.role, t.dtype, f"[{', '.join(map(str, t.shape))}]", spec, f"1/{split}"])
    tensors = _table(["group", "tensor", "role", "dtype", "shape", "layout", "per device"], rows)
    compiled = _table(
        ["#", "kind", "shapes", "bytes per device", "over"],
        [
            [str(i), c.kind, " ".join(c.shapes), _num(c.bytes), ",".join(c.axes) or c.groups or "-"]
            for i, c in enumerate(plan.collectives)
        ],
    )
    planned = _table(
        ["kind", "mesh axes", "count", "bytes per device"],
        [[e.kind, ",".join(e.axes) or "-", _num(e.count), _num(e.bytes)] for e in plan.expected_collectives],
    )
    return [
        _section("tensors", "Tensors and layouts", tensors),
        _section(
            "collectives",
            "Collectives",
            "<h3>Compiled by XLA, in program order</h3>"
            + compiled
            + "<h3>Planned (cost model)</h3>"
            + planned,
        ),
    ] + _remarks(plan)


def _remarks(plan: Any) -> list[str]:
    items = "".join(f"<li>{_e(r)}</li>" for r in plan.remarks)
    return [_section("remarks", "Remarks", f"<ul>{items}</ul>")] if items else []


def _pipeshard_tables(plan: Any, timeline: Any) -> list[str]:
    stages = _table(
        [
            "stage",
            "layers",
            "submesh",
            "logical mesh",
            "devices",
            "s per micro-batch",
            "bytes per device",
            "state bytes per device",
        ],  # fmt: skip
        [
            [
                str(s.index),
                f"[{s.layers[0]}, {s.layers[1]})",
                f"{s.submesh[0]}x{s.submesh[1]}",
                f"{s.logical_mesh[0]}x{s.logical_mesh[1]}",
                ", ".join(map(str, s.device_ids)),
                f"{s.estimated_cost:.4g}",
                _num(s.estimated_memory),
                _num(s.state_memory),
            ]
            for s in plan.stages
        ],
    )
    budget = (
        f"<p>Memory budget: {_num(plan.memory_budget)} bytes per device.</p>" if plan.memory_budget else ""
    )
    transfers = _table(
        ["from stage", "to stage", "values", "bytes", "s per micro-batch"],
        [[str(t.src), str(t.dst), str(t.values), _num(t.bytes), f"{t.seconds:.3g}"] for t in plan.transfers],
    )
    sections = [
        _section("stages", "Stages", stages + budget),
        _section("transfers", "Transfers between stages", transfers),
    ]
    schedule = []
    for chart in (gantt.predicted(plan), timeline):
        if chart is None or not chart.events:
            continue
        schedule.append(
            f"<h3>{_e(chart.source)}: {chart.seconds:.4g} s, bubble {gantt.bubble(chart):.3f}</h3>"
            + _table(
                ["mesh devices", "stage", "part", "micro-batch", "start s", "end s"],
                [
                    [
                        ", ".join(map(str, e.devices)),
                        str(e.stage),
                        e.part,
                        str(e.micro_batch),
                        f"{e.start:.6g}",
                        f"{e.end:.6g}",
                    ]  # fmt: skip
                    for e in chart.events
                ],
            )
        )
    if schedule:
        sections.append(_section("schedule", "Schedule", "".join(schedule)))
    return sections + _remarks(plan)


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>\n{content}\n</section>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{_cls(c)}>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cls(cell: str) -> str:
    return ' class="num"' if cell.replace(",", "").replace(".", "").replace("e-", "").isdigit() else ""


def _num(n: int) -> str:
    return f"{n:,}"


def _e(text: Any) -> str:
    return html.escape(str(text))
