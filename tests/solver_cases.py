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


def brute_force(p: StrategyProblem) -> float | None:
    best = None
    for sol in itertools.product(*[range(p.num_strategies(i)) for i in range(p.num_nodes)]):
        cost, _, ok = p.evaluate(list(sol))
        if ok and (best is None or cost < best):
            best = cost
    return best
