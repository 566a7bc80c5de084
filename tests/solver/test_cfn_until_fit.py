"""toulbar2's pricing phase going on past its unproven-rounds stop until a priced optimum fits
(cfn_pricing.CFN_UNTIL_FIT): the late rounds hand on only their repairs, and their work is charged apart."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from autopar import _core
from autopar.solver import cfn_pricing, pricing, solve
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


def test_late_work_paid_by_the_final_search(monkeypatch) -> None:
    # CFN_LATE_PAID_BY "final": the same runs with the late rounds' work reported or not; only the final
    # large-neighbourhood search's budget changes, by exactly their share of the run.
    from autopar.solver import exact, lns

    monkeypatch.setattr(exact, "MAX_ILP_NONZEROS", 0)
    monkeypatch.setattr(cfn_pricing, "CFN_UNPROVEN", 0)
    monkeypatch.setattr(cfn_pricing, "CFN_UNTIL_FIT", True)
    monkeypatch.setattr(cfn_pricing, "CFN_LATE_PAID_BY", "final")
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


def charged_runs(monkeypatch, paid_by: str, wanted: int = 8) -> list[dict]:
    """Up to `wanted` small tight problems solved through the usage-limited route with late toulbar2 rounds:
    each phase's budget and the share of it used, in units of WORK (the run's budget), for each problem."""
    from autopar.solver import exact, lns, restricted

    monkeypatch.setattr(exact, "MAX_ILP_NONZEROS", 0)
    monkeypatch.setattr(cfn_pricing, "CFN_UNPROVEN", 0)
    monkeypatch.setattr(cfn_pricing, "CFN_UNTIL_FIT", True)
    monkeypatch.setattr(cfn_pricing, "CFN_LATE_PAID_BY", paid_by)
    record: dict = {}

    def wrap(module, name, budget_at, used):
        original = getattr(module, name)

        def phase(*args, **kwargs):
            out = original(*args, **kwargs)
            record[name] = (args[budget_at] / WORK, used(out, args))
            return out

        monkeypatch.setattr(module, name, phase)

    wrap(cfn_pricing, "price_memory_cfn", 3, lambda out, _: (out.used, out.late_used))
    wrap(pricing, "price_memory", 4, lambda out, _: out.used)
    wrap(restricted, "price_memory_restricted", 3, lambda out, _: out.used)
    wrap(lns, "lns", 4, lambda out, args: args[8].work / WORK)  # the final search only (see above)
    runs = []
    for seed in range(40):
        if len(runs) == wanted:
            break
        rng = np.random.default_rng(100 + seed)
        p = random_problem(rng, n=int(rng.integers(6, 9)), tight=0.45)
        if brute_force(p) is None:
            continue
        record.clear()
        sol = solve(p, time_limit=60, seed=seed, work_limit=WORK)
        assert not sol.clock_cut and sol.feasible == p.evaluate(sol.strategies)[2]
        if "price_memory_cfn" in record and record["price_memory_cfn"][1][1] > 0:
            runs.append(dict(record))
    return runs


def charged_total(run: dict) -> float:
    """The run's work in units of its budget: each earlier phase's work, and the final search's budget."""
    cfn_budget, (used, late) = run["price_memory_cfn"]
    total = cfn_budget * (used + late)
    for name in ("price_memory", "price_memory_restricted"):
        if name in run:
            total += run[name][0] * run[name][1]
    return total + run["lns"][0] if "lns" in run else total


@pytest.mark.parametrize("paid_by", ["priced", "last first"])
def test_late_work_keeps_the_run_within_budget(monkeypatch, paid_by: str) -> None:
    runs = charged_runs(monkeypatch, paid_by)
    assert len(runs) >= 5
    for run in runs:
        cfn_budget, (used, late) = run["price_memory_cfn"]
        # The priced search's usual budget: its share of what toulbar2's usual rounds left. "priced" takes
        # the late rounds' share of the run out of it; "last first" only caps it at what is left once they
        # are paid.
        usual = (1 - cfn_budget * used) * pricing.PRICE_SHARE
        paid = cfn_budget * late  # the late rounds' share of the run
        expected = usual - paid if paid_by == "priced" else min(usual, 1 - cfn_budget * used - paid)
        assert run["price_memory"][0] == pytest.approx(max(expected, 0.0), rel=1e-9)
        assert charged_total(run) <= 1 + 1e-9
    # The final search gets what the earlier phases left: nothing is lost either.
    assert any(charged_total(run) == pytest.approx(1.0, rel=1e-9) for run in runs if "lns" in run)


def test_late_work_paid_by_the_final_search_may_overrun(monkeypatch) -> None:
    # What the rules above fix: paid by the final search alone, a run whose late rounds cost more than that
    # search's share did more work than its budget (K and N at 180 s; here with the phases' shares scaled).
    from autopar.solver import restricted

    monkeypatch.setattr(cfn_pricing, "CFN_SHARE", 0.9)
    monkeypatch.setattr(restricted, "RESTRICTED_SHARE", 1.0)
    assert any(charged_total(run) > 1 + 1e-6 for run in charged_runs(monkeypatch, "final"))
    for paid_by in ("priced", "last first"):
        assert all(charged_total(run) <= 1 + 1e-9 for run in charged_runs(monkeypatch, paid_by))
