"""The large-neighbourhood search's counted work (lns.ilp_work): what a sub-ILP is charged, per the fitted
units (docs/solver.md, "Counted work against the clock")."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from autopar import _core
from autopar.solver import lns, pricing
from autopar.solver.highs import solve_ilp
from autopar.solver.state import Incumbent
from solver_cases import random_problem


def region(rows: int = 10_000, cols: int = 60_000, nonzeros: int = 150_000) -> SimpleNamespace:
    """Stands in for a GroupIlp: ilp_work reads only its size."""
    return SimpleNamespace(num_rows=rows, num_cols=cols, num_nonzeros=nonzeros)


def test_a_region_whose_lp_was_integral_is_charged_less_than_the_same_region_as_a_mip() -> None:
    # N's 157k-column regions took 0.35 s when the LP relaxation was integral and 4.4 s when HiGHS's MIP ran
    # (presolve and root work): the MIP's size term is what the earlier units lacked.
    model = region()
    lp = lns.ilp_work(model, {"lp_simplex": 2000, "lp_integral": 1})
    mip = lns.ilp_work(model, {"lp_simplex": 2000, "simplex": 2000, "nodes": 1})
    size_term = lns.WORK_PER_MIP_NONZERO * model.num_nonzeros + lns.WORK_PER_MIP_COLUMN * model.num_cols
    assert mip - lp >= size_term
    assert mip > 3 * lp


def test_a_simplex_iteration_is_priced_by_the_models_rows() -> None:
    stats = {"simplex": 5000, "lp_integral": 0}
    small, large = region(rows=5_000), region(rows=20_000)
    iterations = lns.ilp_work(large, stats) - lns.ilp_work(small, stats)
    assert iterations == pytest.approx(15 * lns.WORK_PER_SIMPLEX_PER_1000_ROWS * 5000)


def test_an_empty_run_costs_the_model_setup_only() -> None:
    model = region(rows=0, cols=0, nonzeros=0)
    assert lns.ilp_work(model, {"lp_integral": 1}) == lns.WORK_PER_MODEL


def test_the_priced_search_charges_its_repairs_at_its_own_rate() -> None:
    # Both searches count lns.ilp_work's units, each at its own rate (pricing.py says why the priced search's
    # stayed at the first fit), and a priced repair is half a second of the priced search's.
    assert pricing.PRICED_REPAIR_WORK == pytest.approx(0.5 * pricing.PRICE_WORK_PER_SECOND)


def test_a_relaxation_stopped_by_the_safety_net_is_reported_as_a_cut() -> None:
    # A region whose LP relaxation HiGHS's time limit stops goes on to the MIP; that choice was the clock's,
    # not the run's, so its result and counted work can differ between runs and must say so (before, only a
    # cut MIP was reported, and K under load diverged from its quiet run with no cut reported).
    p = random_problem(np.random.default_rng(11), n=40, tight=0.6)
    gm = _core.GroupModel(p._core)
    start = np.zeros(gm.num_groups, np.int32)
    model = gm.build(start, gm.free_groups().astype(np.int32), 10**7, False)
    stats: dict = {}
    solve_ilp(model, start, 0.0, 0, 10, stats, lp_first=True)
    assert stats.get("clock"), stats
    assert "lp_integral" not in stats


def test_a_round_that_leaves_a_thread_without_a_region_is_charged_for_that_thread(monkeypatch) -> None:
    # A, C and D have 228-284 free groups: the priced search's first region takes them all, the second is
    # empty, and one core idles while the first is solved. That round costs both cores' time.
    monkeypatch.setattr(lns, "CHARGE_IDLE_THREADS", True)
    assert lns.round_charge([5e6, 3500.0], [228, 0], threads=2) == pytest.approx(2 * 5e6 + 3500.0)
    assert lns.round_charge([5e6], [228], threads=2) == pytest.approx(2 * 5e6)
    # Both threads busy: the regions' own work, however unequal.
    assert lns.round_charge([5e6, 1e5], [150, 78], threads=2) == pytest.approx(5.1e6)
    # One thread (a problem of fewer than 16 free groups runs one): nothing idles.
    assert lns.round_charge([5e6], [12], threads=1) == pytest.approx(5e6)
    monkeypatch.setattr(lns, "CHARGE_IDLE_THREADS", False)
    assert lns.round_charge([5e6, 3500.0], [228, 0], threads=2) == pytest.approx(5e6 + 3500.0)


def test_a_search_over_a_problem_one_region_covers_stops_after_fewer_rounds_when_idle_is_charged(
    monkeypatch,
) -> None:
    # The same search and budget: charged for its idle core, it stops on its budget in fewer rounds, and
    # every round it does make is the same as without the charge (only the count of rounds changes).
    p = random_problem(np.random.default_rng(5), n=60, tight=0.7)
    gm = _core.GroupModel(p._core)
    free = gm.free_groups()
    assert 16 <= len(free) <= 200
    objective = lns.Objective(p._core)

    def run(charge_idle: bool) -> tuple[int, float]:
        monkeypatch.setattr(lns, "CHARGE_IDLE_THREADS", charge_idle)
        calls = []
        real = lns.lns_regions

        def counted(*args, **kwargs):
            regions = real(*args, **kwargs)
            calls.append([len(r) for r in regions])
            return regions

        monkeypatch.setattr(lns, "lns_regions", counted)
        start = gm.encode(np.zeros(p.num_nodes, np.int64))
        value = objective(gm.expand(start))
        search = lns.Search(size=float(len(free)))  # the first region takes every free group
        incumbent = Incumbent(time.perf_counter())
        lns.lns(
            gm,
            start,
            value,
            objective,
            2e6,
            np.random.default_rng(0),
            time.perf_counter() + 60,
            incumbent,
            search,
        )
        assert any(sum(1 for s in sizes if s > 0) < 2 for sizes in calls)
        return len(calls), search.work

    rounds_charged, _ = run(True)
    rounds_free, _ = run(False)
    assert rounds_charged < rounds_free
