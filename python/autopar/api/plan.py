"""The execution plan of a parallelized function: what runs where, as data and as readable text."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from jax.sharding import PartitionSpec

from autopar.runtime.hlo import COLLECTIVE_KINDS, Collective


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

    def __str__(self) -> str:
        mesh = ", ".join(f"{name}={size}" for name, size in self.mesh_shape.items())
        lines = [f"{self.method} on mesh [{mesh}] over devices {list(self.device_ids)}"]
        lines.append(f"solver: {self.solver_status}" + _cost_text(self.estimated_cost, self.lower_bound))
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
        for c in self.collectives:
            over = f" over {','.join(c.axes)}" if c.axes else (f" groups {c.groups}" if c.groups else "")
            lines.append(f"  {c.kind:<18} {' '.join(c.shapes):<24} {_bytes_text(c.bytes):>10}{over}")
        return "\n".join(lines)


def _spec_text(spec: PartitionSpec) -> str:
    return "replicated" if all(e is None for e in spec) else str(spec)


def _cost_text(cost: float | None, bound: float | None) -> str:
    if cost is None:
        return ""
    text = f", estimated cost {cost:.4g} s"
    return text + (f" (lower bound {bound:.4g} s)" if bound is not None else "")


def _bytes_text(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
