"""toulbar2 on the problem without its usage limit (a weighted CSP): the memory-free round on the whole
network, and conditional rounds (a large-neighbourhood search with toulbar2 over conditional domains).

Problems without a usage limit (the intra-op pass's default) are solved by these phases; the memory-free
round is also the first step of the exact path. The constants below were measured on the intra-op pass's
problems of benchmarks/models/small.py (2x2x2 and 2x4 meshes, 5-7M table entries) and GPT 350M / 2.6B on
2x4, on the 2-core development machine; each comment says how. Work is counted in units of about a
microsecond of one core (table entries posted, TRW-S per entry, backtracks weighted by table size).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autopar import _core
from autopar.solver.cfn import PricedCfn
from autopar.solver.fast_path import FastPath
from autopar.solver.state import Incumbent

# Without a usage limit: toulbar2's share of the budget, and its work per table entry (posting and
# preprocessing: measured 0.5-1.0 us per entry on the 2x2x2 problems of benchmarks/models/small.py, 5-7M
# entries) and per backtrack (proportional to the tables: 2-8 ns per entry per backtrack measured on the same
# models' 2x4 and 2x2x2 problems).
FREE_CFN_SHARE = 0.5
# ... and its share when posting the network costs more than FREE_CFN_SHARE: measured on GPT 350M and 2.6B
# 2x4 (2.4 M and 3.2 M entries), posting and TRW-S within the default budget bring the bound from 14-16 %
# below the plan to within 0.2 %.
FREE_CFN_MAX_SHARE = 0.85
FREE_WORK_PER_ENTRY = 1.0
FREE_WORK_PER_ENTRY_BACKTRACK = 5e-3
FREE_MIN_WORK_PER_BACKTRACK = 50.0
# TRW-S before the memory-free search (see cfn._TRWS_ACCURACY): at most TRWS_ITERATIONS iterations, charged
# per table entry. Measured on GPT 2.6B's 2x4 network (3.2M entries): it stops by itself after 45 iterations
# in 1.5-2 s (0.5-0.6 us per entry), raising the bound from 2.515 to 2.572 against a plan of 2.576; 20
# iterations reach 2.570. Its work is a function of the network alone (deterministic), so charging it per
# entry keeps the budget a count of work.
TRWS_ITERATIONS = 100
TRWS_WORK_PER_ENTRY = 0.6
# Conditional rounds: share of the budget left after the memory-free round, the widths k tried in turn,
# and the backtracks per round (rounds of the measurements in conditional_rounds closed within 3,000).
CONDITIONAL_SHARE = 0.8
CONDITIONAL_CHEAPEST = (4, 8, 16, 32)
CONDITIONAL_BACKTRACKS = 5000


@dataclass(frozen=True)
class FreeRound:
    """What the memory-free round hands back.

    Attributes:
      work: work units used.
      optimal: toulbar2 proved an optimum that fits the usage limit (of integral costs: a proof), or that
        nothing beats the fast path's solution.
      lower_bound: the bound it was given, raised by toulbar2's dual bound (less the rounding of its costs).
      clock_cut: the wall clock stopped it.
      solution: toulbar2's best solution of the problem without its limit (fitting it or not), or None.
    """

    work: float
    optimal: bool
    lower_bound: float | None
    clock_cut: bool
    solution: np.ndarray | None = None


def memory_free_round(
    core: _core.StrategyProblem,
    cfn: PricedCfn,
    fast: FastPath,
    budget: float,
    seed: int,
    deadline: float,
    incumbent: Incumbent,
    lower_bound: float | None,
) -> FreeRound:
    """toulbar2 on the problem without its usage limit, below the fast path's solution, with as many
    backtracks as `budget` (work units) affords after posting the network; skipped when posting alone costs
    more. Keeps a solution that fits the limit and beats the fast path's in `incumbent`; the result says
    whether toulbar2 proved a fitting optimum of integral costs (scaled costs are rounded: their bound, less
    the rounding, decides) and raises `lower_bound`."""
    entries = cfn.num_table_entries
    post = free_post_work(cfn)
    per_backtrack = max(FREE_MIN_WORK_PER_BACKTRACK, FREE_WORK_PER_ENTRY_BACKTRACK * entries)
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        return FreeRound(0.0, False, lower_bound, True)
    if post >= budget:
        return FreeRound(0.0, False, lower_bound, False)
    start = np.asarray(fast.solution, dtype=np.int64) if fast.feasible else None
    upper = None if start is None else cfn.value(start, None) + cfn.unit
    backtracks = int((budget - post) / per_backtrack)
    result = cfn.solve(None, upper, backtracks, remaining, seed, trws_iterations=TRWS_ITERATIONS)
    exact = cfn.scale == 1.0  # integral costs: toulbar2's proof is a proof
    slack = cfn.rounding_for(None)
    if np.isfinite(result.dual_bound):
        bound = result.dual_bound - slack
        lower_bound = bound if lower_bound is None else max(lower_bound, bound)
    fits, optimal = False, False
    if result.solution is not None:
        cost, _, fits = core.evaluate(result.solution)
        if fits and (start is None or cost < float(fast.cost)):
            incumbent.keep(result.solution, cost)
        optimal = fits and exact and result.optimal
    elif start is not None and exact:
        # Nothing below the fast path's solution, and the search was complete: it is optimal.
        optimal = result.dual_bound >= cfn.value(start, None) - 0.5
    work = post + per_backtrack * result.backtracks
    return FreeRound(work, optimal, lower_bound, result.clock_cut, result.solution)


def free_post_work(cfn: PricedCfn) -> float:
    """Work units of posting the whole network and running TRW-S on it."""
    return (FREE_WORK_PER_ENTRY + TRWS_WORK_PER_ENTRY) * cfn.num_table_entries


def conditional_rounds(
    core: _core.StrategyProblem,
    cfn: PricedCfn,
    fast: FastPath,
    candidates: Sequence[np.ndarray],
    budget: float,
    seed: int,
    deadline: float,
    incumbent: Incumbent,
) -> tuple[float, bool]:
    """Large-neighbourhood search with toulbar2: every node keeps its strategy in the best solution x, the
    strategies of `candidates`, and its k cheapest given its neighbours' strategies in x
    (`PricedCfn.conditional_domains`); toulbar2 finds the optimum over all their combinations below x, which
    becomes the new x. k widens from the first to the last of CONDITIONAL_CHEAPEST when a round finds
    nothing and returns to the first after a gain; the phase ends when the widest finds nothing, or the
    budget (work units: entries and backtracks, as the memory-free round) is spent. Measured on the
    2x2x2 problems of benchmarks/models/small.py, whose full networks the default budget cannot post: GPT
    (2 layers) 1.898e-3 -> 1.585e-3 and MoE 3.94e-4 -> 3.45e-4 in 4-6 rounds of 0.1-0.5 s (the full
    network with 30 s of budget: 1.692e-3 and 3.58e-4). Starts from `incumbent`'s solution, else the fast
    path's, and keeps each gain in `incumbent`. Returns the work used and whether the clock cut it."""
    x = incumbent.best if incumbent.best is not None else fast.solution
    x = np.asarray(x, dtype=np.int64)
    cost = float(core.evaluate(x)[0])
    work, level, clock_cut = 0.0, 0, False
    while work < budget:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            clock_cut = True
            break
        domains = cfn.conditional_domains(x, list(candidates), CONDITIONAL_CHEAPEST[level])
        entries = cfn.table_entries(domains)
        post = FREE_WORK_PER_ENTRY * entries
        per_backtrack = max(FREE_MIN_WORK_PER_BACKTRACK, FREE_WORK_PER_ENTRY_BACKTRACK * entries)
        if work + post >= budget:
            break
        backtracks = min(CONDITIONAL_BACKTRACKS, int((budget - work - post) / per_backtrack))
        result = cfn.solve(None, cfn.value(x, None) + cfn.unit, backtracks, remaining, seed, domains)
        work += post + per_backtrack * result.backtracks
        clock_cut = clock_cut or result.clock_cut
        gained = False
        if result.solution is not None:
            new_cost, _, ok = core.evaluate(result.solution)
            if ok and new_cost < cost - 1e-12 * abs(cost):
                x, cost, gained = np.asarray(result.solution, dtype=np.int64), float(new_cost), True
                incumbent.keep(x, cost)
        if gained:
            level = 0
        elif level + 1 < len(CONDITIONAL_CHEAPEST):
            level += 1
        else:
            break
    return work, clock_cut
