"""toulbar2 solves of the priced (memory-free) problem and the memory-pricing phase built on them."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autopar import _core
from autopar.solver import StrategyProblem, solve
from autopar.solver.cfn import PricedCfn
from solver_cases import brute_force, random_problem

# Reads the wall clock (time limits, clock cuts): runs with no other test beside it (tests/conftest.py).
pytestmark = pytest.mark.alone

pytest.importorskip("pytoulbar2")


def priced_brute_force(p: StrategyProblem, node_price: np.ndarray) -> tuple[float, list[int]]:
    """Minimum of cost + sum price[i] x usage over finite-cost solutions, ignoring the usage limit."""
    a = p.arrays()
    best = (float("inf"), [])
    for sol in itertools.product(*[range(p.num_strategies(i)) for i in range(p.num_nodes)]):
        cost, _, _ = p.evaluate(list(sol))
        if cost >= 1e18:
            continue
        usage = a.node_usage[a.strategy_offset[:-1] + np.asarray(sol)]
        value = cost + float(node_price @ usage)
        if value < best[0]:
            best = (value, list(sol))
    return best


def first_finite(p: StrategyProblem) -> np.ndarray:
    h = _core.solve_heuristic(p._core, 5.0, 0, 0, None)
    return np.asarray(h.solution, np.int64)


@pytest.mark.parametrize("seed", range(6))
def test_priced_optimum_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = random_problem(rng, n=int(rng.integers(5, 8)), tight=1.0, forbid=0.15)
    incumbent = first_finite(p)
    if p.evaluate(incumbent)[0] >= 1e18:
        pytest.skip("no finite-cost solution")
    cfn = PricedCfn(p._core)
    price = rng.integers(0, 4, p.num_nodes).astype(float) if seed % 2 else None
    bound = cfn.value(incumbent, price) + 1
    result = cfn.solve(price, bound, backtrack_limit=100_000, time_limit=30)
    expected, _ = priced_brute_force(p, np.zeros(p.num_nodes) if price is None else price)
    assert result.optimal and not result.clock_cut
    assert result.solution is not None
    assert cfn.value(result.solution, price) == pytest.approx(expected)  # integer costs: no rounding
    assert p.evaluate(result.solution)[0] < 1e18  # forbidden strategies stay out
    assert result.dual_bound <= expected + 1e-6


def test_nothing_below_the_upper_bound_gives_none() -> None:
    rng = np.random.default_rng(3)
    p = random_problem(rng, n=6, tight=1.0)
    cfn = PricedCfn(p._core)
    optimum = brute_force(relimited(p))
    result = cfn.solve(None, optimum, 10_000, 10)  # strictly below the optimum: impossible
    # The search completed without a solution: nothing costs less than the bound it was given.
    assert result.solution is None and result.dual_bound == optimum


T5_2X4 = Path(__file__).resolve().parents[1] / "data" / "intra_op_t5_2x4.json.gz"


def test_a_search_no_limit_stopped_proves_its_solution_optimal() -> None:
    """On T5's 2x4 network toulbar2 ends its search ("Optimum: ...") after about 90 backtracks while the
    last dual bound it reported stays 0.08 % below the solution: a completed search is the proof, whatever
    that figure says. A search its backtrack limit stopped proves nothing."""
    cfn = PricedCfn(StrategyProblem.from_json(T5_2X4)._core, priced=False)
    complete = cfn.solve(None, None, 2_000, 60, trws_iterations=100)
    assert complete.backtracks < 2_000 and not complete.clock_cut
    assert complete.optimal and complete.dual_bound == complete.value
    cut = cfn.solve(None, None, 20, 60, trws_iterations=100)
    assert cut.backtracks >= 20 and not cut.optimal
    assert cut.dual_bound <= complete.value <= cut.value


def test_t5s_memory_free_network_is_proven_optimal_by_default() -> None:
    sol = solve(StrategyProblem.from_json(T5_2X4), time_limit=10.0)
    assert sol.status == "optimal", sol.message


def relimited(p: StrategyProblem) -> StrategyProblem:
    a = p.arrays()
    so, eo = a.strategy_offset, a.edge_offset
    return StrategyProblem.from_arrays(
        np.stack([a.interval_start, a.interval_end], 1),
        np.split(a.node_cost, so[1:-1]),
        np.split(a.node_usage, so[1:-1]),
        np.stack([a.edge_u, a.edge_v], 1),
        np.split(a.edge_cost, eo[1:-1]) if p.num_edges else [],
        None,
    )


def test_repeated_solves_are_deterministic_and_silent(capfd) -> None:
    # toulbar2's random generator is reseeded per solve (it carried over between solves), its blank lines
    # are kept off stdout, and its clock alarm is stopped after each solve (it fired later otherwise).
    rng = np.random.default_rng(5)
    p = random_problem(rng, n=60, tight=1.0)
    cfn = PricedCfn(p._core)
    results = [cfn.solve(None, None, 50, 1, seed=7) for _ in range(3)]
    assert all(np.array_equal(r.solution, results[0].solution) for r in results)
    deadline = time.process_time() + 1.5
    while time.process_time() < deadline:  # past the 1 s alarm of the last solve
        pass
    out = capfd.readouterr()
    assert out.out == "" and "Time limit" not in out.err


@pytest.mark.parametrize("max_rounds", [None, 3, 4])
def test_lagrangian_bound_and_repaired_solutions_are_valid(max_rounds: int | None) -> None:
    # Few rounds end the phase by its round limit, where a bracket closed by the last round used to be lost.
    from autopar.solver.cfn_pricing import price_memory_cfn
    from autopar.solver.state import Incumbent

    checked = valued = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        p = random_problem(rng, n=int(rng.integers(6, 9)), tight=0.45)
        optimum = brute_force(p)
        h = _core.solve_heuristic(p._core, 5.0, 0, 0, None)
        if optimum is None or not h.feasible:
            continue
        now = time.perf_counter()
        out = Incumbent(now)
        priced = price_memory_cfn(p._core, h.solution, h.cost, 5e7, 0, now + 60, out, max_rounds=max_rounds)
        assert 0 < priced.used <= 1
        assert priced.lower_bound is not None and priced.lower_bound <= optimum + 1e-6
        # The price is handed on exactly when its rounds bracket it, the last round included.
        limit = p.usage_limit
        priced_rounds = [r for r in priced.rounds if r["mu"] > 0]
        fits = any(r["peak"] <= limit for r in priced_rounds)
        over = any(r["peak"] > limit for r in priced_rounds)
        assert (priced.price is not None) == (fits and over)
        # Each round's priced value is bounded below by its dual bound, equal to it when proven; without a
        # price (round 1) the value is the solution's cost.
        for r in priced.rounds:
            if r["value"] is None:  # no solution below the bound
                continue
            valued += 1
            assert r["dual"] <= r["value"] * (1 + 1e-9) + 1e-6
            assert not r["optimal"] or r["dual"] == pytest.approx(r["value"], rel=1e-6)
            if r["mu"] == 0:
                assert r["value"] == pytest.approx(r["cost"], rel=1e-6)
        # The best round is a priced optimum that fits, at its cost; the floor, one that does not.
        if priced.best_round is not None:
            assert priced.best_round.mu > 0 and len(priced.best_round.solution) == p.num_nodes
            cost, _, ok = p.evaluate(priced.best_round.solution)
            assert ok and cost == priced.best_round_cost and cost >= optimum - 1e-6
        if priced.floor is not None:
            assert not fits and priced.floor.mu == max(r["mu"] for r in priced_rounds)
            assert not p.evaluate(priced.floor.solution)[2]
        if out.best is not None:
            cost, _, ok = p.evaluate(out.best)
            assert ok and cost <= h.cost and cost >= optimum - 1e-6
        checked += 1
    assert checked >= 10 and valued >= checked


def test_peeled_entries_count_the_cycle_and_its_functional_tables() -> None:
    # A triangle of 3-strategy nodes with a leaf on node 0: the leaf is peeled, the triangle is what toulbar2
    # is given (3 unary tables of 3 and 3 pair tables of 9 entries). The pair (0, 1) allows one strategy of
    # 1 per strategy of 0 (functional); (1, 2) forbids one entry per row only; (0, 3) is the leaf's.
    inf = 1e18
    diagonal = [0.0 if i == j else inf for i in range(3) for j in range(3)]
    sparse = [inf if j == 0 and i < 2 else 1.0 for i in range(3) for j in range(3)]
    p = StrategyProblem.from_arrays(
        np.array([[0, 1]] * 4),
        [np.zeros(3)] * 3 + [np.zeros(2)],
        [np.ones(3, dtype=np.int64)] * 3 + [np.ones(2, dtype=np.int64)],
        np.array([[0, 1], [1, 2], [0, 2], [0, 3]]),
        [np.array(diagonal), np.array(sparse), np.ones(9), np.ones(6)],
        usage_limit=10,
    )
    cfn = PricedCfn(p._core)
    assert cfn.num_table_entries == 3 * 3 + 2 + 3 * 9 + 6
    assert cfn.peeled_entries() == (3 * 3 + 3 * 9, 9)
    assert cfn.peeled_entries() == (36, 9)  # counted once, the same on every call
    # A tree is peeled whole: nothing is left for toulbar2 to preprocess.
    tree = StrategyProblem.from_arrays(
        np.array([[0, 1]] * 3),
        [np.zeros(3)] * 3,
        [np.ones(3, dtype=np.int64)] * 3,
        np.array([[0, 1], [1, 2]]),
        [np.array(diagonal), np.ones(9)],
        usage_limit=10,
    )
    assert PricedCfn(tree._core).peeled_entries() == (0, 0)


def test_a_toulbar2_round_starts_only_when_its_charge_fits_what_is_left() -> None:
    # A round is charged for posting and preprocessing its network (round_work) before any backtrack; one
    # that the phase's work left cannot pay for is not started (before, it was started, cut by the phase's
    # wall cap at once, and its work lost), and the phase reports less than its whole budget used.
    from autopar.solver.cfn_pricing import price_memory_cfn, round_work
    from autopar.solver.state import Incumbent

    checked = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        p = random_problem(rng, n=int(rng.integers(6, 9)), tight=0.45)
        h = _core.solve_heuristic(p._core, 5.0, 0, 0, None)
        if not h.feasible:
            continue

        def run(budget: float, p=p, h=h, max_rounds: int | None = None):
            now = time.perf_counter()
            cfn = PricedCfn(p._core)
            out = Incumbent(now)
            priced = price_memory_cfn(
                p._core, h.solution, h.cost, budget, 0, now + 60, out, cfn=cfn, max_rounds=max_rounds
            )
            return priced, round_work(cfn)

        first, charge = run(5e7, max_rounds=1)
        if first.optimal or first.rounds[0]["peak"] <= p.usage_limit or charge < 2:
            continue  # the memory-free optimum fits: the phase ends after one round anyway
        spent = first.used * 5e7
        short, _ = run(spent + charge - 1)
        assert len(short.rounds) == 1 and short.used == pytest.approx(spent / (spent + charge - 1))
        enough, _ = run(spent + charge + 1)  # one unit over: the round's charge is not a whole number
        assert len(enough.rounds) == 2 and enough.used == 1.0
        checked += 1
    assert checked >= 5


def test_solve_proves_a_fitting_memory_free_optimum(monkeypatch) -> None:
    # Force the large-problem route (no whole ILP): toulbar2's unpriced round proves the optimum.
    from autopar.solver import exact

    monkeypatch.setattr(exact, "MAX_ILP_NONZEROS", 0)
    rng = np.random.default_rng(9)
    p = random_problem(rng, n=7, tight=1.0)
    sol = solve(p, time_limit=20, seed=0)
    assert sol.status == "optimal" and "toulbar2" in sol.message
    assert sol.cost == pytest.approx(brute_force(p))


@pytest.mark.parametrize("floor", [False, True])
def test_usage_limited_route_returns_verified_solutions(monkeypatch, floor: bool) -> None:
    # The whole usage-limited route (toulbar2 priced optima -> priced LNS -> restricted -> LNS), with the
    # handoffs between them, on tight random problems; and with the unbracketed level handed on (off by
    # default). Properties only: feasible, the cost the evaluator gives, no better than the optimum.
    from autopar.solver import exact, orchestrate

    monkeypatch.setattr(exact, "MAX_ILP_NONZEROS", 0)
    monkeypatch.setattr(orchestrate, "HAND_OVER_FLOOR", floor)
    checked = 0
    for seed in range(8):
        rng = np.random.default_rng(300 + seed)
        p = random_problem(rng, n=int(rng.integers(6, 9)), tight=0.45)
        optimum = brute_force(p)
        if optimum is None:
            continue
        sol = solve(p, time_limit=30, budget=2, seed=seed)
        cost, peak, ok = p.evaluate(sol.strategies)
        if sol.feasible:
            assert ok and cost == sol.cost and peak == sol.peak_memory <= p.usage_limit
            assert cost >= optimum - 1e-6
            assert sol.lower_bound is None or sol.lower_bound <= optimum + 1e-6
            checked += 1
    assert checked >= 4


def test_costs_beyond_toulbar2s_range_are_not_posted(monkeypatch) -> None:
    # toulbar2 raised Contradiction while posting tables whose costs add up to 1e16: such networks are not
    # built, and solve() falls back to the other phases.
    from autopar.solver import exact

    rng = np.random.default_rng(1)
    small = random_problem(rng, n=7, tight=1.0)
    a = small.arrays()
    so, eo = a.strategy_offset, a.edge_offset
    huge = StrategyProblem.from_arrays(
        np.stack([a.interval_start, a.interval_end], 1),
        [c * 1e15 for c in np.split(a.node_cost, so[1:-1])],
        np.split(a.node_usage, so[1:-1]),
        np.stack([a.edge_u, a.edge_v], 1),
        [c * 1e15 for c in np.split(a.edge_cost, eo[1:-1])],
        None,
    )
    result = PricedCfn(huge._core).solve(None, None, 1000, 10)
    assert result.solution is None and not result.optimal
    monkeypatch.setattr(exact, "MAX_ILP_NONZEROS", 0)
    sol = solve(huge, time_limit=10, seed=0)
    assert sol.feasible and "toulbar2 (memory-free" not in sol.message
    assert sol.cost == pytest.approx(brute_force(huge), rel=1e-9)


def restricted_brute_force(p: StrategyProblem, node_price: np.ndarray, domains: list[np.ndarray]) -> float:
    """Minimum priced cost over finite-cost solutions whose strategies lie in `domains`."""
    a = p.arrays()
    best = float("inf")
    for sol in itertools.product(*[d.tolist() for d in domains]):
        cost, _, _ = p.evaluate(list(sol))
        if cost < 1e18:
            usage = a.node_usage[a.strategy_offset[:-1] + np.asarray(sol)]
            best = min(best, cost + float(node_price @ usage))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_restricted_optimum_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    p = random_problem(rng, n=int(rng.integers(5, 8)), tight=1.0, forbid=0.1)
    incumbent = first_finite(p)
    if p.evaluate(incumbent)[0] >= 1e18:
        pytest.skip("no finite-cost solution")
    cfn = PricedCfn(p._core)
    price = rng.integers(0, 4, p.num_nodes).astype(float)
    other = np.array([rng.integers(p.num_strategies(i)) for i in range(p.num_nodes)], np.int64)
    domains = cfn.restricted_domains(price, [incumbent, other], cheapest=1)
    for i, d in enumerate(domains):
        assert incumbent[i] in d and other[i] in d and np.all(np.diff(d) > 0)
        costs = cfn.priced_costs(price)[cfn._offset[i] : cfn._offset[i + 1]]
        assert int(np.argmin(costs)) in d  # the cheapest (first of ties) strategy is kept
    sizes = np.array([len(d) for d in domains])
    a = p.arrays()
    assert cfn.table_entries(domains) == sizes.sum() + (sizes[a.edge_u] * sizes[a.edge_v]).sum()
    bound = cfn.value(incumbent, price) + 1
    result = cfn.solve(price, bound, backtrack_limit=100_000, time_limit=30, domains=domains)
    assert result.optimal and result.solution is not None
    assert all(result.solution[i] in domains[i] for i in range(p.num_nodes))  # original strategy indices
    assert cfn.value(result.solution, price) == pytest.approx(restricted_brute_force(p, price, domains))
    assert p.evaluate(result.solution)[0] < 1e18


def test_restricted_domains_of_the_wrong_length_are_rejected() -> None:
    p = random_problem(np.random.default_rng(4), n=5, tight=1.0)
    cfn = PricedCfn(p._core)
    with pytest.raises(ValueError, match="one per node"):
        cfn.solve(None, None, 10, 5, domains=[np.array([0])])


def test_restricted_phase_keeps_feasible_improvements_only() -> None:
    from autopar.solver.pricing import Price
    from autopar.solver.restricted import price_memory_restricted
    from autopar.solver.state import Incumbent

    checked = 0
    for seed in range(30):
        rng = np.random.default_rng(300 + seed)
        p = random_problem(rng, n=int(rng.integers(6, 9)), tight=0.45)
        optimum = brute_force(p)
        h = _core.solve_heuristic(p._core, 5.0, 0, 0, None)
        if optimum is None or not h.feasible:
            continue
        a = p.arrays()
        moments = int(a.interval_end.max()) + 1
        # A priced solution that ignores the limit (the memory-free optimum) and a flat price on it.
        free = PricedCfn(p._core).solve(None, None, 100_000, 30).solution
        settled = Price(np.ones(moments), 1.0, free)
        results = []
        for _ in range(2):
            now = time.perf_counter()
            out = Incumbent(now, best=np.asarray(h.solution))
            restricted = price_memory_restricted(
                p._core, PricedCfn(p._core), settled, 5e7, 0, now + 60, out, free
            )
            assert 0 < restricted.used <= 1
            cost, _, ok = p.evaluate(out.best)
            assert ok and optimum - 1e-6 <= cost <= h.cost
            results.append(out.best.tolist())
        assert results[0] == results[1]  # deterministic
        checked += 1
    assert checked >= 10


def test_restricted_price_falls_where_the_limit_has_slack_and_stays_where_it_binds(monkeypatch) -> None:
    # A Lagrangian price belongs where the limit binds: after a round, a moment's price is scaled by
    # (usage / limit) ** power below the limit, and kept at or over it (where the extra price then grows).
    from autopar.solver import restricted

    monkeypatch.setattr(restricted, "RESTRICTED_SLACK_POWER", 2.0)
    price = np.array([4.0, 4.0, 4.0, 4.0, 0.0])
    profile = np.array([0.0, 50.0, 100.0, 250.0, 80.0])
    np.testing.assert_allclose(restricted.relax_slack(price, profile, 100.0), [0.0, 1.0, 4.0, 4.0, 0.0])
    monkeypatch.setattr(restricted, "RESTRICTED_SLACK_POWER", 0.0)  # off: the price only grows
    assert restricted.relax_slack(price, profile, 100.0) is price


def test_restricted_phase_relaxing_slack_prices_keeps_its_guarantees(monkeypatch) -> None:
    # With or without the slack rule, every kept solution is feasible and no dearer than the start; the rule
    # must change some round on these problems (else this test would check nothing).
    from autopar.solver import restricted
    from autopar.solver.state import Incumbent

    adopted, differs = restricted.RESTRICTED_SLACK_POWER, 0
    for p, h, settled, free in restricted_cases():
        runs = {}
        for power in (0.0, adopted):
            monkeypatch.setattr(restricted, "RESTRICTED_SLACK_POWER", power)
            now = time.perf_counter()
            out = Incumbent(now, best=np.asarray(h.solution))
            result = restricted.price_memory_restricted(
                p._core, PricedCfn(p._core), settled, 5e7, 0, now + 60, out, free
            )
            cost, _, ok = p.evaluate(out.best)
            assert ok and cost <= h.cost
            runs[power] = [(r["level"], r["cost"], r["peak"]) for r in result.rounds]
        differs += runs[0.0] != runs[adopted]
    assert differs >= 1


def restricted_cases():
    """(problem, heuristic result, a flat price on the memory-free optimum, that optimum) for the small
    random problems whose heuristic is feasible: the restricted phase's starting points in these tests."""
    from autopar.solver.pricing import Price

    for seed in range(30):
        rng = np.random.default_rng(300 + seed)
        p = random_problem(rng, n=int(rng.integers(6, 9)), tight=0.45)
        h = _core.solve_heuristic(p._core, 5.0, 0, 0, None)
        if not h.feasible:
            continue
        moments = int(p.arrays().interval_end.max()) + 1
        free = PricedCfn(p._core).solve(None, None, 100_000, 30).solution
        yield p, h, Price(np.ones(moments), 1.0, free), free


def test_a_restricted_round_starts_only_when_its_posting_fits_what_is_left() -> None:
    # A round whose network costs more to post than the phase has left is not started (D: a second round
    # that returned its start took the phase past its budget, uncounted, and the final search got 0.07 of
    # the run); a phase that cannot afford its first round does nothing and uses nothing.
    from autopar.solver.restricted import price_memory_restricted
    from autopar.solver.state import Incumbent

    checked = 0
    for p, h, settled, free in restricted_cases():

        def run(budget: float, p=p, h=h, settled=settled, free=free):
            now = time.perf_counter()
            out = Incumbent(now, best=np.asarray(h.solution))
            cfn = PricedCfn(p._core)
            return price_memory_restricted(p._core, cfn, settled, budget, 0, now + 60, out, free), out

        first, _ = run(5e7)
        if not first.rounds:
            continue  # nothing cheaper at the start's price: no round to post
        posting = first.rounds[0]["posting"]
        skipped, out = run(posting - 1)
        assert skipped.used == 0 and not skipped.rounds and out.best.tolist() == h.solution.tolist()
        once, _ = run(posting)
        untimed = [{k: v for k, v in r.items() if k != "secs"} for r in (once.rounds + first.rounds)[:2]]
        assert len(once.rounds) == 1 and untimed[0] == untimed[1] and once.used == 1
        checked += 1
    assert checked >= 5


def test_a_solves_wall_cap_is_also_what_is_left_of_its_phases() -> None:
    from autopar.solver.cfn_pricing import CFN_WALL_SLACK, CFN_WORK_PER_SECOND, phase_wall_cap

    budget = 40 * CFN_WORK_PER_SECOND  # a phase of 40 s of work: 60 s of wall at most
    assert phase_wall_cap(budget) == pytest.approx(CFN_WALL_SLACK * 40)
    # Half the work counted but 50 s of wall spent: the phase has 10 s left, not 1.5 x 20 s.
    assert phase_wall_cap(budget / 2, budget, 50.0) == pytest.approx(CFN_WALL_SLACK * 40 - 50)
    assert phase_wall_cap(budget / 2, budget, 5.0) == pytest.approx(CFN_WALL_SLACK * 20)
    assert phase_wall_cap(budget / 2, budget, 200.0) == 1.0  # never below a second


def test_restricted_rounds_that_cost_more_wall_than_counted_stop_at_the_phases_cap(monkeypatch) -> None:
    # N's restricted solves cost 4-5x the work they were charged; four rounds, each within its own cap,
    # took 120 s of wall for 59 s of work. Here every solve takes 30 s of a simulated clock: the phase stops
    # within CFN_WALL_SLACK x its seconds of work (plus a solve's one-second floor) and says the clock cut it.
    from autopar.solver import restricted
    from autopar.solver.cfn_pricing import CFN_WALL_SLACK, CFN_WORK_PER_SECOND
    from autopar.solver.state import Incumbent

    clock = {"now": 0.0}

    class SimulatedTime:
        @staticmethod
        def perf_counter() -> float:
            return clock["now"]

    class SlowCfn(PricedCfn):
        def solve(self, node_price, upper_bound, backtrack_limit, time_limit, seed=0, domains=None, **kw):
            result = super().solve(node_price, upper_bound, backtrack_limit, 60.0, seed, domains, **kw)
            spent = min(time_limit, 30.0)
            clock["now"] += spent
            return dataclasses.replace(result, clock_cut=True) if spent < 30.0 else result

    monkeypatch.setattr(restricted, "time", SimulatedTime)
    budget = 50 * CFN_WORK_PER_SECOND
    checked = 0
    for p, h, settled, free in restricted_cases():
        clock["now"] = 0.0
        out = Incumbent(time.perf_counter(), best=np.asarray(h.solution))
        result = restricted.price_memory_restricted(
            p._core, SlowCfn(p._core), settled, budget, 0, 1e9, out, free
        )
        assert clock["now"] <= CFN_WALL_SLACK * budget / CFN_WORK_PER_SECOND + 1.0
        if clock["now"] > 60.0:  # a third solve was started: the phase's cap, not its work, ended it
            assert result.clock_cut and result.used == 1
            checked += 1
    assert checked >= 2


def seconds_problem(rng: np.random.Generator, n: int, forbid: float = 0.1) -> StrategyProblem:
    """A problem without a usage limit whose costs are seconds (1e-6 .. 1e-3), as the intra-op pass makes."""
    p = random_problem(rng, n=n, tight=1.0, forbid=forbid)
    a = p.arrays()
    off, eoff = a.strategy_offset, a.edge_offset
    node = np.where(a.node_cost >= 1e18, 1e18, a.node_cost * 1.37e-5 + 1e-6)
    edge = np.where(a.edge_cost >= 1e18, 1e18, a.edge_cost * 2.9e-6)
    intervals = np.stack([a.interval_start, a.interval_end], axis=1)
    return StrategyProblem.from_arrays(
        intervals,
        [node[off[i] : off[i + 1]] for i in range(p.num_nodes)],
        [a.node_usage[off[i] : off[i + 1]] for i in range(p.num_nodes)],
        np.stack([a.edge_u, a.edge_v], axis=1),
        [edge[eoff[e] : eoff[e + 1]] for e in range(p.num_edges)],
        usage_limit=None,
    )


@pytest.mark.parametrize("seed", range(6))
def test_costs_in_seconds_are_scaled_not_rounded_away(seed: int) -> None:
    # toulbar2 counts integers: costs of 1e-5 s rounded as they are would all be 0.
    rng = np.random.default_rng(100 + seed)
    p = seconds_problem(rng, n=int(rng.integers(5, 8)))
    expected = brute_force(p)
    if expected is None:
        pytest.skip("no finite-cost solution")
    cfn = PricedCfn(p._core)
    assert cfn.scale > 1e6 and cfn.unit == pytest.approx(1 / cfn.scale)
    result = cfn.solve(None, None, backtrack_limit=100_000, time_limit=30)
    assert result.solution is not None and result.optimal
    assert p.evaluate(result.solution)[0] == pytest.approx(expected, rel=1e-9)
    assert abs(result.value - expected) <= cfn.rounding
    assert result.dual_bound - cfn.rounding <= expected
    # The solver proves the same optimum and claims "optimal" only with a bound that meets it.
    sol = solve(p, time_limit=30, budget=2.0)
    assert sol.cost == pytest.approx(expected, rel=1e-9)
    if sol.status == "optimal":
        assert sol.lower_bound >= sol.cost * (1 - 1e-9)


def test_conditional_domains_rank_by_node_plus_neighbour_edge_costs() -> None:
    rng = np.random.default_rng(7)
    p = seconds_problem(rng, n=7, forbid=0.0)
    cfn = PricedCfn(p._core)
    a = p.arrays()
    off, eoff = a.strategy_offset, a.edge_offset
    x = first_finite(p)
    other = np.zeros(p.num_nodes, np.int64)
    domains = cfn.conditional_domains(x, [other], cheapest=1)
    for i in range(p.num_nodes):
        conditional = a.node_cost[off[i] : off[i + 1]].copy()
        for e in range(p.num_edges):
            u, v = int(a.edge_u[e]), int(a.edge_v[e])
            table = a.edge_cost[eoff[e] : eoff[e + 1]].reshape(off[u + 1] - off[u], off[v + 1] - off[v])
            if u == i:
                conditional += table[:, x[v]]
            if v == i:
                conditional += table[x[u], :]
        best = int(np.argmin(conditional))
        assert set(domains[i].tolist()) == {int(x[i]), 0, best}


def hard_network(n: int = 300, strategies: int = 10, seed: int = 0) -> StrategyProblem:
    """A random network toulbar2 does not close in seconds (no usage limit)."""
    rng = np.random.default_rng(seed)
    edges = set()
    while len(edges) < 3 * n:
        a, b = sorted(rng.choice(n, 2, replace=False).tolist())
        edges.add((a, b))
    edges = sorted(edges)
    return StrategyProblem.from_arrays(
        [(0, 1)] * n,
        rng.integers(0, 100, (n, strategies)).astype(float).tolist(),
        [[1] * strategies] * n,
        edges,
        rng.integers(0, 100, (len(edges), strategies * strategies)).astype(float).tolist(),
    )


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_time_limit_is_wall_clock_even_when_cpu_is_shared() -> None:
    # toulbar2's own limit counts CPU seconds. Sharing one core with a busy process halves this process's
    # CPU share, so a CPU-time limit of 2 s would last about 4 s of wall time; the wall alarm stops at 2 s.
    p = hard_network()
    cfn = PricedCfn(p._core)
    affinity = os.sched_getaffinity(0)
    core = min(affinity)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, {core})
        os.sched_setaffinity(0, {core})
        began = time.perf_counter()
        result = cfn.solve(None, None, backtrack_limit=10**9, time_limit=2.0)
        wall = time.perf_counter() - began
    finally:
        busy.kill()
        busy.wait()
        os.sched_setaffinity(0, affinity)
    assert result.clock_cut
    assert wall < 2.8, f"toulbar2 ran {wall:.2f} s of wall time under a 2 s limit"
    assert result.solution is not None and p.evaluate(result.solution)[0] < 1e18
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # the alarm is cleared afterwards
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL  # and SIGALRM's disposition restored


def test_a_pending_real_time_timer_is_left_alone() -> None:
    # Another owner of SIGALRM (pytest-timeout, say): its timer and handler must survive a solve.
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        p = hard_network(n=60, strategies=4)
        PricedCfn(p._core).solve(None, None, backtrack_limit=100, time_limit=5.0)
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < remaining <= 30.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not fired


@pytest.mark.parametrize("shared", [True, False])
def test_each_phase_before_the_final_search_gets_its_share_of_the_clock(monkeypatch, shared: bool) -> None:
    # PHASE_CLOCK_SHARE: each phase's own deadline is its share of the work left's share of the seconds left,
    # so that one whose work runs slower than counted cannot take the later phases' clock; off, every phase
    # gets the run's deadline.
    from autopar.solver import cfn_pricing, exact, lns, orchestrate, pricing, restricted

    monkeypatch.setattr(exact, "MAX_ILP_NONZEROS", 0)
    monkeypatch.setattr(orchestrate, "PHASE_CLOCK_SHARE", shared)
    seen: dict[str, tuple[float, float]] = {}

    def record(module, name: str, position: int) -> None:
        real = getattr(module, name)

        def wrapped(*args, **kwargs):
            seen[name] = (time.perf_counter(), args[position])
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)

    record(cfn_pricing, "price_memory_cfn", 5)
    record(pricing, "price_memory", 6)
    record(restricted, "price_memory_restricted", 5)
    record(lns, "lns", 6)
    for seed in range(30):
        seen.clear()
        rng = np.random.default_rng(300 + seed)
        p = random_problem(rng, n=int(rng.integers(6, 9)), tight=0.45)
        solve(p, time_limit=30, budget=2, seed=seed)
        if {"price_memory_cfn", "price_memory", "lns"} <= seen.keys():
            break
    assert {"price_memory_cfn", "price_memory", "lns"} <= seen.keys(), "no problem reached the final search"
    run_deadline = seen["lns"][1]
    for name in set(seen) - {"lns"}:  # the restricted phase runs when a start for it was found
        called, deadline = seen[name]
        share = (deadline - called) / (run_deadline - called)
        assert 0 < share <= 1 + 1e-9 and (share < 1 if shared else share == pytest.approx(1.0))
    cfn_called, cfn_deadline = seen["price_memory_cfn"]
    expected = cfn_pricing.CFN_SHARE if shared else 1.0
    assert (cfn_deadline - cfn_called) / (run_deadline - cfn_called) == pytest.approx(expected, abs=1e-3)


def test_a_phase_deadline_is_never_past_the_runs(monkeypatch) -> None:
    from autopar.solver import orchestrate

    monkeypatch.setattr(orchestrate.time, "perf_counter", lambda: 100.0)
    assert orchestrate._phase_deadline(160.0, 0.3, 0.6) == pytest.approx(130.0)  # half the work left
    assert orchestrate._phase_deadline(160.0, 0.9, 0.6) == 160.0  # more than what is left: the run's
    assert orchestrate._phase_deadline(160.0, 0.3, 0.0) == 160.0  # nothing left to share
    assert orchestrate._phase_deadline(90.0, 0.3, 0.6) == 90.0  # already past: the run's
    monkeypatch.setattr(orchestrate, "PHASE_CLOCK_SHARE", False)
    assert orchestrate._phase_deadline(160.0, 0.3, 0.6) == 160.0
