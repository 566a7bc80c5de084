"""The fast path: the C++ greedy start, memory repair and local search (passes/intra_op/heuristic.h).

`run` is the first phase of every solve; `repair` is the same code from a given (priced, over the limit)
solution with no perturbation rounds, which the pricing phases call after each priced round. Both are the
only callers of `_core.solve_heuristic` and turn its answer into a `FastPath`.

Tuning constants, measured on the public problems A, M and S on the 2-core development machine:
HEURISTIC_ROUNDS: more perturbation rounds gained nothing once the presolved ILP phases ran after them.
The shares of the time limit are a safety net only (the rounds bound the work).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from autopar import _core
from autopar.solver.state import Incumbent

# Heuristic rounds before the ILP phases take over (its perturbation rounds gain little once presolved ILPs
# are available).
HEURISTIC_ROUNDS = 300
# Wall-clock share of the time limit the fast path may take when later phases follow, and when it is all.
CLOCK_SHARE_BEFORE_ILP = 0.3
CLOCK_SHARE_ALONE = 0.95


@dataclass(frozen=True)
class FastPath:
    """One run of the fast path.

    Attributes:
      solution: strategy per node (feasible when `feasible`; else the least-usage solution found).
      cost: cost of `solution`.
      feasible: `solution` has finite cost and fits the usage limit.
      peak_usage: peak usage of `solution`.
      min_peak_usage: a lower bound on the peak of every finite-cost solution within the usage limit (the
        evidence of infeasibility when above it; `solution` is then the least-usage solution with the limit
        lifted, its `peak_usage` the smallest peak any finite-cost solution can have when `cost` is finite,
        a lower bound on it otherwise).
      time_to_first_feasible: seconds from the run's clock start, negative when none was found.
      time_to_best: seconds from the run's clock start until `solution` was found.
      rounds: perturbation rounds done.
    """

    solution: np.ndarray
    cost: float
    feasible: bool
    peak_usage: int
    min_peak_usage: int
    time_to_first_feasible: float
    time_to_best: float
    rounds: int

    @classmethod
    def call(
        cls, core: _core.StrategyProblem, time_limit: float, seed: int, rounds: int, start: np.ndarray | None
    ) -> FastPath:
        h = _core.solve_heuristic(core, time_limit, seed, rounds, start)
        return cls(
            h.solution,
            h.cost,
            h.feasible,
            h.peak_usage,
            h.min_peak_usage,
            h.time_to_first_feasible,
            h.time_to_best,
            h.rounds,
        )


def run(
    core: _core.StrategyProblem,
    time_limit: float,
    seed: int,
    max_rounds: int | None,
    exact: bool,
    presolve_infeasible: bool,
    initial: np.ndarray | None,
    start: float,
) -> tuple[FastPath, bool]:
    """The first phase: a work-bounded number of rounds (HEURISTIC_ROUNDS when the ILP phases follow),
    from `initial` when given. Returns the result and whether the wall clock stopped it before its
    rounds were done."""
    rounds = -1 if max_rounds is None else int(max_rounds)
    if presolve_infeasible:
        rounds = 0  # only the minimum-usage evidence is wanted
    elif max_rounds is None:
        # Work-bounded, hence deterministic; the ILPs close the gap afterwards.
        rounds = 20 * core.num_nodes + 1000
        if exact:
            rounds = min(rounds, HEURISTIC_ROUNDS)
    share = CLOCK_SHARE_BEFORE_ILP if exact else CLOCK_SHARE_ALONE
    limit = max(start + time_limit - time.perf_counter(), 0.0) * share
    h = FastPath.call(core, limit, int(seed), rounds, initial)
    clock_cut = rounds < 0 or (h.rounds < rounds and time.perf_counter() - start >= limit)
    if clock_cut and not h.feasible and not presolve_infeasible and share < CLOCK_SHARE_ALONE:
        # Feasibility first: the later phases cannot start without a feasible solution, so a fast path the
        # clock stopped before it found one runs again (the same seed and rounds, so the same path) with the
        # clock they would have had. Before, C at its smallest peak on a loaded machine (two busy cores) ended
        # "unknown" after 2.4 s of its 6 (docs/solver.md, "The time limit is a limit").
        left = max(start + time_limit - time.perf_counter(), 0.0) * CLOCK_SHARE_ALONE
        h = FastPath.call(core, left, int(seed), rounds, initial)
    return h, clock_cut


def repair(
    core: _core.StrategyProblem,
    x: np.ndarray,
    seed: int,
    best_cost: float,
    deadline: float,
    incumbent: Incumbent,
) -> tuple[float, float]:
    """Repairs a priced solution to the usage limit with the fast path (memory repair from `x`, then local
    search) and keeps it in `incumbent` when it is the cheapest feasible so far. Returns (the best cost so
    far, the repaired cost)."""
    remaining = max(deadline - time.perf_counter(), 0.05)
    h = FastPath.call(core, remaining, seed, 0, x)
    if h.feasible and h.cost < best_cost - 1e-9 * abs(best_cost):
        best_cost = float(h.cost)
        incumbent.keep(h.solution, best_cost)
    return best_cost, float(h.cost)
