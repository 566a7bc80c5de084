"""StrategyProblem.to_json: the contest format back, read by from_json into the same problem."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from autopar import _core
from autopar.solver import INFINITE_COST, StrategyProblem

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "iopddl_example.json"
ARRAY_FIELDS = [k for k in dir(_core.ProblemArrays) if not k.startswith("_")]


def random_problem(seed: int, usage_limit: int | None) -> StrategyProblem:
    """Non-integral, integral, negative-free and forbidden costs; some single-strategy nodes."""
    rng = np.random.default_rng(seed)
    n = 12
    sizes = rng.integers(1, 4, size=n)
    starts = rng.integers(0, 20, size=n)
    intervals = np.stack([starts, starts + rng.integers(1, 10, size=n)], axis=1)
    costs = []
    for s in sizes:
        c = rng.random(s) * 1e-3
        c[rng.random(s) < 0.3] = np.round(c[0] * 1e6)  # some integral values
        costs.append(c)
    usages = [rng.integers(0, 1 << 40, size=s) for s in sizes]
    edges = np.array([(u, v) for u in range(n) for v in range(u + 1, n) if rng.random() < 0.25])
    edge_costs = []
    for u, v in edges:
        c = rng.random(sizes[u] * sizes[v]) * 1e-4
        if len(c) > 1 and rng.random() < 0.3:
            c[rng.integers(len(c))] = INFINITE_COST
        edge_costs.append(c)
    wide = int(np.flatnonzero(sizes > 1)[0])
    costs[wide][-1] = np.inf  # forbidden by inf, written as 1e18
    return StrategyProblem.from_arrays(intervals, costs, usages, edges, edge_costs, usage_limit, name="rnd")


def all_solutions(p: StrategyProblem, count: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield np.array([rng.integers(p.num_strategies(i)) for i in range(p.num_nodes)], dtype=np.int64)


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
@pytest.mark.parametrize("limit", [None, 3 << 40])
def test_round_trip_evaluates_the_same(tmp_path: Path, suffix: str, limit: int | None) -> None:
    p = random_problem(0, limit)
    path = tmp_path / f"p{suffix}"
    p.to_json(path)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == suffix.endswith(".gz")
    q = StrategyProblem.from_json(path)
    assert (q.num_nodes, q.num_edges, q.usage_limit, q.name) == (p.num_nodes, p.num_edges, limit, "rnd")
    a, b = p.arrays(), q.arrays()
    for key in ARRAY_FIELDS:
        x, y = getattr(a, key), getattr(b, key)
        if key in ("node_cost", "edge_cost"):
            fa, fb = x >= INFINITE_COST, y >= INFINITE_COST
            np.testing.assert_array_equal(fa, fb)
            np.testing.assert_array_equal(x[~fa], y[~fb])  # bit-identical finite costs
        else:
            np.testing.assert_array_equal(x, y)
    feasible = 0
    for sol in all_solutions(p, 300, 1):
        (pc, pp, pf), (qc, qp, qf) = p.evaluate(sol), q.evaluate(sol)
        assert (pp, pf) == (qp, qf)
        # A forbidden choice costs inf in p (written as 1e18) and >= 1e18 in q; every other cost is exact.
        assert pc == qc if pc < INFINITE_COST else qc >= INFINITE_COST
        feasible += pf
    assert feasible > 0
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place


def test_example_round_trip_text(tmp_path: Path) -> None:
    """The contest's own example reads back unchanged, integers written as integers."""
    p = StrategyProblem.from_json(EXAMPLE)
    out = tmp_path / "example.json"
    p.to_json(out)
    assert json.loads(out.read_text()) == json.loads(EXAMPLE.read_text())
    assert StrategyProblem.from_json(out).evaluate([0, 0, 2, 1, 0]) == (445.0, 50, True)


def test_forbidden_written_as_1e18(tmp_path: Path) -> None:
    p = StrategyProblem.from_arrays(
        [[0, 1], [0, 1]], [[1.5, np.inf], [INFINITE_COST]], [[0, 0], [0]], [[0, 1]], [[0, 2.0]]
    )
    out = tmp_path / "p.json.gz"
    p.to_json(out)
    problem = json.loads(gzip.decompress(out.read_bytes()))["problem"]
    assert problem["nodes"]["costs"] == [[1.5, 1e18], [1e18]]
    assert problem["edges"]["costs"] == [[0, 2]]
    assert "usage_limit" not in problem
    assert StrategyProblem.from_json(out).evaluate([1, 0])[2] is False


def test_replaces_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    out.write_text("stale")
    mode = out.stat().st_mode  # what open() gives under this umask
    StrategyProblem.from_json(EXAMPLE).to_json(out)
    assert StrategyProblem.from_json(out).num_nodes == 5
    assert out.stat().st_mode == mode  # not mkstemp's 0600
