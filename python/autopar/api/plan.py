"""The execution plan of a parallelized function: what runs where, as data and as readable text, read from
a compiled signature (`execution_plan`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from jax.sharding import PartitionSpec
from jaxlib.mlir import ir

from autopar import cost as cost_lib
from autopar.api import explain as explain_lib
from autopar.api import plan_diff
from autopar.api.activations import activation_placements
from autopar.api.nnx_modules import output_names
from autopar.ir import attrs
from autopar.runtime.hlo import COLLECTIVE_KINDS, Collective, parse_collectives
from autopar.solver import relative_gap

if TYPE_CHECKING:
    from autopar.api.stages import Entry
    from autopar.runtime import executable as rt_exe


@dataclasses.dataclass(frozen=True)
class TensorPlacement:
    """One flattened argument or result.

    Attributes:
      path: its pytree path, starting with the argument name (`params['w1']`) or `out`.
      shape, dtype: its global shape and dtype.
      spec: its PartitionSpec over the mesh.
      role: 'batch', 'parameter' (any other argument: weights, optimizer state) or 'output'.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    spec: PartitionSpec
    role: str


@dataclasses.dataclass(frozen=True)
class ExecutionPlan:
    """How a parallelized function runs for one input signature.

    Attributes:
      method: the parallel method's name (ShardParallel, DataParallel, ...).
      mesh_shape: {axis name: size}, in mesh order.
      device_ids: the devices in mesh (row-major) order.
      inputs: every flattened argument's placement.
      outputs: every flattened result's placement.
      collectives: every collective in XLA's compiled program, in program order.
      estimated_cost: the solver's objective in seconds (cost model), None for manual layouts.
      lower_bound: the solver's proven lower bound on that objective, when it gave one.
      solver_status: e.g. 'optimal', 'feasible', or 'manual' when no solver ran.
      expected_collectives: what the plan priced, summed by kind and mesh axes (`ExpectedCollective`);
        empty for manual layouts.
      remarks: what the planner wants the user to know (a mesh axis that splits nothing and why, ops
        without a sharding rule kept replicated).
      collective_sources: per compiled collective, where it comes from (JAX's op name and the user's
        source line, from XLA's HLO metadata), None where XLA kept nothing.
      source: the planned module and its pipeline, kept for `explain` (not compared, not printed).
      activations: the layouts the plan gave the results of the step's dots and convolutions, forward
        and backward (role "activation", api/activations.py); empty for manual layouts.
    """

    method: str
    mesh_shape: Mapping[str, int]
    device_ids: tuple[int, ...]
    inputs: tuple[TensorPlacement, ...]
    outputs: tuple[TensorPlacement, ...]
    collectives: tuple[Collective, ...]
    estimated_cost: float | None
    lower_bound: float | None
    solver_status: str
    expected_collectives: tuple[ExpectedCollective, ...] = ()
    remarks: tuple[str, ...] = ()
    collective_sources: tuple[plan_diff.CollectiveSource | None, ...] = ()
    source: explain_lib.PlanSource | None = dataclasses.field(default=None, compare=False, repr=False)

    def explain(self, path_or_op: str | int, top: int = 3) -> explain_lib.Explanation:
        """Why a tensor or op got its layout: an argument or result path (`params['w1']`, `out[0]`), an
        op's index among @main's ops, an SSA name as the planned module prints it (`%5`, `%arg0`; a
        sharding constraint's is explained by the value it constrains), or a string naming one op
        (`dot_general`, a source `file.py:12`).
        Gives the chosen strategy, its cost split (compute, its own collectives, reshards in and out,
        memory) and the `top` cheapest alternatives with the objective's increase when the whole problem is
        re-solved with that strategy forced (problems up to 4,000 nodes; the local delta with neighbours
        fixed is always given). The problem is rebuilt from the planned module and re-solved (api/explain.py).
        """
        return explain_lib.explain(self, path_or_op, top)

    def diff(self, other: ExecutionPlan) -> plan_diff.PlanDiff:
        """What changes from this plan to `other`: layouts, collectives by kind, cost and bound."""
        return plan_diff.diff(self, other)

    activations: tuple[TensorPlacement, ...] = ()

    def parameter_specs(self) -> dict[str, PartitionSpec]:
        """{path: spec} of every argument that is not a batch."""
        return {t.path: t.spec for t in self.inputs if t.role == "parameter"}

    def input_specs(self) -> dict[str, PartitionSpec]:
        return {t.path: t.spec for t in self.inputs}

    def collective_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(COLLECTIVE_KINDS, 0)
        for c in self.collectives:
            counts[c.kind] += 1
        return counts

    def collective_bytes(self) -> int:
        return sum(c.bytes for c in self.collectives)

    def expected_counts(self) -> dict[str, int]:
        return {kind: count for kind, (count, _) in _per_kind(self.expected_collectives).items()}

    def expected_bytes(self) -> int:
        return sum(e.bytes for e in self.expected_collectives)

    def fidelity_table(self) -> str:
        """Per kind: what the plan priced (count, bytes per device) beside what XLA compiled."""
        compiled, expected = _per_kind(self.collectives), _per_kind(self.expected_collectives)
        lines = [f"  {'':<18} {'planned':>20} {'compiled':>20}"]
        for kind in COLLECTIVE_KINDS:
            p, c = expected[kind], compiled[kind]
            if p[0] or c[0]:
                lines.append(
                    f"  {kind:<18} {p[0]:>5} x {_bytes_text(p[1]):>10}   {c[0]:>5} x {_bytes_text(c[1]):>10}"
                )
        return "\n".join(lines)

    def plot(self, path: Any) -> Any:
        """Writes the mesh, every tensor's layout over it and the collectives to `path` (.png, .svg)."""
        from autopar.api import plots

        return plots.plot_mesh_plan(self, path)

    def report(self, path: Any) -> Any:
        """Writes one self-contained HTML file: the plan's text, pictures and tables (api/report.py)."""
        from autopar.api import report

        return report.write_report(self, path)

    def __str__(self) -> str:
        mesh = ", ".join(f"{name}={size}" for name, size in self.mesh_shape.items())
        lines = [f"{self.method} on mesh [{mesh}] over devices {list(self.device_ids)}"]
        lines.append(f"solver: {self.solver_status}" + _cost_text(self.estimated_cost, self.lower_bound))
        lines.extend(f"remark: {r}" for r in self.remarks)
        for title, placements in (("inputs", self.inputs), ("outputs", self.outputs)):
            lines.append(f"{title}:")
            width = max((len(t.path) for t in placements), default=0)
            for t in placements:
                shape = f"{t.dtype}[{','.join(map(str, t.shape))}]"
                role = "" if t.role == "output" else f"  ({t.role})"
                lines.append(f"  {t.path:<{width}}  {shape:<18} {_spec_text(t.spec)}{role}")
        counts = {k: v for k, v in self.collective_counts().items() if v}
        summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "none"
        lines.append(f"collectives: {summary} ({_bytes_text(self.collective_bytes())} per device)")
        if self.expected_collectives:
            lines.append("planned beside compiled (count x bytes per device):")
            lines.append(self.fidelity_table())
        lines.append("compiled, in program order:")
        sources = self.collective_sources or (None,) * len(self.collectives)
        for c, source in zip(self.collectives, sources, strict=True):
            over = f" over {','.join(c.axes)}" if c.axes else (f" groups {c.groups}" if c.groups else "")
            where = f"  <- {source}" if source is not None else ""
            lines.append(f"  {c.kind:<18} {' '.join(c.shapes):<24} {_bytes_text(c.bytes):>10}{over}{where}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ExpectedCollective:
    """Collectives of one kind over one set of mesh axes that the plan priced: count and bytes per device."""

    kind: str
    axes: tuple[str, ...]
    count: int
    bytes: int


def _per_kind(collectives) -> dict[str, tuple[int, int]]:
    """{kind: (count, bytes per device)} over every kind, of compiled collectives (one each) or expected
    ones (`count` each)."""
    totals = dict.fromkeys(COLLECTIVE_KINDS, (0, 0))
    for c in collectives:
        count, size = totals[c.kind]
        totals[c.kind] = (count + getattr(c, "count", 1), size + c.bytes)
    return totals


def _spec_text(spec: PartitionSpec) -> str:
    return "replicated" if all(e is None for e in spec) else str(spec)


def _cost_text(cost: float | None, bound: float | None) -> str:
    if cost is None:
        return ""
    text = f", estimated cost {cost:.4g} s"
    if bound is None:
        return text
    return text + f" (lower bound {bound:.4g} s, gap {relative_gap(cost, bound):.2%})"


def _bytes_text(n: int) -> str:
    return cost_lib.bytes_text(n)


# ---- reading the plan of a compiled signature ------------------------------------------------------


def _partition_grid(exe: rt_exe.ShardedExecutable) -> Any:
    """The XLA partition id at each mesh position."""
    index = {d.id: i for i, d in enumerate(exe.devices)}
    return np.vectorize(lambda d: index[d.id], otypes=[int])(exe.mesh.devices)


def execution_plan(
    method_name: str, entry: Entry, exe: rt_exe.ShardedExecutable, pipeline: str = ""
) -> ExecutionPlan:
    """`pipeline`: the pipeline that planned `entry.module` ('' for a manual layout), for `explain`."""
    mesh_shape = dict(exe.mesh.shape)
    inputs = tuple(
        TensorPlacement(path, aval.shape, str(aval.dtype), s.spec, role)
        for path, aval, s, role in zip(entry.paths, exe.in_avals, exe.in_shardings, entry.roles, strict=True)
    )
    out_paths = output_names(entry.out_tree, entry.appended_names)
    outputs = tuple(
        TensorPlacement(path, aval.shape, str(aval.dtype), s.spec, "output")
        for path, aval, s in zip(out_paths, exe.out_avals, exe.out_shardings, strict=True)
    )
    hlo = exe.as_text()
    collectives = tuple(parse_collectives(hlo, mesh_shape, _partition_grid(exe)))
    sources = plan_diff.collective_sources(hlo)
    result = attrs.get_intra_op_result(entry.module.operation)  # None: a manual plan, nothing was solved
    return ExecutionPlan(
        method=method_name,
        mesh_shape=mesh_shape,
        device_ids=tuple(d.id for d in exe.mesh.devices.flat),
        inputs=inputs,
        outputs=outputs,
        collectives=collectives,
        collective_sources=tuple(sources.get(c.name) for c in collectives),
        estimated_cost=result.objective if result else None,
        lower_bound=result.lower_bound if result else None,
        solver_status=result.solver_status if result else "manual",
        expected_collectives=expected_collectives(entry.module),
        remarks=result.remarks if result else (),
        source=explain_lib.PlanSource(entry.module, pipeline) if pipeline and result else None,
        activations=activation_placements(entry.module),
    )


def expected_collectives(module: ir.Module) -> tuple[ExpectedCollective, ...]:
    return tuple(
        ExpectedCollective(e.kind, e.axes, e.count, e.bytes)
        for e in attrs.get_expected_collectives(module.operation) or ()
    )
