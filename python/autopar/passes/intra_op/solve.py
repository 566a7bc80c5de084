"""Hands the strategy problem to `autopar.solver` and reads its answer back."""

from __future__ import annotations

import dataclasses

import numpy as np

from autopar import solver as solver_lib
from autopar.passes.intra_op.problem import Problem


@dataclasses.dataclass(frozen=True)
class Solution:
    """The plan: one strategy per node, its objective (seconds), peak memory and a proven lower bound."""

    strategies: list[int]
    cost: float
    peak_memory: int
    lower_bound: float
    status: str
    message: str = ""

    @property
    def feasible(self) -> bool:
        return self.status in ("optimal", "feasible")


def to_solver_problem(
    problem: Problem, usage_limit: int | None, name: str = ""
) -> solver_lib.StrategyProblem:
    intervals = problem.intervals.copy()
    intervals[:, 1] += 1  # ours are inclusive [first, last]; the solver's are half-open
    return solver_lib.StrategyProblem.from_arrays(
        intervals,
        problem.node_costs,
        problem.node_usages,
        problem.edges.reshape(-1, 2),
        problem.edge_costs,
        usage_limit=usage_limit,
        name=name,
    )


def solve(problem: Problem, *, usage_limit: int | None, time_limit: float, solver: str) -> Solution:
    """`solver`: 'auto' and 'ilp' run the fast path then the exact ILP, 'heuristic' the fast path only."""
    result = solver_lib.solve(
        to_solver_problem(problem, usage_limit), time_limit=time_limit, seed=0, exact=solver != "heuristic"
    )
    if not result.feasible:
        return Solution([], float("inf"), int(result.peak_memory), float("inf"), "infeasible", result.message)
    chosen = [int(s) for s in np.asarray(result.strategies)]
    # Edge costs are >= 0, so the cheapest strategy of every node bounds the optimum from below too.
    trivial = float(sum(c.min() for c in problem.node_costs)) if problem.node_costs else 0.0
    bound = max(trivial, result.lower_bound if result.lower_bound is not None else trivial)
    return Solution(
        chosen,
        float(result.cost),
        int(result.peak_memory),
        min(bound, float(result.cost)),
        result.status,
        result.message,
    )
