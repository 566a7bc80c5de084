"""Wide rounds of the large-neighbourhood search (lns.WIDE_SHARE): regions several times the size of the
full ones, each group narrowed to its current strategy and its WIDE_KEEP cheapest others (docs/solver.md,
"Wide regions")."""

import time

import numpy as np
import pytest

from autopar import _core
from autopar.solver import lns
from autopar.solver.state import Incumbent
from solver_cases import random_problem

DRAW_REGIONS = lns.lns_regions  # the real one: each search below records its own calls of it


class RecordingModel:
    """A GroupModel that records the `keep` of every model built (the search sees no difference)."""

    def __init__(self, gm: _core.GroupModel) -> None:
        self._gm = gm
        self.keeps: list[int] = []

    def build(self, assignment, free_groups, max_nonzeros, lazy_memory=False, memory=True, keep=0):
        self.keeps.append(keep)
        return self._gm.build(assignment, free_groups, max_nonzeros, lazy_memory, memory, keep)

    def __getattr__(self, name):
        return getattr(self._gm, name)


def search_once(
    monkeypatch, problem, wide_share: float, search: lns.Search, start=None, budget=3e6, after_stale=0
):
    """One final search (memory rows) of `problem` with WIDE_SHARE = wide_share and WIDE_AFTER_STALE =
    after_stale: the value it starts and ends at, the keep of every model it built and the `disjoint` flag
    of every call for regions."""
    monkeypatch.setattr(lns, "WIDE_SHARE", wide_share)
    monkeypatch.setattr(lns, "WIDE_AFTER_STALE", after_stale)
    gm = RecordingModel(_core.GroupModel(problem._core))
    calls = []

    def recorded(*args):
        calls.append(args[7] if len(args) > 7 else True)
        return DRAW_REGIONS(*args)

    monkeypatch.setattr(lns, "lns_regions", recorded)
    objective = lns.Objective(problem._core)
    assignment = gm.encode(np.zeros(problem.num_nodes, np.int64)) if start is None else start
    value = objective(gm.expand(assignment))
    incumbent = Incumbent(time.perf_counter())
    _, end = lns.lns(
        gm,
        assignment,
        value,
        objective,
        budget,
        np.random.default_rng(0),
        time.perf_counter() + 60,
        incumbent,
        search,
    )
    return value, end, gm.keeps, calls


def feasible_problem(seed: int):
    p = random_problem(np.random.default_rng(seed), n=60, tight=0.8)
    gm = _core.GroupModel(p._core)
    assert p.evaluate(gm.expand(gm.encode(np.zeros(p.num_nodes, np.int64))))[2]
    return p, gm


def test_wide_rounds_narrow_their_groups_and_may_overlap(monkeypatch) -> None:
    # WIDE_SHARE = 1 and no stall needed first: every round is wide (regions drawn overlapping, models built
    # with WIDE_KEEP) until a wide region of the whole problem gains nothing; the rounds after that are full
    # ones. The search only accepts cheaper feasible solutions. WIDE_SHARE = 0: no round is wide.
    p, gm = feasible_problem(3)
    search = lns.Search(wide_size=len(gm.free_groups()) / 2)
    start, end, keeps, calls = search_once(monkeypatch, p, 1.0, search)
    assert end <= start
    assert calls[0] is False and keeps[0] == lns.WIDE_KEEP
    assert search.wide_exhausted == end and calls[-1] is True and keeps[-1] == 0
    start, end0, keeps, calls = search_once(monkeypatch, p, 0.0, lns.Search())
    assert end0 <= start and all(calls) and set(keeps) == {0}


def test_a_whole_problem_solved_wide_without_gain_is_not_solved_again(monkeypatch) -> None:
    # From a fixed point of the whole problem's wide model, a wide region of every free group gains nothing:
    # it is solved once (as one region: the whole problem), and later rounds are full ones
    # until the solution changes (here it never does in wide rounds).
    p, gm = feasible_problem(4)
    free = gm.free_groups()
    zero = gm.encode(np.zeros(p.num_nodes, np.int64))
    from autopar.solver.highs import solve_ilp

    # The wide model depends on the solution it narrows around: solve it again from its optimum until that
    # optimum no longer changes.
    best = zero
    for _ in range(20):
        model = gm.build(best, free.astype(np.int32), 10**7, keep=lns.WIDE_KEEP)
        values, _, optimal, _ = solve_ilp(model, best, 30.0, 0, None)
        assert optimal
        before, best = gm.cost(best), model.decode(values, best)
        if gm.cost(best) >= before - 1e-9:
            break
    search = lns.Search(wide_size=float(len(free)))
    _, _, keeps, calls = search_once(monkeypatch, p, 1.0, search, start=best, budget=1e6)
    assert keeps.count(lns.WIDE_KEEP) == 1
    assert calls and all(calls)  # the whole problem is not drawn: only the full rounds draw regions
    assert search.wide_exhausted is not None


def test_region_sizes_grow_to_the_problem_and_shrink_to_eight() -> None:
    assert lns._resized(100.0, 1.15, 228.0) == pytest.approx(115.0)
    assert lns._resized(220.0, 1.15, 228.0) == 228.0
    assert lns._resized(100.0, 0.7, 228.0) == pytest.approx(70.0)
    assert lns._resized(10.0, 0.7, 228.0) == 8.0


def test_regions_drawn_for_a_wide_round_may_share_groups() -> None:
    p, gm = feasible_problem(3)
    free = gm.free_groups()
    zero = gm.encode(np.zeros(p.num_nodes, np.int64))
    rng = np.random.default_rng(0)
    shared = []
    for disjoint in (True, False):
        draws = [lns.lns_regions(gm, zero, free, len(free) // 2, 2, rng, True, disjoint) for _ in range(20)]
        shared.append(sum(len(np.intersect1d(*d)) for d in draws if len(d) == 2))
    assert shared[0] == 0 and shared[1] > 0


def test_wide_rounds_wait_for_the_full_regions_to_stall(monkeypatch) -> None:
    # Until WIDE_AFTER_STALE regions in a row gained nothing, no round is wide and no random draw is made
    # for one: a search that never stalls that long is the search without wide rounds, region for region.
    p, gm = feasible_problem(3)
    never = search_once(monkeypatch, p, 1.0, lns.Search(), after_stale=10**9)
    without = search_once(monkeypatch, p, 0.0, lns.Search())
    assert never == without
    start, end, keeps, calls = search_once(monkeypatch, p, 1.0, lns.Search(), after_stale=20)
    assert end <= start and lns.WIDE_KEEP in keeps
    assert keeps.index(lns.WIDE_KEEP) >= 20  # two full regions a round, 20 of them without gain first


class OneWindowModel(RecordingModel):
    """A GroupModel whose every time window is the same groups."""

    def __init__(self, gm: _core.GroupModel, window: np.ndarray) -> None:
        super().__init__(gm)
        self.window = window

    def time_window(self, assignment, size, slack, seed):
        return self.window


def test_a_time_window_the_earlier_regions_took_gives_way_to_a_breadth_first_region(monkeypatch) -> None:
    # An empty region would leave the second thread idle (and was once built as the whole problem, which,
    # too big, shrank the regions); the second thread gets a breadth-first region instead.
    monkeypatch.setattr(lns, "TIME_WINDOW_SHARE", 1.0)
    p, gm = feasible_problem(3)
    free = gm.free_groups()
    window = free[: len(free) // 2].astype(np.int32)
    zero = gm.encode(np.zeros(p.num_nodes, np.int64))
    first, second = lns.lns_regions(OneWindowModel(gm, window), zero, free, 4, 2, np.random.default_rng(0))
    assert first.tolist() == window.tolist()
    assert len(second) > 0 and not np.intersect1d(first, second).size
