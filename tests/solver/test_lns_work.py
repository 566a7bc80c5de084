"""The large-neighbourhood search's counted work (lns.ilp_work): what a sub-ILP is charged, per the fitted
units (docs/solver.md, "Counted work against the clock")."""

from types import SimpleNamespace

import numpy as np
import pytest

from autopar import _core
from autopar.solver import lns, pricing
from autopar.solver.highs import solve_ilp
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


def test_the_priced_search_counts_the_same_units_at_the_same_rate() -> None:
    # One unit, one rate: a share of the budget is the same share of the limit in both searches.
    assert pricing.PRICE_WORK_PER_SECOND == lns.LNS_WORK_PER_SECOND
    assert pricing.PRICED_REPAIR_WORK == pytest.approx(0.5 * lns.LNS_WORK_PER_SECOND)


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
