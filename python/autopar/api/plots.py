"""Pictures of a plan (`plan.plot(path)`), drawn with matplotlib (the `plot` extra), which only these
functions import: `import autopar` never does.

A mesh plan (`ExecutionPlan`), here: the mesh's devices; the collectives by kind and mesh axes, bytes
per device, planned beside compiled; every argument, result and activation as a row of its dims, each
cell coloured by the mesh axes that split that dim (rows grouped by layer, `layer_of`, so a weight sits
beside its optimizer state and its update; one row per distinct layout in a group). A pipeshard plan's
pictures are api/pipeline_plots.py's; the helpers here (matplotlib on demand, atomic writes) serve both,
and `figure_sections` lists the report's.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopar.api import gantt
from autopar.runtime.hlo import COLLECTIVE_KINDS

if TYPE_CHECKING:
    from autopar.api.plan import ExecutionPlan, TensorPlacement
    from autopar.runtime.timeline import Timeline

FORMATS = (".png", ".svg", ".pdf")
MAX_ROWS = 96  # rows drawn in the layout grid; the report's table lists every tensor
STAGE_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
REPLICATED = "#E8E8E8"
ACTIVATIONS, GRADIENTS = "activations (forward dots)", "gradients (backward dots)"


def new_figure(what: str, **options: Any) -> Any:
    """A matplotlib Figure (`matplotlib.figure.Figure`: no pyplot, so no backend is chosen or changed and
    no window opens; PNG is drawn by Agg), or a clear error naming the extra when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"{what} needs matplotlib: pip install 'autopar[plot]'") from None
    return Figure(layout="constrained", **options)


def image_format(path: str | os.PathLike) -> str:
    """The suffix of `path` when plan.plot writes it, else a ValueError (before anything is drawn)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"plan.plot writes {', '.join(FORMATS)} files (by suffix), not {str(path)!r}")
    return suffix


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str) -> Iterator[str]:
    """A temporary file beside `path` that replaces it when the block succeeds and is removed when it
    fails: `path` is never left half written."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        # mkstemp would name its own hidden temporary file, not the folder the caller has to create.
        raise FileNotFoundError(f"no folder {folder} to write {target.name} into: create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent or ".")
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as a plain open() would have made it, not mkstemp's 0600
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save(fig: Any, path: str | os.PathLike) -> Path:
    """Writes `fig` to `path` (PNG, SVG or PDF by its suffix) atomically."""
    suffix = image_format(path)
    with atomic_path(path, suffix) as tmp:
        extra = {"pil_kwargs": {"optimize": True}} if suffix == ".png" else {}
        fig.savefig(tmp, format=suffix[1:], dpi=110, bbox_inches="tight", **extra)
    return Path(path)


def png_bytes(fig: Any) -> bytes:
    """`fig` as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


# ---- a mesh plan ------------------------------------------------------------------------------------------


def plot_mesh_plan(plan: ExecutionPlan, path: str | os.PathLike) -> Path:
    image_format(path)
    return save(mesh_plan_figure(plan), path)


def mesh_plan_figure(plan: ExecutionPlan, what: str = "plan.plot") -> Any:
    """The mesh, the layout grid and the collectives, one figure."""
    rows = len(layout_lines(plan)[:MAX_ROWS])
    head = max(3.0, 0.8 + 0.4 * len(collective_table(plan)[0]))
    fig = new_figure(what, figsize=(13, head + 0.2 + 0.24 * rows))
    top, bottom = fig.subfigures(2, 1, height_ratios=[head, 0.24 * rows + 0.6])
    left, right = top.subfigures(1, 2, width_ratios=[1, 2])
    draw_mesh(left, plan)
    draw_collectives(right, plan)
    draw_layouts(bottom, plan)
    fig.suptitle(_mesh_title(plan), fontsize=11)
    return fig


def _mesh_title(plan: ExecutionPlan) -> str:
    mesh = " x ".join(f"{a}={n}" for a, n in plan.mesh_shape.items())
    cost = f", estimated {plan.estimated_cost:.3g} s" if plan.estimated_cost is not None else ""
    return f"{plan.method} on mesh {mesh} (solver {plan.solver_status}{cost})"


def axis_colours(plan: ExecutionPlan) -> dict[tuple[str, ...], str]:
    """A colour per set of mesh axes splitting some dim (one axis each first, in mesh order)."""
    palette = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#CCB974"]
    seen = [(a,) for a in plan.mesh_shape]
    for t in (*plan.inputs, *plan.outputs, *plan.activations):
        for entry in t.spec:
            axes = mesh_axes(entry)
            if axes and axes not in seen:
                seen.append(axes)
    return {axes: palette[i % len(palette)] for i, axes in enumerate(seen)}


def mesh_axes(entry: Any) -> tuple[str, ...]:
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def draw_mesh(sf: Any, plan: ExecutionPlan) -> None:
    """The devices in mesh order: rows along the first axis, columns along the others."""
    ax = sf.subplots()
    sizes = list(plan.mesh_shape.values()) or [1]
    names = list(plan.mesh_shape) or ["-"]
    rows, cols = sizes[0], math.prod(sizes[1:]) if len(sizes) > 1 else 1
    if len(sizes) == 1:  # one axis: a row of devices
        rows, cols = 1, sizes[0]
    for i, device in enumerate(plan.device_ids):
        r, c = divmod(i, cols)
        ax.add_patch(cell(c, r, "#DCE6F2"))
        ax.text(c + 0.5, r + 0.5, f"device {device}", ha="center", va="center", fontsize=8)
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_aspect("equal")
    ax.set_xticks([c + 0.5 for c in range(cols)], [str(c) for c in range(cols)], fontsize=8)
    ax.set_yticks([r + 0.5 for r in range(rows)], [str(r) for r in range(rows)], fontsize=8)
    if len(sizes) == 1:
        ax.set_xlabel(f"mesh axis {names[0]}")
    else:
        ax.set_ylabel(f"mesh axis {names[0]}")
        ax.set_xlabel("mesh axis " + " x ".join(names[1:]))
    ax.tick_params(length=0)
    ax.set_title("devices in mesh order", fontsize=9)


def cell(x: float, y: float, colour: str, w: float = 1.0, h: float = 1.0) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x + 0.03, y + 0.05), w - 0.06, h - 0.1, facecolor=colour, edgecolor="#555555", lw=0.5)


def collective_table(plan: ExecutionPlan) -> tuple[list[tuple[str, str]], dict, dict]:
    """(kind, mesh axes) keys in kind order, and per key [count, bytes per device] compiled and planned."""
    compiled: dict[tuple[str, str], list[int]] = {}
    for c in plan.collectives:
        over = ",".join(c.axes) if c.axes else ("groups" if c.groups else "-")
        entry = compiled.setdefault((c.kind, over), [0, 0])
        entry[0], entry[1] = entry[0] + 1, entry[1] + c.bytes
    planned: dict[tuple[str, str], list[int]] = {}
    for e in plan.expected_collectives:
        entry = planned.setdefault((e.kind, ",".join(e.axes) or "-"), [0, 0])
        entry[0], entry[1] = entry[0] + e.count, entry[1] + e.bytes
    keys = sorted(set(compiled) | set(planned), key=lambda k: (COLLECTIVE_KINDS.index(k[0]), k[1]))
    return keys, compiled, planned


def draw_collectives(sf: Any, plan: ExecutionPlan) -> None:
    """Bytes per device by (kind, mesh axes): what XLA compiled beside what the plan priced."""
    ax = sf.subplots()
    keys, compiled, planned = collective_table(plan)
    if not keys:
        ax.text(0.5, 0.5, "no collectives: every device computes alone", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title("communication", fontsize=9)
        return
    unit, size = byte_unit(max(v[1] for v in (*compiled.values(), *planned.values())) or 1)
    y = list(range(len(keys)))
    for offset, (label, table, colour) in enumerate(
        (("compiled (XLA)", compiled, "#C44E52"), ("planned (cost model)", planned, "#8C8C8C"))
    ):
        values = [table.get(k, [0, 0]) for k in keys]
        bars = ax.barh(
            [v - 0.2 + 0.4 * offset for v in y],
            [b / size for _, b in values],
            0.38,
            color=colour,
            label=label,
        )
        for bar, (count, _) in zip(bars, values, strict=True):
            if count:
                ax.text(
                    bar.get_width(),
                    bar.get_y() + bar.get_height() / 2,
                    f" {count} x",
                    va="center",
                    fontsize=7,
                )
    ax.set_yticks(y, [f"{kind} over {over}" for kind, over in keys], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{unit} per device per step")
    ax.margins(x=0.15)
    ax.legend(fontsize=7, loc="lower right", frameon=False)
    total = sum(c.bytes for c in plan.collectives)
    ax.set_title(
        f"communication: {len(plan.collectives)} compiled collectives, {total / size:.3g} {unit} per device",
        fontsize=9,
    )


def byte_unit(n: float) -> tuple[str, float]:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return unit, size
    return "bytes", 1


_TOKEN = re.compile(r"\[[^\[\]]*\]|\.\w+|^\w+")


def layer_of(path: str) -> str:
    """The layer a tensor belongs to, from its pytree path: the first key after its container (the last
    attribute, `.mu`, `.params`; else the argument's name, or `out` and its output index), Flax's
    ['params'] skipped. `params[1]`, `opt_state[0].mu[1]` and `out[0][1]` are in "[1]";
    `state.params['params']['Block_0']['Dense_0']['kernel']` and its Adam state in "['Block_0']"."""
    tokens = _TOKEN.findall(path)
    attributes = [i for i, t in enumerate(tokens) if t.startswith(".")]
    anchor = attributes[-1] if attributes else (1 if tokens[:1] == ["out"] else 0)
    rest = [t for t in tokens[anchor + 1 :] if t != "['params']"] or tokens[1:]  # `out['w1']`: a dict out
    return rest[0] if rest else "other"


def layout_rows(plan: ExecutionPlan) -> list[tuple[str, TensorPlacement]]:
    """(group, tensor) for every argument, result and activation: grouped by layer (`layer_of`; an
    activation by the module its op's name stack names), then the batch, the other activations and
    gradients, then scalars; inputs, outputs, activations in that order within a group."""
    groups: dict[str, list[TensorPlacement]] = {}
    for t in (*plan.inputs, *plan.outputs):
        group = "batch" if t.role == "batch" else "scalars" if not t.shape else layer_of(t.path)
        groups.setdefault(group, []).append(t)
    modules = {g[2:-2]: g for g in groups if g.startswith("['")}  # "['Block_0']" -> "Block_0"
    for t in plan.activations:
        # An op whose name stack names a layer's module (`jvp(Model)/Block_0/Dense_0/dot_general`) joins
        # that layer; the others (no module names: a plain function) are listed apart.
        names = [n for n in re.split(r"[/()]", t.path) if n in modules]
        forward = t.path.startswith("forward")
        group = modules[names[0]] if names else ACTIVATIONS if forward else GRADIENTS
        groups.setdefault(group, []).append(t)
    last = ("batch", ACTIVATIONS, GRADIENTS, "other", "scalars")
    order = [g for g in groups if g not in last] + [g for g in last if g in groups]
    return [(g, t) for g in order for t in groups[g]]


def layout_lines(plan: ExecutionPlan) -> list[tuple[str, TensorPlacement, int]]:
    """The picture's rows: (group, tensor, how many more of its group have its shape, dtype and layout),
    one row per distinct layout in a group (a weight's optimizer state and update mostly share it)."""
    lines: dict[tuple, list] = {}
    for group, t in layout_rows(plan):
        key = (
            group,
            t.shape,
            t.dtype,
            tuple(mesh_axes(e) for e in t.spec) if t.role in ("parameter", "output") else t.path,
        )
        if key in lines:
            lines[key][2] += 1
        else:
            lines[key] = [group, t, 0]
    return [(g, t, n) for g, t, n in lines.values()]


def draw_layouts(sf: Any, plan: ExecutionPlan) -> None:
    """A row per tensor, a cell per dim (its size, and the mesh axes splitting it)."""
    from matplotlib.patches import Patch

    ax = sf.subplots()
    rows = layout_lines(plan)
    shown = rows[:MAX_ROWS]
    colours = axis_colours(plan)
    sizes = dict(plan.mesh_shape)
    dims = max((len(t.shape) for _, t, _ in shown), default=1) or 1
    labels, previous = [], None
    for r, (group, t, alike) in enumerate(shown):
        if group != previous:
            ax.axhline(r, color="#333333", lw=0.8)
            name = group if group in ("batch", "other", "scalars") or " " in group else f"layer {group}"
            ax.text(-0.05, r + 0.5, name, ha="right", va="center", fontsize=8, weight="bold",
                    transform=ax.get_yaxis_transform())  # fmt: skip
            previous = group
        split = 1
        for d in range(max(len(t.shape), 1)):
            if not t.shape:
                ax.add_patch(cell(0, r, REPLICATED))
                ax.text(0.5, r + 0.5, "scalar", ha="center", va="center", fontsize=7)
                break
            axes = mesh_axes(t.spec[d]) if d < len(t.spec) else ()
            parts = math.prod(sizes[a] for a in axes)
            split *= parts
            ax.add_patch(cell(d, r, colours.get(axes, REPLICATED) if axes else REPLICATED))
            text = f"{t.shape[d]}" if not axes else f"{t.shape[d]} / {','.join(axes)} = {t.shape[d] // parts}"
            ax.text(d + 0.5, r + 0.5, text, ha="center", va="center", fontsize=7,
                    color="white" if axes else "black")  # fmt: skip
        more = f", +{alike} alike" if alike else ""
        labels.append(f"{t.path}  {t.dtype}  ({'1' if split == 1 else f'1/{split}'} per device{more})")
    ax.set_xlim(0, dims)
    ax.set_ylim(len(shown), 0)
    ax.set_yticks([r + 0.5 for r in range(len(shown))], labels, fontsize=7)
    ax.yaxis.tick_right()
    ax.set_xticks([d + 0.5 for d in range(dims)], [f"dim {d}" for d in range(dims)], fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ("left", "right", "bottom", "top"):
        ax.spines[side].set_visible(False)
    handles = [Patch(color=c, label=f"split over {','.join(a)} ({math.prod(sizes[x] for x in a)})")
               for a, c in colours.items() if any(_used(plan, a))]  # fmt: skip
    handles.append(Patch(facecolor=REPLICATED, edgecolor="#555555", label="not split (replicated)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.01), ncol=len(handles), fontsize=7,
              frameon=False)  # fmt: skip
    more = f"; {len(rows) - len(shown)} more rows in plan.report's table" if len(rows) > len(shown) else ""
    ax.set_title(
        "layouts: each tensor's dims and the mesh axes splitting them (+N alike: tensors of the group with "
        f"that shape and layout, e.g. optimizer state, updates){more}",
        fontsize=9,
        pad=18,
    )


def _used(plan: ExecutionPlan, axes: tuple[str, ...]) -> Iterator[bool]:
    return (mesh_axes(e) == axes for t in (*plan.inputs, *plan.outputs, *plan.activations) for e in t.spec)


def figure_sections(plan: Any, timeline: Timeline | None, what: str) -> list[tuple[str, Callable[[], Any]]]:
    """The report's pictures: (title, a function drawing it as its own figure)."""
    from autopar.api import pipeline_plots as pp
    from autopar.api.pipeshard import PipeshardExecutionPlan

    new_figure(what)  # the clear error, before anything else, when matplotlib is missing

    def one(draw: Callable[[Any], None], w: float, h: float) -> Callable[[], Any]:
        def make() -> Any:
            fig = new_figure(what, figsize=(w, h))
            draw(fig)
            return fig

        return make

    if isinstance(plan, PipeshardExecutionPlan):
        sections = [
            ("Cluster and stages", one(lambda f: pp.draw_cluster(f, plan), 7, 3.6)),
            ("Stage time and memory", one(lambda f: pp.draw_stage_costs(f, plan), 10, 3.6)),
        ]
        for chart in (gantt.predicted(plan), timeline):
            if chart is not None and chart.events:
                height = 1.2 + 0.5 * len(chart.meshes())
                name = "Schedule (predicted)" if chart.source == "predicted" else "Schedule (measured)"
                sections.append((name, one(lambda f, c=chart: pp.draw_timeline(f, c), 13, height)))
        return sections
    rows = len(layout_lines(plan)[:MAX_ROWS])
    return [
        ("Mesh", one(lambda f: draw_mesh(f, plan), 6, 3)),
        (
            "Communication",
            one(lambda f: draw_collectives(f, plan), 9, max(3.0, 0.8 + 0.4 * len(collective_table(plan)[0]))),
        ),
        ("Layouts", one(lambda f: draw_layouts(f, plan), 13, 1.0 + 0.24 * rows)),
    ]
