"""toulbar2's pricing phase going on past its unproven-rounds stop until a priced optimum fits
(cfn_pricing.CFN_UNTIL_FIT): the late rounds hand on only their repairs, and their work is charged apart."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from autopar import _core
from autopar.solver import cfn_pricing, solve
from autopar.solver.state import Incumbent
from solver_cases import brute_force, random_problem

pytest.importorskip("pytoulbar2")


def phases(until_fit: bool, monkeypatch) -> list[tuple]:
    """(problem, fast path, phase result, incumbent) on small tight problems whose memory-free optimum does
    not fit, with the unproven-rounds stop set to bind at once (CFN_UNPROVEN 0: small networks are proven,
    so it would never bind), so that every priced round comes after it."""
    monkeypatch.setattr(cfn_pricing, "CFN_UNPROVEN", 0)
    monkeypatch.setattr(cfn_pricing, "CFN_UNTIL_FIT", until_fit)
    out = []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        p = random_problem(rng, n=int(rng.integers(6, 9)), tight=0.45)
        h = _core.solve_heuristic(p._core, 5.0, 0, 0, None)
        if brute_force(p) is None or not h.feasible:
            continue
        now = time.perf_counter()
        incumbent = Incumbent(now)
        priced = cfn_pricing.price_memory_cfn(p._core, h.solution, h.cost, 5e7, 0, now + 60, incumbent)
        if priced.rounds[0]["peak"] > p.usage_limit:  # the memory-free optimum is over: something to price
            out.append((p, h, priced, incumbent))
    assert len(out) >= 5
    return out


def test_the_usual_stop_ends_the_phase_after_its_round(monkeypatch) -> None:
    for _, _, priced, _ in phases(False, monkeypatch):
        assert len(priced.rounds) == 1 and priced.late_used == 0


def test_late_rounds_go_on_until_a_fit_and_hand_on_only_their_repairs(monkeypatch) -> None:
    for p, h, priced, incumbent in phases(True, monkeypatch):
        limit = p.usage_limit
        late = priced.rounds[1:]
        assert late and all(r["mu"] > 0 for r in late)
        # It goes on until a priced optimum fits, and stops there (the work budget is far from spent).
        assert late[-1]["peak"] <= limit and all(r["peak"] > limit for r in late[:-1])
        # No bracket, fitting optimum or level is handed on: only the incumbent holds what they found.
        assert priced.price is None and priced.best_round is None and priced.floor is None
        # Their work is reported apart from the usual phase's.
        assert priced.late_used > 0 and 0 < priced.used and priced.used + priced.late_used <= 1
        # What they found went to the incumbent: the fitting optimum too, when it beats the fast path.
        fitting = late[-1]["cost"]
        if fitting < h.cost:
            assert incumbent.best is not None
        if incumbent.best is not None:
            cost, _, ok = p.evaluate(incumbent.best)
            assert ok and cost <= min(fitting, h.cost) * (1 + 1e-9)


# Every phase's work limit in the route test below (units): small enough for a fast test, large enough for
# toulbar2's phase (0.3 of it) to go on past its stop.
WORK = 1e7


def test_late_work_is_charged_to_the_final_search(monkeypatch) -> None:
    # The same runs with the late rounds' work reported or not: only the final large-neighbourhood search's
    # budget changes, by exactly their share of the run.
    from autopar.solver import exact, lns

    monkeypatch.setattr(exact, "MAX_ILP_NONZEROS", 0)
    monkeypatch.setattr(cfn_pricing, "CFN_UNPROVEN", 0)
    monkeypatch.setattr(cfn_pricing, "CFN_UNTIL_FIT", True)
    budgets, shares, run, phase = [], [], lns.lns, cfn_pricing.price_memory_cfn

    def final_lns(gm, assignment, cost, objective, budget, *rest):
        budgets.append(budget)
        return run(gm, assignment, cost, objective, budget, *rest)

    monkeypatch.setattr(lns, "lns", final_lns)  # the priced search imports its own reference: not counted
    charged = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        p = random_problem(rng, n=int(rng.integers(6, 9)), tight=0.45)
        if brute_force(p) is None:
            continue
        got = []
        for report_late in (True, False):

            def reported(*args, report_late=report_late, **kwargs):
                priced = phase(*args, **kwargs)
                shares.append(priced.late_used)
                return priced if report_late else dataclasses.replace(priced, late_used=0.0)

            monkeypatch.setattr(cfn_pricing, "price_memory_cfn", reported)
            budgets.clear(), shares.clear()
            sol = solve(p, time_limit=60, seed=seed, work_limit=WORK)
            assert not sol.clock_cut and sol.feasible == p.evaluate(sol.strategies)[2]
            got.append((list(budgets), list(shares), sol.cost))
        (with_late, late, _), (without, _, _) = got
        if len(with_late) != 1 or len(without) != 1 or not late[0] > 0:
            continue  # no late rounds, or no final search
        expected = without[0] - cfn_pricing.CFN_SHARE * late[0] * WORK
        assert with_late[0] == pytest.approx(max(expected, 0.0), rel=1e-9, abs=1e-6) and expected > 0
        charged += 1
        if charged == 3:
            break
    assert charged == 3
