"""What `ExecutionPlan.explain` and `PipeshardExecutionPlan.explain` return: the explanation dataclasses
and their text (api/explain.py builds them; api/explain_problem.py rebuilds and prices the problem)."""

from __future__ import annotations

import dataclasses

from jaxlib.mlir import ir

from autopar.errors import AutoparError


class ExplainError(AutoparError, LookupError):
    """`plan.explain(...)` got a path or op the plan does not have, or a plan it cannot explain."""


class PlanSource:
    """What a plan keeps to be explained: the planned module and the pipeline that planned it. Not a
    dataclass, and copies are itself, so `dataclasses.asdict(plan)` / `copy.deepcopy(plan)` work."""

    def __init__(self, module: ir.Module, pipeline: str):
        self.module, self.pipeline, self.cache = module, pipeline, {}

    def __deepcopy__(self, memo: dict) -> PlanSource:
        return self

    def __repr__(self) -> str:
        return f"PlanSource(pipeline={self.pipeline!r})"


@dataclasses.dataclass(frozen=True)
class Reshard:
    """Resharding between the explained node and one neighbour, priced with the neighbour's chosen
    strategy: `seconds`, and the collective kinds it takes ('all-gather', 'all-to-all', ...)."""

    neighbour: str
    seconds: float
    kinds: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class CostSplit:
    """One strategy's share of the objective, in seconds: `compute` (roofline; an argument's read of its
    shard), `communication` ({kind: seconds} of the op's own partial-sum collectives), `reshard_in` /
    `reshard_out` (edges to the producers it reads / the users that read it, the neighbours' strategies
    as planned); `memory` is bytes per device of its results. `total` is the sum of the seconds."""

    compute: float
    communication: dict[str, float]
    reshard_in: tuple[Reshard, ...]
    reshard_out: tuple[Reshard, ...]
    memory: int

    @property
    def total(self) -> float:
        return (
            self.compute
            + sum(self.communication.values())
            + sum(r.seconds for r in self.reshard_in)
            + sum(r.seconds for r in self.reshard_out)
        )


@dataclasses.dataclass(frozen=True)
class Alternative:
    """A strategy the plan did not choose for the node. `local_delta`: how much more the objective costs
    with only this node changed (neighbours as planned); `delta`: the objective's increase when the whole
    problem is re-solved with this strategy forced (`exact`: the solver proved that re-solve optimal),
    None when the problem was too large to re-solve or (`feasible` False) no plan with it fits the memory
    budget."""

    strategy: str
    local_delta: float
    delta: float | None
    exact: bool
    feasible: bool = True


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Why one tensor or op got its layout (`ExecutionPlan.explain`).

    Attributes:
      target: what was asked for, resolved (`params['w1']`, `op #12`).
      node: the node of the strategy problem explained (`argument params['w1']`, `stablehlo.dot_general
        at model.py:9:24`).
      strategy: the chosen strategy (layouts of operands and results, partial sums).
      cost: its CostSplit.
      objective: the plan's objective (seconds) the deltas are relative to.
      alternatives: the cheapest other strategies, best first.
      collectives: the compiled collectives traced back to this node (kind, shape, source line).
      note: a caveat (the rebuilt plan differs from the module's, an output returned in another layout).
      scope: whose objective `objective` is: the plan's, or a pipeline stage function's.
    """

    target: str
    node: str
    strategy: str
    cost: CostSplit
    objective: float
    alternatives: tuple[Alternative, ...]
    collectives: tuple[str, ...] = ()
    note: str = ""
    scope: str = "the plan's"  # whose objective: "@stage_1_forward's" for a stage function

    def __str__(self) -> str:
        c = self.cost
        lines = [f"{self.target}: {self.node}", f"  chosen: {self.strategy}"]
        lines.append(f"  cost {c.total:.4g} s of {self.scope} {self.objective:.4g} s:")
        lines.append(f"    compute        {c.compute:.4g} s")
        for kind, seconds in c.communication.items():
            lines.append(f"    {kind:<14} {seconds:.4g} s")
        for title, links in (("reshard in", c.reshard_in), ("reshard out", c.reshard_out)):
            total = sum(r.seconds for r in links)
            lines.append(f"    {title:<14} {total:.4g} s")
            for r in links:
                if r.seconds:
                    kinds = f" ({', '.join(r.kinds)})" if r.kinds else ""
                    lines.append(f"      {r.neighbour}: {r.seconds:.4g} s{kinds}")
        from autopar.api.plan import _bytes_text

        lines.append(f"    memory         {_bytes_text(c.memory)} per device")
        if self.alternatives:
            lines.append("  alternatives (extra seconds over the plan):")
        for a in self.alternatives:
            if not a.feasible:
                how = f"no plan with it fits the memory budget ({a.local_delta:+.4g} s with neighbours fixed)"
            elif a.delta is None:
                how = f"{a.local_delta:+.4g} s (neighbours fixed)"
            else:
                how = f"{a.delta:+.4g} s re-solved{'' if a.exact else ' (best found)'}, "
                how += f"{a.local_delta:+.4g} s with neighbours fixed"
            lines.append(f"    {a.strategy}: {how}")
        if not self.alternatives:
            lines.append("  no alternative: this is the only strategy the options leave")
        lines.extend(f"  collective: {c}" for c in self.collectives)
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)
