"""Presolve (passes/intra_op/presolve.h): on small random problems built to trigger every rule (forbidden
costs, follow chains, dominated strategies, singletons, memory limits), the reduced problem's optimum maps
back to the original's optimum with the same cost, and encode maps the original optimum to an assignment at
least as good."""

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
    return StrategyProblem.from_arrays(
        intervals,
        costs,
        usages,
        np.array(edges, np.int64).reshape(-1, 2),
        edge_costs,
        usage_limit=int(tight * max_peak),
    )


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
        [[0, 1], [1, 2], [2, 3]],
        [ident, ident, [0.0, 1.0, 2.0]],
        usage_limit=100,
    )
    gm = _core.GroupModel(p._core)
    st = gm.stats()
    assert (st.merged, st.groups, st.dominated) == (3, 1, 2)
    best = brute_force(p)
    assert reduced_optimum(p, gm) == pytest.approx(best[0])


def star_problem(leaves: int, strategies: int = 6) -> StrategyProblem:
    """A hub (node 0) that `leaves` nodes follow: identity pair tables, forbidden off the diagonal, and
    strategy costs that differ per node, so that phase 2 has something to compare."""
    f = 1e18
    ident = [0.0 if k == m else f for k in range(strategies) for m in range(strategies)]
    nodes = leaves + 1
    return StrategyProblem.from_arrays(
        [[0, 1]] * nodes,
        [[float((k * (i + 1)) % 7) for k in range(strategies)] for i in range(nodes)],
        [[1] * strategies] * nodes,
        [[0, i] for i in range(1, nodes)],
        [ident] * leaves,
    )


def test_absorbing_follow_neighbours_scans_each_table_once() -> None:
    # The hub absorbs its leaves one merge at a time and is revisited after each; its support and follow
    # checks read only the tables that changed since, so the entries read grow linearly with the leaves
    # (they grew quadratically before: D's presolve took 5.8 s, 0.5 s since).
    scanned = {}
    for leaves in (40, 80):
        gm = _core.GroupModel(star_problem(leaves)._core)
        st = gm.stats()
        assert (st.groups, st.merged) == (1, leaves)
        scanned[leaves] = st.entries_scanned
    assert 0 < scanned[80] <= 2.2 * scanned[40], scanned


def test_arc_removed_counts_strategies() -> None:
    # Node 1's strategy 2 is forbidden against both of node 0's: arc consistency removes that one strategy
    # (and nothing else: no pair table goes).
    f = 1e18
    p = StrategyProblem.from_arrays(
        [[0, 1], [0, 1]],
        [[1.0, 2.0], [1.0, 3.0, 0.0]],
        [[1, 1], [1, 1, 1]],
        [[0, 1]],
        [[0.0, 5.0, f, 5.0, 0.0, f]],
    )
    st = _core.GroupModel(p._core).stats()
    assert st.arc_removed == 1


def test_infeasible_node_is_named() -> None:
    p = StrategyProblem.from_arrays([[0, 2], [1, 3]], [[1e18, 1e18], [1.0]], [[1, 1], [1]], [], [])
    gm = _core.GroupModel(p._core)
    assert gm.infeasible and gm.infeasible_node == 0


def test_bad_assignment_is_rejected() -> None:
    p = StrategyProblem.from_arrays(
        [[0, 2], [1, 3]], [[1.0, 2.0], [1.0, 3.0]], [[1, 1], [1, 2]], [[0, 1]], [[0.0, 1.0, 1.0, 0.0]]
    )
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


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_neighbourhood_ilp_matches_brute_force(seed: int, lazy: bool) -> None:
    # Free half of the groups around a feasible assignment; the sub-ILP's optimum (HiGHS) must equal the best
    # over those groups by enumeration with the others fixed (memory rows include the fixed members, merged
    # when their coefficients coincide; lazy: they start in the pool and enter when violated).
    from autopar.solver.highs import solve_ilp as _solve_ilp

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
    expected = min(
        p.evaluate(gm.expand(a))[0]
        for a in feasible
        if all(a[g] == current[g] for g in range(gm.num_groups) if g not in set(free.tolist()))
    )
    model = gm.build(current, free.astype(np.int32), 10**7, lazy)
    if not lazy:
        assert model.num_pool_rows == 0
    values, _, optimal, infeasible = _solve_ilp(model, current, 10.0, 0, None)
    assert optimal and not infeasible
    got = model.decode(values, current)
    cost, _, ok = p.evaluate(gm.expand(got))
    assert ok and cost == pytest.approx(expected)


def memory_problem(rng: np.random.Generator, n: int) -> StrategyProblem:
    """Long overlapping intervals, a tight limit and a sparse pair graph: presolve merges little, and a
    region's memory rows matter (many segments share their free members and differ in the fixed part)."""
    starts = rng.integers(0, 10, n)
    lengths = np.where(rng.random(n) < 0.5, rng.integers(1, 3, n), rng.integers(6, 14, n))  # short in long
    intervals = np.stack([starts, starts + lengths], axis=1)
    sizes = rng.integers(2, 4, n)
    costs = [rng.integers(0, 50, k).astype(float) for k in sizes]
    usages = [rng.integers(1, 30, k) for k in sizes]
    edges = [(i, i + 1) for i in range(0, n - 1, 2)]
    edge_costs = [rng.integers(0, 40, sizes[i] * sizes[j]).astype(float) for i, j in edges]
    limit = int(rng.uniform(0.45, 0.7) * sum(int(u.max()) for u in usages))
    # Echoes: short-lived copies of a node's usages that must follow it (identity table), two per node, so
    # that one group has equal usage vectors at different moments and rows with equal coefficients appear.
    intervals = intervals.tolist()
    for i in np.repeat(rng.choice(n, 2, replace=False), 2):
        start = int(rng.integers(0, 18))
        intervals.append([start, start + 1])
        costs.append(np.zeros(sizes[i]))
        usages.append(usages[i])
        edges.append((int(i), len(intervals) - 1))
        edge_costs.append(np.where(np.eye(sizes[i]) > 0, 0.0, 1e18).ravel())
    return StrategyProblem.from_arrays(
        intervals, costs, usages, np.array(edges, np.int64).reshape(-1, 2), edge_costs, usage_limit=limit
    )


def memory_models(first_seed: int, count: int, low: int, high: int):
    """(seed, rng, problem, group model) for memory_problem(n in [low, high)) at seeds first_seed + k,
    k < count, skipping those presolve proves infeasible or leaves with fewer than two free groups."""
    for seed in range(count):
        rng = np.random.default_rng(first_seed + seed)
        p = memory_problem(rng, n=int(rng.integers(low, high)))
        gm = _core.GroupModel(p._core)
        if not gm.infeasible and len(gm.free_groups()) >= 2:
            yield seed, rng, p, gm


def test_region_memory_rows_match_enumeration() -> None:
    # The rules of the memory rows (segments, fixed members' peak, merged duplicates, lazy pool rows added
    # when violated) and the LP-first shortcut (an integral LP optimum is taken as the MIP's) against
    # enumeration over the region with the rest fixed; the loop also checks that
    # every rule actually fired on these problems.
    from autopar.solver.highs import solve_ilp as _solve_ilp

    fired = {"rows": 0, "merged": 0, "added": 0, "lp_integral": 0}
    for seed, rng, p, gm in memory_models(3000, 25, 7, 10):
        sizes = group_domain_sizes(gm)
        feasible = [
            np.asarray(c, np.int32)
            for c in itertools.product(*[range(d) for d in sizes])
            if p.evaluate(gm.expand(np.asarray(c, np.int32)))[2]
        ]
        if not feasible:
            continue
        current = feasible[int(rng.integers(len(feasible)))]
        free = np.sort(rng.choice(gm.free_groups(), max(2, len(gm.free_groups()) // 2), replace=False))
        fixed = [g for g in range(gm.num_groups) if g not in set(free.tolist())]
        expected = min(
            p.evaluate(gm.expand(a))[0] for a in feasible if all(a[g] == current[g] for g in fixed)
        )
        for lazy, lp_first in ((False, False), (True, False), (False, True)):
            model = gm.build(current, free.astype(np.int32), 10**7, lazy)
            stats: dict = {}
            values, _, optimal, _ = _solve_ilp(model, current, 10.0, 0, None, stats, lp_first)
            got = model.decode(values, current)
            cost, _, ok = p.evaluate(gm.expand(got))
            assert optimal and ok and cost == pytest.approx(expected), (seed, lazy, lp_first)
            fired["lp_integral"] += stats.get("lp_integral", 0)
            fired["rows"] += model.num_rows if not lazy else model.num_pool_rows
            fired["merged"] += model.memory_rows_merged
            fired["added"] += stats.get("rows_added", 0)
    assert fired["rows"] > 0 and fired["added"] > 0 and fired["lp_integral"] > 0, fired


def test_memory_rows_with_equal_coefficients_are_merged() -> None:
    # Node 0 lives throughout; nodes 1 and 2 (one group: 2 follows 1) live at [2,4) and [6,8) with equal
    # usages, node 3 too. Segments [2,4) and [6,8) give rows with equal coefficients: one row remains, with
    # the smaller bound. By hand: at most 45 means node 0 and the group cannot both take their big strategy
    # (20 + 30 + node 3's >= 5); the optimum is 1 (group small: 20+10+9 = 39 <= 45, node 3 at 0).
    f = 1e18
    p = StrategyProblem.from_arrays(
        [[0, 10], [2, 4], [6, 8], [0, 10]],
        [[0.0, 5.0], [0.0, 1.0], [0.0, 0.0], [3.0, 0.0]],
        [[20, 10], [30, 10], [30, 10], [5, 9]],
        [[1, 2]],
        [[0.0, f, f, 0.0]],
        usage_limit=45,
    )
    gm = _core.GroupModel(p._core)
    free = gm.free_groups().astype(np.int32)
    assert len(free) == 3
    for lazy in (False, True):
        model = gm.build(np.zeros(gm.num_groups, np.int32), free, 10**7, lazy)
        assert model.memory_rows_merged == 1
        assert (model.num_rows, model.num_pool_rows) == ((3, 1) if lazy else (4, 0))
        values, _, optimal, _ = _solve_ilp_for_test(model, np.ones(gm.num_groups, np.int32))
        cost, _, ok = p.evaluate(gm.expand(model.decode(values, np.zeros(gm.num_groups, np.int32))))
        assert optimal and ok and cost == brute_force(p)[0] == 1.0


def _solve_ilp_for_test(model: _core.GroupIlp, start: np.ndarray) -> tuple:
    from autopar.solver.highs import solve_ilp as _solve_ilp

    return _solve_ilp(model, start, 10.0, 0, None)


def test_time_window_regions_sit_at_the_peak() -> None:
    # Five independent nodes: usage 10 on strategy 0 (cost 0), 1 on strategy 1 (cost 5). All at strategy 0,
    # usage is 20 on [0,2) (nodes 0, 1) and on [5,7) (nodes 2, 3), 10 on [10,12) (node 4): a window of two
    # groups at a peak moment is {0, 1} or {2, 3}; both moments are drawn over a few seeds.
    p = StrategyProblem.from_arrays(
        [[0, 2], [0, 2], [5, 7], [5, 7], [10, 12]], [[0.0, 5.0]] * 5, [[10, 1]] * 5, [], [], usage_limit=100
    )
    gm = _core.GroupModel(p._core)
    assert len(gm.free_groups()) == 5
    zero = np.zeros(gm.num_groups, np.int32)
    seen = set()
    for seed in range(8):
        region = gm.time_window(zero, 2, 0.0, seed)
        flipped = zero.copy()
        flipped[region] = 1
        nodes = frozenset(np.flatnonzero(gm.expand(flipped)).tolist())
        assert nodes in ({0, 1}, {2, 3})
        seen.add(nodes)
    assert len(seen) == 2
    # With slack 60% every moment counts as near the peak; a window larger than the problem takes it all.
    assert sorted(gm.time_window(zero, 10, 0.6, 0).tolist()) == sorted(gm.free_groups().tolist())


def _objective(model: _core.GroupIlp, assignment: np.ndarray) -> float:
    return float(model.arrays().col_cost @ model.start_vector(assignment)) + model.objective_offset


def test_memory_price_adds_price_times_usage() -> None:
    # With a price per node, a model's objective moves by sum price[i] x usage[i] of the expanded solution;
    # fixed groups add a constant, so differences between two assignments are compared.
    for _, rng, p, gm in memory_models(4000, 10, 7, 10):
        a = p.arrays()
        price = rng.uniform(0, 3, p.num_nodes)
        sizes = group_domain_sizes(gm)
        picks = [np.array([rng.integers(d) for d in sizes], np.int32) for _ in range(2)]
        plain = gm.build(picks[0], gm.free_groups().astype(np.int32), 10**7)
        gm.set_memory_price(price)
        priced = gm.build(picks[0], gm.free_groups().astype(np.int32), 10**7)
        gm.set_memory_price(np.zeros(0))
        assert _objective(
            gm.build(picks[0], gm.free_groups().astype(np.int32), 10**7), picks[1]
        ) == pytest.approx(_objective(plain, picks[1]))  # an empty price clears it

        usage_term = [float(price @ a.node_usage[a.strategy_offset[:-1] + gm.expand(x)]) for x in picks]
        shift = [_objective(priced, x) - _objective(plain, x) for x in picks]
        assert shift[0] - shift[1] == pytest.approx(usage_term[0] - usage_term[1])


def test_memory_price_rejects_bad_prices() -> None:
    p = memory_problem(np.random.default_rng(1), n=8)
    gm = _core.GroupModel(p._core)
    with pytest.raises(ValueError, match="one price per node"):
        gm.set_memory_price(np.ones(3))
    with pytest.raises(ValueError, match="finite and >= 0"):
        gm.set_memory_price(np.full(p.num_nodes, -1.0))


def test_build_without_memory_rows_is_the_unlimited_problem() -> None:
    # memory=False: the whole model's optimum is the optimum without the usage limit over the strategies
    # presolve keeps (it drops those whose own usage exceeds the limit on a live node: never feasible).
    checked, fewer_rows = 0, 0
    for seed, _, p, gm in memory_models(5000, 15, 6, 9):
        a = p.arrays()
        so, live = a.strategy_offset, a.interval_end > a.interval_start
        unlimited = StrategyProblem.from_arrays(*_arrays_of(p), usage_limit=None)
        expected = min(
            unlimited.evaluate(list(x))[0]
            for x in itertools.product(*[range(p.num_strategies(i)) for i in range(p.num_nodes)])
            if not any(live[i] and a.node_usage[so[i] + x[i]] > p.usage_limit for i in range(p.num_nodes))
        )
        zero = np.zeros(gm.num_groups, np.int32)
        limited = gm.build(zero, gm.free_groups().astype(np.int32), 10**7)
        free = gm.build(zero, gm.free_groups().astype(np.int32), 10**7, memory=False)
        assert free.num_rows <= limited.num_rows
        fewer_rows += free.num_rows < limited.num_rows
        values, _, optimal, _ = _solve_ilp_for_test(free, zero)
        cost = p.evaluate(gm.expand(free.decode(values, zero)))[0]
        assert optimal and cost == pytest.approx(expected), seed
        checked += 1
    assert checked >= 5 and fewer_rows >= 3


def _arrays_of(p: StrategyProblem) -> tuple:
    a = p.arrays()
    so, eo = a.strategy_offset, a.edge_offset
    return (
        np.stack([a.interval_start, a.interval_end], 1),
        np.split(a.node_cost, so[1:-1]),
        np.split(a.node_usage, so[1:-1]),
        np.stack([a.edge_u, a.edge_v], 1),
        np.split(a.edge_cost, eo[1:-1]) if len(eo) > 1 else [],
    )


def _allowed_per_group(model: _core.GroupIlp, sizes: list[int], free: np.ndarray) -> dict[int, set[int]]:
    """The strategies (domain indices) each free group's x columns leave open (upper bound 1)."""
    upper = model.arrays().col_upper
    allowed, col = {}, 0
    for g in free:
        allowed[int(g)] = {k for k in range(sizes[g]) if upper[col + k] > 0}
        col += sizes[g]
    return allowed


def test_build_with_keep_allows_the_current_strategy_and_the_cheapest_others() -> None:
    # keep = k: each free group may stay or take one of its k cheapest other strategies, cheapest by the
    # whole cost with every other group as it is (which orders them as their local costs do; ties by
    # index); the model then has no more nonzeros than the full one, and its optimum lies between the full
    # model's and the current cost. With keep at least every domain, it is the full model.
    checked, narrowed = 0, 0
    for seed, rng, p, gm in memory_models(6000, 12, 7, 10):
        sizes = group_domain_sizes(gm)
        free = gm.free_groups()
        current = None
        for _ in range(200):
            pick = np.array([rng.integers(d) for d in sizes], np.int32)
            if p.evaluate(gm.expand(pick))[2]:
                current = pick
                break
        if current is None:
            continue
        full = gm.build(current, free.astype(np.int32), 10**7)
        values, _, optimal, _ = _solve_ilp_for_test(full, current)
        full_cost = p.evaluate(gm.expand(full.decode(values, current)))[0]
        current_cost = p.evaluate(gm.expand(current))[0]
        for keep in (1, 2, max(sizes)):
            model = gm.build(current, free.astype(np.int32), 10**7, keep=keep)
            assert model.num_nonzeros <= full.num_nonzeros
            for g, allowed in _allowed_per_group(model, sizes, free).items():
                others = []
                for k in range(sizes[g]):
                    trial = current.copy()
                    trial[g] = k
                    cost = gm.cost(trial)
                    if k != current[g] and cost < 1e17:
                        others.append((cost, k))
                expected = {int(current[g])} | {k for _, k in sorted(others)[:keep]}
                assert allowed == expected, (seed, keep, g)
                narrowed += len(allowed) < sizes[g]
            values, _, optimal, _ = _solve_ilp_for_test(model, current)
            cost, _, ok = p.evaluate(gm.expand(model.decode(values, current)))
            assert optimal and ok, (seed, keep)
            assert full_cost - 1e-6 <= cost <= current_cost + 1e-6, (seed, keep)
            if keep == max(sizes):
                assert model.num_nonzeros == full.num_nonzeros and cost == pytest.approx(full_cost)
        checked += 1
    assert checked >= 5 and narrowed > 0


def test_build_with_a_negative_keep_is_refused() -> None:
    p = memory_problem(np.random.default_rng(1), n=8)
    gm = _core.GroupModel(p._core)
    zero = np.zeros(gm.num_groups, np.int32)
    with pytest.raises(ValueError, match="keep must be >= 0"):
        gm.build(zero, gm.free_groups().astype(np.int32), 10**7, keep=-1)


def test_build_with_no_groups_frees_none() -> None:
    # No groups is a model without columns, not the whole problem (an empty LNS region was once built as
    # the whole problem: docs/solver.md, "An empty time window").
    p = memory_problem(np.random.default_rng(1), n=8)
    gm = _core.GroupModel(p._core)
    zero = np.zeros(gm.num_groups, np.int32)
    assert len(gm.free_groups()) > 0
    none = gm.build(zero, np.zeros(0, np.int32), 10**7)
    assert none.num_free == 0 and none.num_cols == 0 and not none.too_big
    whole = gm.build(zero, gm.free_groups().astype(np.int32), 10**7)
    assert whole.num_free == len(gm.free_groups())
