"""pricing.moment_index: the price's moments, for intervals numbered any way (negative or far-off times used
to wrap around the per-moment arrays or ask numpy for hundreds of GiB)."""

from __future__ import annotations

import time

import numpy as np

from autopar import _core
from autopar.solver import pricing
from autopar.solver.problem import StrategyProblem
from autopar.solver.state import Incumbent
from solver_cases import random_problem


def test_contest_numbered_times_are_the_moments_as_they_come():
    lo, hi = np.array([0, 3, 5]), np.array([4, 9, 5])
    got_lo, got_hi, moments = pricing.moment_index(lo, hi)
    assert got_lo is lo and got_hi is hi and moments == 10


def test_negative_or_far_off_times_become_their_distinct_values_in_order():
    for offset in (-1_000_000, 10**11):
        lo, hi = np.array([0, 3, 5, 7]) + offset, np.array([4, 9, 5, 8]) + offset
        got_lo, got_hi, moments = pricing.moment_index(lo, hi)
        times = np.unique(np.concatenate([lo, hi]))
        assert moments == len(times) == 7
        assert (times[got_lo] == lo).all() and (times[got_hi] == hi).all()
        usage = np.array([1.0, 2.0, 4.0, 8.0])
        profile = pricing.usage_profile(usage, got_lo, got_hi, moments)
        # The usage at each distinct time is the same as summed over the raw intervals.
        expected = [usage[(lo <= t) & (t < hi)].sum() for t in times]
        assert profile.tolist() == expected


def _with_times(p: StrategyProblem, lo: np.ndarray, hi: np.ndarray) -> StrategyProblem:
    a = p.arrays()
    offsets = a.strategy_offset
    costs = [a.node_cost[offsets[i] : offsets[i + 1]] for i in range(p.num_nodes)]
    usages = [a.node_usage[offsets[i] : offsets[i + 1]] for i in range(p.num_nodes)]
    edges = np.stack([a.edge_u, a.edge_v], axis=1)
    edge_costs = [a.edge_cost[a.edge_offset[e] : a.edge_offset[e + 1]] for e in range(p.num_edges)]
    intervals = np.stack([lo, hi], axis=1)
    return StrategyProblem.from_arrays(intervals, costs, usages, edges, edge_costs, usage_limit=p.usage_limit)


def _priced_rounds(p: StrategyProblem) -> list[dict] | None:
    """The priced search's rounds from the fast path's solution (None when that is infeasible)."""
    h = _core.solve_heuristic(p._core, 5.0, 0, 0, None)
    if not h.feasible:
        return None
    now = time.perf_counter()
    result = pricing.price_memory(
        p._core,
        _core.GroupModel(p._core),
        np.asarray(h.solution),
        float(h.cost),
        2e5,
        np.random.default_rng(0),
        now + 60,
        Incumbent(now),
    )
    return [{k: v for k, v in r.items() if k != "secs"} for r in result.rounds]


def test_the_priced_search_runs_alike_on_any_numbering_of_the_same_times():
    checked = 0
    for seed in range(700, 730):
        p = random_problem(np.random.default_rng(seed), n=16, tight=0.35)
        a = p.arrays()
        lo, hi = a.interval_start, a.interval_end
        _, index = np.unique(np.concatenate([lo, hi]), return_inverse=True)
        ranked = _priced_rounds(_with_times(p, index[: len(lo)], index[len(lo) :]))
        if ranked is None or not ranked[0]["over"]:
            continue  # no feasible start, or the memory-free optimum fits: nothing is priced
        for offset in (-1_000_000, 10**11):
            assert _priced_rounds(_with_times(p, lo + offset, hi + offset)) == ranked
        checked += 1
        if checked == 3:
            break
    assert checked == 3
