"""Small random strategy problems and their brute-force optimum, shared by the solver's tests."""

import itertools
import os
from pathlib import Path

import numpy as np

from autopar.solver import StrategyProblem

# The contest's problem files are not shipped with autopar: the tests that read them run where
# AUTOPAR_IOPDDL_DIR names a folder holding them (asplos-2025-iopddl-<letter>.json.gz), and skip elsewhere.
CONTEST_ENV = "AUTOPAR_IOPDDL_DIR"


def contest_file(letter: str) -> Path | None:
    """The contest problem `letter`'s file, or None where it is not on this machine."""
    folder = os.environ.get(CONTEST_ENV, "")
    path = Path(folder) / f"asplos-2025-iopddl-{letter}.json.gz" if folder else None
    return path if path is not None and path.exists() else None


def random_problem(rng: np.random.Generator, n: int, tight: float, forbid: float = 0.0) -> StrategyProblem:
    starts = rng.integers(0, 20, n)
    intervals = np.stack([starts, starts + rng.integers(0, 10, n)], axis=1)
    sizes = rng.integers(1, 4, n)
    costs = [np.where(rng.random(k) < forbid, 1e18, rng.integers(0, 100, k).astype(float)) for k in sizes]
    usages = [rng.integers(1, 50, k) for k in sizes]
    edges = [(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < 2.5 / n]
    edge_costs = [
        np.where(
            rng.random(sizes[i] * sizes[j]) < forbid,
            1e18,
            rng.integers(0, 60, sizes[i] * sizes[j]).astype(float),
        )
        for i, j in edges
    ]
    max_peak = sum(int(u.max()) for u in usages)
    edge_array = np.array(edges, dtype=np.int64).reshape(-1, 2)
    return StrategyProblem.from_arrays(
        intervals, costs, usages, edge_array, edge_costs, usage_limit=int(tight * max_peak)
    )


def wide_problem(
    rng: np.random.Generator, n: int, strategies: int, degree: float, tight: float
) -> StrategyProblem:
    """A problem too big for brute force: `n` nodes of 1 to `strategies` strategies each, about `degree`
    random edges per node, costs up to 1000 (edges 300), usages up to 50, the limit `tight` x the largest
    possible peak."""
    starts = rng.integers(0, n // 2, n)
    intervals = np.stack([starts, starts + rng.integers(0, 10, n)], axis=1)
    sizes = rng.integers(1, strategies + 1, n)
    costs = [rng.integers(0, 1000, k).astype(float) for k in sizes]
    usages = [rng.integers(0, 50, k) for k in sizes]
    edges = sorted(
        {(min(i, j), max(i, j)) for i in range(n) for j in rng.integers(0, n, rng.poisson(degree)) if j != i}
    )
    edge_costs = [rng.integers(0, 300, sizes[i] * sizes[j]).astype(float) for i, j in edges]
    max_peak = sum(int(u.max()) for u in usages)
    edge_array = np.array(edges, dtype=np.int64).reshape(-1, 2)
    return StrategyProblem.from_arrays(
        intervals, costs, usages, edge_array, edge_costs, usage_limit=int(tight * max_peak)
    )


def varied_problem(rng: np.random.Generator, n: int) -> StrategyProblem:
    """A small problem of a randomly drawn shape: 1 to 8 strategies per node, forbidden costs (none, few or
    many), follow chains (identity tables of forbidden costs between neighbours of equal size), a usage
    limit from far too low to loose, or none, and zero usages."""
    strategies = int(rng.choice([1, 3, 8]))
    forbid = float(rng.choice([0.0, 0.05, 0.3]))
    chain = bool(rng.random() < 0.4)
    starts = rng.integers(0, max(2, n // 2), n)
    intervals = np.stack([starts, starts + rng.integers(0, 10, n)], axis=1)
    sizes = rng.integers(1, strategies + 1, n)
    costs = [np.where(rng.random(k) < forbid, 1e18, rng.integers(0, 1000, k).astype(float)) for k in sizes]
    usages = [rng.integers(0, 50, k) for k in sizes]
    edges = {(min(i, j), max(i, j)) for i in range(n) for j in rng.integers(0, n, rng.poisson(1.5)) if j != i}
    follows = {(i, i + 1) for i in range(n - 1) if chain and sizes[i] == sizes[i + 1] and rng.random() < 0.5}
    edge_costs = []
    for i, j in sorted(edges | follows):
        table = rng.integers(0, 300, sizes[i] * sizes[j]).astype(float)
        if (i, j) in follows:  # strategy k must meet strategy k
            table = np.full(sizes[i] * sizes[j], 1e18)
            table[:: sizes[j] + 1] = 0.0
        edge_costs.append(np.where(rng.random(table.size) < forbid, 1e18, table))
    max_peak = sum(int(u.max()) for u in usages)
    limit = None if rng.random() < 0.15 else int(rng.uniform(0.05, 0.9) * max_peak)
    edge_array = np.array(sorted(edges | follows), dtype=np.int64).reshape(-1, 2)
    return StrategyProblem.from_arrays(intervals, costs, usages, edge_array, edge_costs, usage_limit=limit)


def brute_force(p: StrategyProblem) -> float | None:
    best = None
    for sol in itertools.product(*[range(p.num_strategies(i)) for i in range(p.num_nodes)]):
        cost, _, ok = p.evaluate(list(sol))
        if ok and (best is None or cost < best):
            best = cost
    return best
