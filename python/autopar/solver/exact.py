"""The exact path: the whole presolved 0-1 ILP solved by HiGHS, warm-started, its branch-and-bound bounded
by a node count (deterministic, unlike a time limit). It proves optimality or gives a bound.

Tuning constants, measured on the 2-core development machine (each comment says on what):
MAX_ILP_NONZEROS decides between the exact path and the search on usage-limited problems,
EXACT_NONZEROS_PER_SECOND whether HiGHS is tried at all on problems without a usage limit, and the node
limit is EXACT_NODES_PER_SECOND per second of budget, at least EXACT_MIN_NODES.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from autopar import _core
from autopar.solver.fast_path import FastPath
from autopar.solver.highs import solve_ilp
from autopar.solver.state import Incumbent

# The exact path is tried when the reduced ILP has at most this many nonzeros (HiGHS solves models of this
# size in seconds to minutes; bigger ones rarely close the gap within a compile-time budget).
MAX_ILP_NONZEROS = 2_000_000
# The whole ILP without a usage limit is tried only when HiGHS can close it within the budget: its root LP,
# which nothing but the clock interrupts, took 2.7 s at 197k nonzeros (MLP, 2x2x2) and did not finish in
# 60 s at 514k (2-layer GPT, 2x4).
EXACT_NONZEROS_PER_SECOND = 25_000
# HiGHS branch-and-bound nodes of the exact path per second of budget, and at least. Measured: the intra-op
# problems of the test models close at the root or within a few hundred nodes; G proves in 3 s.
EXACT_NODES_PER_SECOND = 2000
EXACT_MIN_NODES = 1000


@dataclass(frozen=True)
class ExactResult:
    """What the exact path hands back.

    Attributes:
      optimal: HiGHS proved the best solution optimal, or proved that nothing fits the usage limit.
      lower_bound: the bound it was given, raised by HiGHS's (and capped by the best cost), or None.
      clock_cut: the wall clock stopped HiGHS before its node limit.
      message: one line saying how it ended.
    """

    optimal: bool
    lower_bound: float | None
    clock_cut: bool
    message: str


def highs_exact(
    core: _core.StrategyProblem,
    gm: _core.GroupModel,
    whole: _core.GroupIlp,
    fast: FastPath,
    seconds: float,
    seed: int,
    deadline: float,
    incumbent: Incumbent,
    lower_bound: float | None,
) -> ExactResult:
    """The whole reduced ILP with HiGHS from the best solution so far (`incumbent.best`, else the fast
    path's), its branch-and-bound bounded by a node count derived from `seconds`. A cheaper solution goes to
    `incumbent`."""
    assignment = gm.encode(fast.solution) if fast.feasible else np.zeros(gm.num_groups, np.int32)
    best_cost = float(fast.cost) if fast.feasible else float("inf")
    feasible = bool(fast.feasible)
    if incumbent.best is not None:
        best_cost = float(core.evaluate(incumbent.best)[0])
        assignment, feasible = gm.encode(incumbent.best), True
    remaining = max(deadline - time.perf_counter(), 0.05)
    nodes = max(EXACT_MIN_NODES, int(EXACT_NODES_PER_SECOND * seconds))
    ilp = solve_ilp(whole, assignment if feasible else None, remaining, seed, nodes)
    if ilp is None:
        message = "fast path; the exact path found nothing within its node limit"
        return ExactResult(False, lower_bound, time.perf_counter() >= deadline, message)
    values, bound, optimal, infeasible = ilp
    if infeasible:
        return ExactResult(
            True, lower_bound, False, "infeasible: HiGHS proved no solution fits the usage limit"
        )
    candidate = gm.expand(whole.decode(values, assignment))
    cost, _, ok = core.evaluate(candidate)
    if ok and cost < best_cost:
        best_cost = incumbent.keep(candidate, cost)
    if bound is not None:
        lower_bound = bound if lower_bound is None else max(lower_bound, bound)
        lower_bound = min(lower_bound, best_cost)
    clock_cut = not optimal and time.perf_counter() >= deadline  # HiGHS's own verdict, before `ok`
    proven = optimal and ok
    message = (
        "exact path (presolve + HiGHS ILP): proven optimal"
        if proven
        else "exact path (presolve + HiGHS ILP) stopped at its node limit"
    )
    return ExactResult(proven, lower_bound, clock_cut, message)
