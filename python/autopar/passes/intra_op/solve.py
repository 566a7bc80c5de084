"""Hands the strategy problem to `autopar.solver` and reads its answer back."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from autopar import solver as solver_lib
from autopar.passes.intra_op import families
from autopar.passes.intra_op.config import PlanConfig
from autopar.passes.intra_op.graph import Graph
from autopar.passes.intra_op.problem import Problem, to_solver_problem


@dataclasses.dataclass(frozen=True)
class Solution:
    """The plan: one strategy per node, its objective (seconds), peak memory and a proven lower bound."""

    strategies: list[int]
    cost: float
    peak_memory: int
    lower_bound: float
    status: str
    message: str = ""
    clock_cut: bool = False  # the wall-clock cap stopped some phase before its counted work was done

    @property
    def feasible(self) -> bool:
        return self.status in ("optimal", "feasible")


# Share of the budget each embedding of a coarser mesh gets (families.coarse_embedding) on meshes of several
# axes, and the most they get all together (2 axes have one coarser mesh, 3 axes three): their problems are
# far smaller, and toulbar2 often proves them in a fraction of it.
_EMBED_SHARE = 0.2
_EMBED_MAX_SHARE = 0.4


def solve(
    problem: Problem,
    *,
    usage_limit: int | None,
    budget: float,
    time_limit: float,
    solver: str,
    graph: Graph | None = None,
    config: PlanConfig | None = None,
) -> Solution:
    """`solver`: 'auto' and 'ilp' run the fast path then the exact phases, 'heuristic' the fast path only.
    `budget` is the counted work in seconds (the plan depends only on it); `time_limit` caps the wall clock
    (Solution.clock_cut says when it stopped a phase first).

    With `graph` and `config`, the hand-written plan families (families.py, with the embeddings of coarser
    meshes on meshes of several axes) are evaluated first and the best of them warm-starts the search: the
    returned objective is never worse than any family's.
    """
    start = time.perf_counter()
    core = to_solver_problem(problem, usage_limit)
    incumbent, clock_cut, grid = None, False, []
    with_families = graph is not None and config is not None and bool(config.active_axes)
    if with_families and len(config.active_axes) > 1:
        # Several axes: the families (and the coarse meshes' plans) start the search and seed its
        # neighbourhoods. One axis: the search proves most problems before families could help, so they
        # are only evaluated when it does not (below).
        groupings = len(families.coarse_groupings(config))
        embed_budget = min(_EMBED_SHARE * groupings, _EMBED_MAX_SHARE) * budget
        grid = families.plans(graph, problem, config, core, usage_limit, time_limit, embed_budget)
        clock_cut = any(f.clock_cut for f in grid)
        incumbent = families.best(grid)
        budget -= embed_budget
    left = max(time_limit - (time.perf_counter() - start), 0.05)
    result = solver_lib.solve(
        core,
        time_limit=left,
        budget=budget,
        seed=0,
        exact=solver != "heuristic",
        initial=None if incumbent is None else incumbent.strategies,
        candidates=[f.strategies for f in grid if f.feasible],
    )
    clock_cut = clock_cut or result.clock_cut
    if with_families and not grid and result.status != "optimal":
        left = max(time_limit - (time.perf_counter() - start), 0.05)
        grid = families.plans(graph, problem, config, core, usage_limit, left)
        clock_cut = clock_cut or any(f.clock_cut for f in grid)
        incumbent = families.best(grid)
    if not result.feasible and incumbent is not None and incumbent.feasible:
        return Solution(
            [int(s) for s in incumbent.strategies],
            incumbent.cost,
            incumbent.peak_memory,
            float(sum(c.min() for c in problem.node_costs)),
            "feasible",
            f"the '{incumbent.name}' family plan",
            clock_cut,
        )
    if not result.feasible:
        return Solution(
            [], float("inf"), int(result.peak_memory), float("inf"), result.status, result.message, clock_cut
        )
    chosen = np.asarray(result.strategies, dtype=np.int64)
    cost, peak, status, message = float(result.cost), int(result.peak_memory), result.status, result.message
    if incumbent is not None and incumbent.feasible and incumbent.cost <= cost:
        chosen, cost, peak = incumbent.strategies, incumbent.cost, incumbent.peak_memory
        message = f"the '{incumbent.name}' family plan ({message})"
    # Edge costs are >= 0, so the cheapest strategy of every node bounds the optimum from below too.
    trivial = float(sum(c.min() for c in problem.node_costs)) if problem.node_costs else 0.0
    bound = max(trivial, result.lower_bound if result.lower_bound is not None else trivial)
    bound = min(bound, cost)
    status = "optimal" if solver_lib.proven_optimal(cost, bound) else "feasible"
    return Solution([int(s) for s in chosen], cost, peak, bound, status, message, clock_cut)


def family_solution(problem: Problem, graph: Graph, config: PlanConfig, usage_limit: int | None) -> Solution:
    """The plan of the family `config.plan_family` (one role per active axis), priced by the same model:
    what option plan-family plans (no search beyond the family's own restricted one)."""
    core = to_solver_problem(problem, usage_limit)
    plan = families.plan(graph, problem, config, config.plan_family, core, usage_limit, config.time_limit)
    trivial = float(sum(c.min() for c in problem.node_costs)) if problem.node_costs else 0.0
    status = "feasible" if plan.feasible else "infeasible"
    message = f"the '{plan.name}' family plan (plan-family)"
    return Solution(
        [int(s) for s in plan.strategies],
        plan.cost,
        plan.peak_memory,
        min(trivial, plan.cost),
        status,
        message,
        plan.clock_cut,
    )


def solve_as_configured(problem: Problem, graph: Graph, config: PlanConfig) -> Solution:
    """What autopar-intra-op solves under `config`: the family's plan with plan-family, else the search
    under the memory budget, counted-work budget and time limit (the pass, `estimate` and
    `plan.explain` all go through here)."""
    limit = config.memory_budget or None
    if config.plan_family:
        return family_solution(problem, graph, config, limit)
    return solve(
        problem,
        usage_limit=limit,
        budget=config.planning_budget,
        time_limit=config.time_limit,
        solver=config.solver,
        graph=graph,
        config=config,
    )
