"""Peeling a cost function network's tree parts (autopar.solver.cfn_peel): exact on every network."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from autopar.solver.cfn_peel import peel


def random_network(rng: np.random.Generator, n: int, extra_edges: int, forbid: float = 0.1):
    """A random spanning tree plus `extra_edges` random edges (repeats allowed), domains of 1-3 values,
    integer costs with some forbidden (inf) entries."""
    sizes = rng.integers(1, 4, n)
    edges = [(int(rng.integers(0, i)), i) for i in range(1, n)]
    edges += [tuple(int(x) for x in rng.choice(n, 2, replace=False)) for _ in range(extra_edges)]
    rng.shuffle(edges)

    def costs(shape):
        c = rng.integers(0, 20, shape).astype(float)
        c[rng.random(shape) < forbid] = np.inf
        return c

    unary = [costs(int(s)) for s in sizes]
    tables = [costs((int(sizes[u]), int(sizes[v]))) for u, v in edges]
    u = np.array([e[0] for e in edges], dtype=np.int64)
    v = np.array([e[1] for e in edges], dtype=np.int64)
    return unary, u, v, tables


def total(unary, u, v, tables, x) -> float:
    return sum(unary[i][x[i]] for i in range(len(unary))) + sum(
        t[x[a], x[b]] for a, b, t in zip(u.tolist(), v.tolist(), tables, strict=True)
    )


def brute_force(unary, u, v, tables) -> float:
    best = np.inf
    for x in itertools.product(*(range(len(c)) for c in unary)):
        best = min(best, total(unary, u, v, tables, x))
    return best


@pytest.mark.parametrize("max_degree", [0, 1, 2])
@pytest.mark.parametrize("seed", range(12))
def test_peeling_keeps_the_optimum_and_reads_values_back(seed: int, max_degree: int):
    rng = np.random.default_rng(seed)
    unary, u, v, tables = random_network(rng, n=7, extra_edges=int(rng.integers(0, 4)))
    p = peel(unary, u, v, tables, max_degree)
    optimum = brute_force(unary, u, v, tables)
    left = brute_force(p.unary, p.edges_u, p.edges_v, p.tables) if len(p.kept) else 0.0
    assert left + p.constant == optimum
    if not np.isfinite(optimum):
        return
    # The kept network's optimum, read back, is an optimum of the whole network.
    best_kept = min(
        itertools.product(*(range(len(c)) for c in p.unary)),
        key=lambda x: total(p.unary, p.edges_u, p.edges_v, p.tables, x),
    )
    x = p.expand(np.array(best_kept, dtype=np.int64))
    assert total(unary, u, v, tables, x) == optimum


def test_a_forest_is_solved_by_peeling():
    rng = np.random.default_rng(5)
    unary, u, v, tables = random_network(rng, n=9, extra_edges=0, forbid=0.0)
    p = peel(unary, u, v, tables, 1)
    assert len(p.kept) == 0 and len(p.tables) == 0
    x = p.expand(np.zeros(0, dtype=np.int64))
    assert total(unary, u, v, tables, x) == p.constant == brute_force(unary, u, v, tables)


def test_a_cycle_is_kept_by_leaf_peeling_and_folded_by_chain_peeling():
    unary = [np.array([0.0, 1.0]) for _ in range(4)]
    ring = np.array([[0.0, 5.0], [5.0, 0.0]])
    u, v = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0])
    assert len(peel(unary, u, v, [ring] * 4, 1).kept) == 4
    chains = peel(unary, u, v, [ring] * 4, 2)
    assert len(chains.kept) == 0 and chains.constant == 0.0


def test_parallel_edges_are_summed():
    unary = [np.array([0.0, 0.0]), np.array([0.0, 0.0])]
    a = np.array([[0.0, 1.0], [1.0, 0.0]])
    b = np.array([[3.0, 0.0], [0.0, 3.0]])  # the same pair, given again (reversed: rows are variable 1)
    p = peel(unary, np.array([0, 1]), np.array([1, 0]), [a, b.T], 1)
    x = p.expand(np.zeros(0, dtype=np.int64))
    assert p.constant == 1.0 and x[0] != x[1]


def test_priced_cfn_solves_a_tree_shaped_problem_without_search():
    """A strategy problem whose graph is a tree: peeling alone proves its priced optimum (no backtrack)."""
    pytest.importorskip("pytoulbar2")
    from autopar.solver import StrategyProblem
    from autopar.solver.cfn import PricedCfn

    rng = np.random.default_rng(3)
    n = 8
    intervals = np.array([[i, i + 2] for i in range(n)])
    costs = [rng.integers(0, 50, 3).astype(float) for _ in range(n)]
    usages = [rng.integers(1, 100, 3) for _ in range(n)]
    edges = np.array([(int(rng.integers(0, i)), i) for i in range(1, n)])
    edge_costs = [rng.integers(0, 50, 9).astype(float) for _ in edges]
    p = StrategyProblem.from_arrays(intervals, costs, usages, edges, edge_costs, None, name="tree")
    price = rng.integers(0, 3, n).astype(float)
    result = PricedCfn(p._core).solve(price, None, backtrack_limit=1000, time_limit=30)
    a = p.arrays()
    best = min(
        p.evaluate(list(x))[0] + float(price @ a.node_usage[a.strategy_offset[:-1] + np.array(x)])
        for x in itertools.product(range(3), repeat=n)
    )
    assert result.optimal and result.backtracks == 0
    assert result.value == pytest.approx(best) and result.dual_bound == pytest.approx(best)
    usage = a.node_usage[a.strategy_offset[:-1] + result.solution]
    assert p.evaluate(result.solution)[0] + float(price @ usage) == pytest.approx(best)
