"""Where each compiled collective comes from (`collective_sources`), and what differs between two plans
(`ExecutionPlan.diff`).

XLA keeps each instruction's origin in the compiled HLO text: `metadata={op_name="jit(step)/jvp()/dot_general"
stack_frame_id=13}`, with the frame table (`FileNames`, `FunctionNames`, `FileLocations`, `StackFrames`)
printed above the computations. A collective's source is the innermost frame of its stack outside jax's
and autopar's own files: the user's line that produced the op whose result it communicates.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from autopar.errors import is_library_frame
from autopar.runtime.hlo import COLLECTIVE_KINDS

if TYPE_CHECKING:
    from autopar.api.plan import ExecutionPlan

_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*.+?\s+(?:" + "|".join(COLLECTIVE_KINDS) + r")(?:-start)?\("
)
_OP_NAME = re.compile(r'metadata=\{[^}]*?op_name="(?P<op>(?:[^"\\]|\\.)*)"')  # HLO escapes quotes: \'
_ESCAPE = re.compile(r"\\(.)")
_FRAME_ID = re.compile(r"metadata=\{[^}]*?stack_frame_id=(?P<id>\d+)")
_SOURCE = re.compile(r'metadata=\{[^}]*?source_file="(?P<file>[^"]*)"[^}]*?source_line=(?P<line>\d+)')
_TABLE_ROW = re.compile(r"^(?P<id>\d+) (?P<rest>.*)$")


@dataclasses.dataclass(frozen=True)
class CollectiveSource:
    """Where a compiled collective comes from: JAX's op name (`jit(step)/jvp()/dot_general`) and the
    user's source line (file, line; '' and 0 when XLA kept none)."""

    op_name: str
    file: str
    line: int

    def names(self) -> list[str]:
        """The JAX op names, without the `jit(f)/` prefix: several when XLA combined ops into one
        collective (it writes `jit(f)/(a:b:c)`)."""
        joined = self.op_name.split("/", 1)[-1] if self.op_name.startswith("jit(") else self.op_name
        joined = joined[1:-1] if joined.startswith("(") and joined.endswith(")") else joined
        return [n for n in joined.split(":") if n]

    def __str__(self) -> str:
        where = f"{self.file.rsplit('/', 1)[-1]}:{self.line}" if self.file else "unknown line"
        names = self.names()
        if not names:
            return where
        more = f" and {len(names) - 1} more" if len(names) > 1 else ""
        return f"{where} ({names[0]}{more})"


def _frame_tables(text: str) -> dict[int, tuple[str, int]]:
    """stack frame id -> (file, line) of the innermost user frame of that stack."""
    sections: dict[str, dict[int, str]] = {}
    current = None
    for line in text.splitlines():
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            current = sections.setdefault(line, {})
            continue
        if current is None:
            continue
        m = _TABLE_ROW.match(line)
        if not m:
            current = None if line.strip() else current
            continue
        current[int(m.group("id"))] = m.group("rest")
    files = {i: v.strip('"') for i, v in sections.get("FileNames", {}).items()}
    locations = {}
    for i, v in sections.get("FileLocations", {}).items():
        fields = dict(re.findall(r"(\w+)=(\d+)", v))
        locations[i] = (files.get(int(fields.get("file_name_id", 0)), ""), int(fields.get("line", 0)))
    parents = {}
    for i, v in sections.get("StackFrames", {}).items():
        fields = dict(re.findall(r"(\w+)=(\d+)", v))
        parents[i] = (int(fields.get("file_location_id", 0)), int(fields.get("parent_frame_id", 0)))
    out = {}
    for frame in parents:
        chain, seen, f = [], set(), frame
        while f in parents and f not in seen:
            seen.add(f)
            location, parent = parents[f]
            if location in locations:
                chain.append(locations[location])
            f = parent
        user = [c for c in chain if not is_library_frame(c[0])]
        if chain:
            out[frame] = (user or chain)[0]
    return out


def collective_sources(hlo_text: str) -> dict[str, CollectiveSource]:
    """{collective instruction name: its source} over XLA's compiled HLO text."""
    frames = _frame_tables(hlo_text)
    out = {}
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        op = _OP_NAME.search(line)
        file, number = "", 0
        direct = _SOURCE.search(line)
        frame = _FRAME_ID.search(line)
        if direct:
            file, number = direct.group("file"), int(direct.group("line"))
        elif frame and int(frame.group("id")) in frames:
            file, number = frames[int(frame.group("id"))]
        op_name = _ESCAPE.sub(r"\1", op.group("op")) if op else ""
        out[m.group("name")] = CollectiveSource(op_name, file, number)
    return out


def collectives_of(plan: ExecutionPlan, node) -> tuple[str, ...]:
    """The compiled collectives whose source is this node's op: the same JAX op name and user line."""
    if node.op is None or not plan.collective_sources:
        return ()
    location = str(node.location)
    out = []
    for c, source in zip(plan.collectives, plan.collective_sources, strict=False):
        if source is None or not any(f'/{name}"' in location for name in source.names()):
            continue
        if source.file and f'{source.file}":{source.line}:' not in location:
            continue
        over = f" over {','.join(c.axes)}" if c.axes else (f" groups {c.groups}" if c.groups else "")
        out.append(f"{c.kind} {' '.join(c.shapes)}{over} <- {source}")
    return tuple(out)


# ---- diff -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayoutChange:
    """A tensor whose PartitionSpec differs between two plans ('' when a plan lacks the tensor)."""

    path: str
    before: str
    after: str


@dataclasses.dataclass(frozen=True)
class PlanDiff:
    """What changes from one plan (`before`) to another (`after`).

    Attributes:
      mesh: the two meshes as text, equal when unchanged.
      layouts: tensors (inputs and outputs, by path) whose layouts differ.
      collectives: {kind: (count before, count after)} of compiled collectives, kinds that changed.
      collective_bytes: bytes per device of all compiled collectives, before and after.
      cost / bound: the estimated cost and lower bound before and after (None: no solver ran).
    """

    mesh: tuple[str, str]
    layouts: tuple[LayoutChange, ...]
    collectives: dict[str, tuple[int, int]]
    collective_bytes: tuple[int, int]
    cost: tuple[float | None, float | None]
    bound: tuple[float | None, float | None]

    @property
    def cost_delta(self) -> float | None:
        a, b = self.cost
        return None if a is None or b is None else b - a

    def __str__(self) -> str:
        lines = [f"mesh: {self.mesh[0]}" + ("" if self.mesh[0] == self.mesh[1] else f" -> {self.mesh[1]}")]
        lines.append(f"cost: {_seconds(self.cost[0])} -> {_seconds(self.cost[1])}{_delta(*self.cost)}")
        lines.append(f"bound: {_seconds(self.bound[0])} -> {_seconds(self.bound[1])}{_delta(*self.bound)}")
        lines.append(f"layouts that differ: {len(self.layouts)}")
        width = max((len(c.path) for c in self.layouts), default=0)
        for c in self.layouts:
            lines.append(f"  {c.path:<{width}}  {c.before or '(absent)'} -> {c.after or '(absent)'}")
        lines.append("collectives:" + ("" if self.collectives else " the same kinds and counts"))
        for kind, (a, b) in self.collectives.items():
            change = f"{b - a:+d}"
            lines.append(f"  {kind:<18} {a} -> {b} ({change})")
        a, b = self.collective_bytes
        lines.append(f"collective bytes per device: {a} -> {b} ({b - a:+d})")
        return "\n".join(lines)


def _seconds(x: float | None) -> str:
    return "none" if x is None else f"{x:.4g} s"


def _delta(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return ""
    ratio = f", x{b / a:.3g}" if a else ""
    return f" ({b - a:+.4g} s{ratio})"


def _check_same_kind(before: object, after: object) -> None:
    """A TypeError naming what `after` is unless it is a plan of `before`'s kind (a mesh plan against a
    pipeshard plan has no layouts or stages in common to compare)."""
    if type(after) is type(before):
        return
    kind = type(before).__name__
    raise TypeError(
        f"plan.diff compares two plans of one kind, got {kind} and {type(after).__name__}: "
        f"pass another {kind}"
    )


def diff(before: ExecutionPlan, after: ExecutionPlan) -> PlanDiff:
    from autopar.api.plan import _spec_text

    _check_same_kind(before, after)

    def mesh(p: ExecutionPlan) -> str:
        return "[" + ", ".join(f"{n}={s}" for n, s in p.mesh_shape.items()) + "]"

    def specs(p: ExecutionPlan) -> dict[str, str]:
        return {t.path: _spec_text(t.spec) for t in (*p.inputs, *p.outputs)}

    a, b = specs(before), specs(after)
    layouts = tuple(
        LayoutChange(path, a.get(path, ""), b.get(path, ""))
        for path in dict.fromkeys([*a, *b])
        if a.get(path) != b.get(path)
    )
    ca, cb = before.collective_counts(), after.collective_counts()
    collectives = {k: (ca[k], cb[k]) for k in COLLECTIVE_KINDS if ca[k] != cb[k]}
    return PlanDiff(
        mesh=(mesh(before), mesh(after)),
        layouts=layouts,
        collectives=collectives,
        collective_bytes=(before.collective_bytes(), after.collective_bytes()),
        cost=(before.estimated_cost, after.estimated_cost),
        bound=(before.lower_bound, after.lower_bound),
    )


# ---- diff of two pipeshard plans ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StageChange:
    """A stage whose placement differs: its layers, submesh, logical mesh and devices as text before and
    after ('' when a plan has no such stage)."""

    index: int
    before: str
    after: str


@dataclasses.dataclass(frozen=True)
class PipeshardPlanDiff:
    """What changes from one PipeshardExecutionPlan (`before`) to another (`after`).

    Attributes:
      stages: the stages whose layer range, submesh, logical mesh or devices differ (by index).
      layouts: @main arguments whose per-stage layouts differ (`stage 1 forward: P('x',)`, `; `-joined).
      latency / bubble / micro_batches / schedule: before and after.
      transfer_seconds / transfer_bytes: the sums over the plans' stage transfers, per micro-batch.
    """

    stages: tuple[StageChange, ...]
    layouts: tuple[LayoutChange, ...]
    latency: tuple[float, float]
    bubble: tuple[float, float]
    micro_batches: tuple[int, int]
    schedule: tuple[str, str]
    transfer_seconds: tuple[float, float]
    transfer_bytes: tuple[int, int]

    @property
    def latency_delta(self) -> float:
        return self.latency[1] - self.latency[0]

    @property
    def bubble_delta(self) -> float:
        return self.bubble[1] - self.bubble[0]

    def __str__(self) -> str:
        def pair(name: str, a, b) -> str:
            return f"{name}: {a}" + ("" if a == b else f" -> {b}")

        lines = [
            f"stages: {len(self.stages)} differ",
            *(f"  stage {c.index}: {c.before or '(absent)'} -> {c.after or '(absent)'}" for c in self.stages),
            pair("schedule", *self.schedule) + ", " + pair("micro-batches", *self.micro_batches),
            f"latency: {_seconds(self.latency[0])} -> {_seconds(self.latency[1])}{_delta(*self.latency)}",
            f"bubble: {self.bubble[0]:.3f} -> {self.bubble[1]:.3f} ({self.bubble_delta:+.3f})",
            f"transfers per micro-batch: {self.transfer_bytes[0]} -> {self.transfer_bytes[1]} bytes, "
            f"{_seconds(self.transfer_seconds[0])} -> {_seconds(self.transfer_seconds[1])}"
            f"{_delta(*self.transfer_seconds)}",
            f"layouts that differ: {len(self.layouts)}",
        ]
        width = max((len(c.path) for c in self.layouts), default=0)
        for c in self.layouts:
            lines.append(f"  {c.path:<{width}}  {c.before or '(absent)'} -> {c.after or '(absent)'}")
        return "\n".join(lines)


def diff_pipeshard(before, after) -> PipeshardPlanDiff:
    _check_same_kind(before, after)

    def placement(s) -> str:
        return (
            f"layers [{s.layers[0]}, {s.layers[1]}) on submesh {s.submesh[0]}x{s.submesh[1]} devices "
            f"{list(s.device_ids)}, logical mesh {'x'.join(map(str, s.logical_mesh))}"
        )

    def layouts(p) -> dict[str, str]:
        out: dict[str, list[str]] = {}
        for t in p.tensors:
            out.setdefault(t.path, []).append(f"stage {t.stage} {t.part}: {t.spec}")
        return {path: "; ".join(v) for path, v in out.items()}

    sa = {s.index: placement(s) for s in before.stages}
    sb = {s.index: placement(s) for s in after.stages}
    stages = tuple(
        StageChange(k, sa.get(k, ""), sb.get(k, "")) for k in sorted({*sa, *sb}) if sa.get(k) != sb.get(k)
    )
    la, lb = layouts(before), layouts(after)
    changes = tuple(
        LayoutChange(path, la.get(path, ""), lb.get(path, ""))
        for path in dict.fromkeys([*la, *lb])
        if la.get(path) != lb.get(path)
    )
    return PipeshardPlanDiff(
        stages=stages,
        layouts=changes,
        latency=(before.estimated_latency, after.estimated_latency),
        bubble=(before.estimated_bubble, after.estimated_bubble),
        micro_batches=(before.num_micro_batches, after.num_micro_batches),
        schedule=(before.schedule, after.schedule),
        transfer_seconds=(sum(t.seconds for t in before.transfers), sum(t.seconds for t in after.transfers)),
        transfer_bytes=(sum(t.bytes for t in before.transfers), sum(t.bytes for t in after.transfers)),
    )
