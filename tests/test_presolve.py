"""Presolve (passes/solver/presolve.h): on small random problems built to trigger every rule (forbidden costs,
follow chains, dominated strategies, singletons, memory limits), the reduced problem's optimum maps back to
the original's optimum with the same cost, and encode maps the original optimum to an assignment at least
as good."""

import itertools

import numpy as np
import pytest

from autopar import _core
from autopar.solver import StrategyProblem


def follow_problem(rng: np.random.Generator, n: int, tight: float) -> StrategyProblem:
    """Random problem where some edges force one endpoint by the other (each row has one finite entry),
    some strategies are copies of others with higher cost (dominated) and some nodes have one strategy."""
    starts = rng.integers(0, 12, n)
    intervals = np.stack([starts, starts + rng.integers(0, 8, n)], axis=1)
    sizes = rng.integers(1, 4, n)
    costs, usages = [], []
    for k in sizes:
        c = rng.integers(0, 50, k).astype(float)
        u = rng.integers(1, 30, k)
        if k > 1 and rng.random() < 0.3:  # a dominated copy: same usage, higher cost
            c[1], u[1] = c[0] + 5, u[0]
        if rng.random() < 0.1:
            c[rng.integers(k)] = 1e18
        costs.append(c)
        usages.append(u)
    edges, edge_costs = [], []
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() >= 2.2 / n:
                continue
            table = rng.integers(0, 40, (sizes[i], sizes[j])).astype(float)
            r = rng.random()
            if r < 0.4:  # j follows i (or i follows j): one finite entry per row
                for row in range(sizes[i]):
                    keep = rng.integers(sizes[j])
                    table[row, np.arange(sizes[j]) != keep] = 1e18
            elif r < 0.5:
                table[rng.random(table.shape) < 0.3] = 1e18
            edges.append((i, j))
            edge_costs.append(table.ravel())
    max_peak = sum(int(u.max()) for u in usages)
    return StrategyProblem.from_arrays(intervals, costs, usages, np.array(edges, np.int64).reshape(-1, 2),
                                       edge_costs, usage_limit=int(tight * max_peak))


def brute_force(p: StrategyProblem) -> tuple[float, list[int]] | None:
    best = None
    for sol in itertools.product(*[range(p.num_strategies(i)) for i in range(p.num_nodes)]):
        cost, _, ok = p.evaluate(list(sol))
        if ok and (best is None or cost < best[0]):
            best = (cost, list(sol))
    return best


def reduced_optimum(p: StrategyProblem, gm: _core.GroupModel) -> float | None:
    free = gm.free_groups()
    domains = []
    for g in free:
        k = 0
        while True:  # domain size: the largest index build/expand accept
            a = np.zeros(gm.num_groups, np.int32)
            a[g] = k + 1
            try:
                gm.cost(a)
            except ValueError:
                break
            k += 1
        domains.append(k + 1)
    best = None
    for combo in itertools.product(*[range(d) for d in domains]):
        a = np.zeros(gm.num_groups, np.int32)
        a[free] = combo
        sol = gm.expand(a)
        cost, _, ok = p.evaluate(sol)
        if ok:
            assert gm.cost(a) == pytest.approx(cost)
            if best is None or cost < best:
                best = cost
    return best


@pytest.mark.parametrize("seed", range(30))
def test_reduced_optimum_is_original_optimum(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    p = follow_problem(rng, n=int(rng.integers(4, 9)), tight=float(rng.uniform(0.35, 1.0)))
    expected = brute_force(p)
    gm = _core.GroupModel(p._core)
    if gm.infeasible:
        assert expected is None
        return
    got = reduced_optimum(p, gm)
    if expected is None:
        assert got is None
        return
    assert got == pytest.approx(expected[0])
    # The original optimum encodes to an assignment that is feasible and no worse.
    a = gm.encode(np.asarray(expected[1], np.int64))
    assert a is not None
    cost, _, ok = p.evaluate(gm.expand(a))
    assert ok and cost <= expected[0] + 1e-9


def test_rules_fire_and_are_counted() -> None:
    # 0 -> 1 -> 2 is a follow chain (identity tables with forbidden off-diagonals); node 3 has one strategy,
    # so it follows node 2 too: one group of 4 members. Its strategies cost 1+0+3+5+0 = 9, 2+0+1+5+1 = 9 and
    # 9+0+3+5+2 = 19; strategy 0 dominates both others (node 0's usage 1 <= 2 and 1).
    f = 1e18
    ident = [0.0, f, f, f, 0.0, f, f, f, 0.0]
    p = StrategyProblem.from_arrays(
        [[0, 2], [1, 3], [2, 4], [0, 4]],
        [[1.0, 2.0, 9.0], [0.0, 0.0, 0.0], [3.0, 1.0, 3.0], [5.0]],
        [[1, 2, 1], [1, 1, 1], [1, 1, 1], [1]],
        [[0, 1], [1, 2], [2, 3]], [ident, ident, [0.0, 1.0, 2.0]], usage_limit=100)
    gm = _core.GroupModel(p._core)
    st = gm.stats()
    assert (st["merged"], st["groups"], st["dominated"]) == (3, 1, 2)
    best = brute_force(p)
    assert reduced_optimum(p, gm) == pytest.approx(best[0])


def test_infeasible_node_is_named() -> None:
    p = StrategyProblem.from_arrays([[0, 2], [1, 3]], [[1e18, 1e18], [1.0]], [[1, 1], [1]], [], [])
    gm = _core.GroupModel(p._core)
    assert gm.infeasible and gm.infeasible_node == 0


def test_bad_assignment_is_rejected() -> None:
    p = StrategyProblem.from_arrays([[0, 2], [1, 3]], [[1.0, 2.0], [1.0, 3.0]], [[1, 1], [1, 2]],
                                    [[0, 1]], [[0.0, 1.0, 1.0, 0.0]])
    gm = _core.GroupModel(p._core)
    with pytest.raises(ValueError, match="expected"):
        gm.cost(np.zeros(gm.num_groups + 1, np.int32))
    with pytest.raises(ValueError, match="out of range"):
        gm.cost(np.full(gm.num_groups, 7, np.int32))


def group_domain_sizes(gm: _core.GroupModel) -> list[int]:
    sizes = []
    for g in range(gm.num_groups):
        k = 0
        while True:
            a = np.zeros(gm.num_groups, np.int32)
            a[g] = k + 1
            try:
                gm.cost(a)
            except ValueError:
                break
            k += 1
        sizes.append(k + 1)
    return sizes


@pytest.mark.parametrize("seed", range(12))
def test_neighbourhood_ilp_matches_brute_force(seed: int) -> None:
    # Free half of the groups around a feasible assignment; the sub-ILP's optimum (HiGHS) must equal the best
    # over those groups by enumeration with the others fixed (memory rows include the fixed members).
    from autopar.solver import _solve_ilp

    rng = np.random.default_rng(2000 + seed)
    p = follow_problem(rng, n=int(rng.integers(6, 11)), tight=float(rng.uniform(0.5, 1.0)))
    gm = _core.GroupModel(p._core)
    if gm.infeasible or len(gm.free_groups()) < 2:
        return
    sizes = group_domain_sizes(gm)
    feasible = []
    for combo in itertools.product(*[range(d) for d in sizes]):
        a = np.asarray(combo, np.int32)
        if p.evaluate(gm.expand(a))[2]:
            feasible.append(a)
    if not feasible:
        return
    current = feasible[int(rng.integers(len(feasible)))]
    free = gm.neighbourhood(int(gm.free_groups()[0]), max(1, len(gm.free_groups()) // 2), seed)
    expected = min(p.evaluate(gm.expand(a))[0] for a in feasible
                   if all(a[g] == current[g] for g in range(gm.num_groups) if g not in set(free.tolist())))
    model = gm.build(current, free.astype(np.int32), 10**7)
    values, _, optimal, infeasible = _solve_ilp(model, current, 10.0, 0, None)
    assert optimal and not infeasible
    got = model.decode(values, current)
    cost, _, ok = p.evaluate(gm.expand(got))
    assert ok and cost == pytest.approx(expected)
