"""The strategy problem data model: loading (JSON, JSON.gz, arrays), validation messages, evaluation."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from autopar.solver import StrategyProblem
from solver_cases import CONTEST_ENV, contest_file

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "iopddl_example.json"


def example_dict() -> dict:
    return json.loads(EXAMPLE.read_text())


def write(tmp_path: Path, data: dict | str, name: str = "p.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_load_example() -> None:
    p = StrategyProblem.from_json(EXAMPLE)
    assert (p.num_nodes, p.num_edges, p.usage_limit, p.name) == (5, 5, 50, "example")
    assert [p.num_strategies(i) for i in range(5)] == [1, 2, 3, 2, 1]


def test_evaluate_by_hand() -> None:
    p = StrategyProblem.from_json(EXAMPLE)
    # Node costs 15+55+35+75+95, edges 30+40+10+30+60; at t in [50,70) nodes 0,1,2 use 10+25+15.
    assert p.evaluate([0, 0, 2, 1, 0]) == (445.0, 50, True)
    # Strategy 1 of node 2 uses 20: peak 55 over the limit 50.
    cost, peak, feasible = p.evaluate(np.array([0, 0, 1, 1, 0]))
    assert (cost, peak, feasible) == (15 + 55 + 45 + 75 + 95 + 30 + 10 + 10 + 20 + 60, 55, False)


def test_half_open_intervals_do_not_overlap_at_the_boundary() -> None:
    p = StrategyProblem.from_arrays(
        [[0, 10], [10, 20]], [[0.0], [0.0]], [[7], [7]], np.zeros((0, 2)), [], usage_limit=7
    )
    assert p.evaluate([0, 0]) == (0.0, 7, True)


def test_forbidden_cost_is_infeasible() -> None:
    p = StrategyProblem.from_arrays(
        [[0, 1], [0, 1]], [[1.0, 1e18], [2.0]], [[1, 1], [1]], [[0, 1]], [[0.0, 0.0]]
    )
    assert p.evaluate([0, 0])[2] is True
    assert p.evaluate([1, 0])[2] is False
    assert p.usage_limit is None


def test_gzip_and_wrapperless_json(tmp_path: Path) -> None:
    gz = tmp_path / "p.json.gz"
    gz.write_bytes(gzip.compress(EXAMPLE.read_bytes()))
    assert StrategyProblem.from_json(gz).evaluate([0, 0, 2, 1, 0])[0] == 445.0
    inner = write(tmp_path, example_dict()["problem"], "inner.json")
    assert StrategyProblem.from_json(inner).num_nodes == 5


def test_from_arrays_matches_json() -> None:
    d = example_dict()["problem"]
    p = StrategyProblem.from_arrays(
        d["nodes"]["intervals"],
        d["nodes"]["costs"],
        d["nodes"]["usages"],
        d["edges"]["nodes"],
        d["edges"]["costs"],
        usage_limit=d["usage_limit"],
    )
    q = StrategyProblem.from_json(EXAMPLE)
    for sol in ([0, 0, 2, 1, 0], [0, 1, 0, 0, 0], [0, 1, 1, 1, 0]):
        assert p.evaluate(sol) == q.evaluate(sol)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["nodes"]["usages"][2].pop(), "node 2 has 3 costs but 2 usages"),
        (lambda d: d["nodes"]["costs"].pop(), "nodes.costs has 4 rows but nodes.intervals has 5"),
        (lambda d: d["edges"]["nodes"].__setitem__(3, [2, 9]), r"edge 3 joins nodes \(2, 9\) but there"),
        (lambda d: d["edges"]["costs"][1].append(1), r"edge 1 \(0, 2\) has 4 costs, expected 3"),
        (lambda d: d["nodes"]["intervals"].__setitem__(1, [70, 40]), "node 1: interval .* ends before"),
        (lambda d: d["nodes"]["intervals"].__setitem__(1, [70]), r"nodes.intervals\[1\] has 1 entries"),
        (
            lambda d: d["nodes"]["costs"].__setitem__(0, []) or d["nodes"]["usages"].__setitem__(0, []),
            "node 0 has no strategies",
        ),
        (lambda d: d.__setitem__("usage_limit", -5), "usage_limit must be >= 0"),
        (lambda d: d["nodes"]["usages"][1].__setitem__(0, "x"), "expected a number"),
        (lambda d: d.pop("nodes"), "no nodes.intervals"),
    ],
)
def test_bad_content_names_the_culprit(tmp_path: Path, mutate, message: str) -> None:
    d = example_dict()
    mutate(d["problem"])
    with pytest.raises(ValueError, match=message):
        StrategyProblem.from_json(write(tmp_path, d))


@pytest.mark.parametrize("text", ['{"problem": {', '{"problem": [1, 2]}', "", '{"problem": {}} x', "nul"])
def test_malformed_json(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError, match="malformed problem JSON at byte|no nodes"):
        StrategyProblem.from_json(write(tmp_path, text))


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "p.json.gz"
    path.write_bytes(gzip.compress(EXAMPLE.read_bytes())[:40])
    with pytest.raises(ValueError, match="not a readable gzip file"):
        StrategyProblem.from_json(path)


def test_bad_solutions() -> None:
    p = StrategyProblem.from_json(EXAMPLE)
    with pytest.raises(ValueError, match="solution has 4 entries, the problem has 5 nodes"):
        p.evaluate([0, 0, 0, 0])
    with pytest.raises(ValueError, match="node 2 picks strategy 3 but has 3 strategies"):
        p.evaluate([0, 0, 3, 0, 0])
    with pytest.raises(ValueError, match="node 1 picks strategy -1"):
        p.evaluate([0, -1, 0, 0, 0])
    with pytest.raises(ValueError, match="must hold integers"):
        p.evaluate([0.5, 0, 0, 0, 0])


def test_bad_arrays() -> None:
    with pytest.raises(ValueError, match="node 1 has 2 costs but 1 usages"):
        StrategyProblem.from_arrays([[0, 1], [0, 1]], [[1.0], [1.0, 2.0]], [[1], [1]], [], [])
    with pytest.raises(ValueError, match="intervals must have shape"):
        StrategyProblem.from_arrays([0, 1], [[1.0]], [[1]], [], [])
    with pytest.raises(ValueError, match=r"edge 0 \(0, 1\) has 1 costs, expected 2"):
        StrategyProblem.from_arrays([[0, 1], [0, 1]], [[1.0], [1.0, 2.0]], [[1], [1, 1]], [[0, 1]], [[0.0]])
    with pytest.raises(ValueError, match="edge 0 joins node 1 to itself"):
        StrategyProblem.from_arrays([[0, 1], [0, 1]], [[1.0], [1.0]], [[1], [1]], [[1, 1]], [[0.0]])
    with pytest.raises(ValueError, match="edge_costs has 0 arrays but edges has 1 rows"):
        StrategyProblem.from_arrays([[0, 1], [0, 1]], [[1.0], [1.0]], [[1], [1]], [[0, 1]], [])


@pytest.mark.skipif(contest_file("A") is None, reason=f"contest data absent (set {CONTEST_ENV})")
def test_largest_public_problem_loads_and_evaluates() -> None:
    p = StrategyProblem.from_json(contest_file("A"))
    assert (p.num_nodes, p.num_edges) == (34932, 54801)
    cost, peak, feasible = p.evaluate(np.zeros(p.num_nodes, dtype=np.int64))
    assert peak > 0 and cost > 0 and not feasible  # strategy 0 everywhere hits forbidden costs
