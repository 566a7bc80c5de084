"""Hands the strategy problem to `autopar.solver` and reads its answer back."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from autopar import _core
from autopar import solver as solver_lib
from autopar.passes.intra_op import families
from autopar.passes.intra_op.config import PlanConfig
from autopar.passes.intra_op.graph import Graph
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


# Share of the time limit the unrestricted search gets when the hand-written families may still be needed
# (they run only when that search did not prove optimality, then the best of them is polished).
_MAIN_SHARE = 0.6


def solve(
    problem: Problem,
    *,
    usage_limit: int | None,
    time_limit: float,
    solver: str,
    graph: Graph | None = None,
    config: PlanConfig | None = None,
) -> Solution:
    """`solver`: 'auto' and 'ilp' run the fast path then the exact ILP, 'heuristic' the fast path only.

    With `graph` and `config`, the hand-written plan families (families.py) are evaluated on the same
    problem whenever the search did not prove optimality, and the best of them warm-starts a local search:
    the returned objective is never worse than any family's.
    """
    start = time.perf_counter()
    core = to_solver_problem(problem, usage_limit)
    with_families = graph is not None and config is not None and bool(config.active_axes)
    share = _MAIN_SHARE if with_families else 1.0
    result = solver_lib.solve(core, time_limit=time_limit * share, seed=0, exact=solver != "heuristic")
    if not result.feasible:
        return Solution(
            [], float("inf"), int(result.peak_memory), float("inf"), result.status, result.message
        )
    chosen = np.asarray(result.strategies, dtype=np.int64)
    cost, peak, status, message = float(result.cost), int(result.peak_memory), result.status, result.message
    if with_families and status != "optimal":
        remaining = max(time_limit - (time.perf_counter() - start), 0.05)
        incumbent = _best_of_families(problem, graph, config, core, usage_limit, remaining)
        if incumbent is not None and incumbent[1] < cost:
            chosen, cost, peak, message = incumbent
    # Edge costs are >= 0, so the cheapest strategy of every node bounds the optimum from below too.
    trivial = float(sum(c.min() for c in problem.node_costs)) if problem.node_costs else 0.0
    bound = max(trivial, result.lower_bound if result.lower_bound is not None else trivial)
    if bound >= cost - 1e-9 * max(1.0, abs(cost)):
        status = "optimal"
    return Solution([int(s) for s in chosen], cost, peak, min(bound, cost), status, message)


def _best_of_families(
    problem: Problem,
    graph: Graph,
    config: PlanConfig,
    core: solver_lib.StrategyProblem,
    usage_limit: int | None,
    time_limit: float,
) -> tuple[np.ndarray, float, int, str] | None:
    """(strategies, cost, peak, message) of the best family plan after a local search started from it."""
    start = time.perf_counter()
    best = families.best(families.plans(graph, problem, config, core, usage_limit, time_limit))
    if best is None:
        return None
    remaining = max(time_limit - (time.perf_counter() - start), 0.05)
    # The solver's fast path started from the family's plan: it only accepts improving moves that keep the
    # plan within the usage limit, so the result is at most the family's cost.
    polished = _core.solve_heuristic(core._core, remaining, 0, _POLISH_ROUNDS, best.strategies)
    candidate = np.asarray(polished["solution"], dtype=np.int64)
    cost, peak, ok = core.evaluate(candidate)
    if ok and cost < best.cost:
        return candidate, float(cost), int(peak), f"local search from the '{best.name}' family plan"
    return best.strategies, best.cost, best.peak_memory, f"the '{best.name}' family plan"


# Perturbation rounds of the polish (a work bound, so the result does not depend on the clock when it fits).
_POLISH_ROUNDS = 500
