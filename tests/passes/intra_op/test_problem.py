"""autopar's own intra-op problems (tests/data/intra_op_*.json.gz, written by benchmarks/intra_op_problems.py)
solved by the contest solver with its defaults, the helper that builds them, and the benchmark itself."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import autopar
from autopar.solver import StrategyProblem, relative_gap, solve

# Reads the wall clock (time limits, clock cuts): runs with no other test beside it (tests/conftest.py).
pytestmark = pytest.mark.alone

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data"
# Loose: at these time limits the solver proves the memory-free 2x4 GPT optimal and ends within ~4 % of its
# bound on the others (benchmarks/intra_op_problems.py at 10 s: 0 %, 0 % and 3.8 %); a regression that
# loses the bound or the search shows up as a far larger gap.
MAX_GAP = 0.15
PROBLEMS = {  # file: (seconds, memory-bound, largest gap)
    "intra_op_gpt_2x4.json.gz": (2.0, False, MAX_GAP),
    "intra_op_wresnet_8_mem50.json.gz": (2.0, True, MAX_GAP),
    "intra_op_moe_2x4_mem50.json.gz": (3.0, True, MAX_GAP),
    # The exact path's HiGHS does not prove this one within seconds; toulbar2's priced optima before it
    # bring the plan within 0.8 % of the bound at 3 s (its plan was 12.7 % away at 10 s and 30 s without).
    "intra_op_gpt_2x4_mem50.json.gz": (3.0, True, 0.02),
}


def without_limit(p: StrategyProblem) -> StrategyProblem:
    a = p.arrays()
    so, eo = a.strategy_offset, a.edge_offset
    return StrategyProblem.from_arrays(
        np.stack([a.interval_start, a.interval_end], axis=1),
        [a.node_cost[so[i] : so[i + 1]] for i in range(p.num_nodes)],
        [a.node_usage[so[i] : so[i + 1]] for i in range(p.num_nodes)],
        np.stack([a.edge_u, a.edge_v], axis=1).astype(np.int64),
        [a.edge_cost[eo[e] : eo[e + 1]] for e in range(p.num_edges)],
    )


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_solves_autopar_problem(name: str) -> None:
    seconds, memory_bound, max_gap = PROBLEMS[name]
    p = StrategyProblem.from_json(DATA / name)
    assert p.num_nodes > 900 and p.num_edges > 900
    assert (p.usage_limit is not None) == memory_bound
    sol = solve(p, time_limit=seconds)
    assert sol.feasible, sol.message
    cost, peak, feasible = p.evaluate(sol.strategies)
    assert feasible and cost == sol.cost and peak == sol.peak_memory
    assert sol.lower_bound is not None, sol.message
    assert relative_gap(sol.cost, sol.lower_bound) <= max_gap, sol.message
    if memory_bound:  # the limit binds: the memory-free optimum breaks it, and costs less
        free = solve(without_limit(p), time_limit=seconds)
        assert free.status == "optimal" and free.peak_memory > p.usage_limit
        assert free.cost <= sol.cost


def _tiny_module():
    sys.path.insert(0, str(ROOT))  # benchmarks/ (not a package on the path)
    from benchmarks.intra_op_problems import lower

    return lower("tiny")


def test_strategy_problem_is_what_the_pass_solves() -> None:
    """The helper's problem, solved to optimality, has the objective `estimate` reports for the pass; its
    memory budget becomes the usage limit."""
    from autopar.passes.intra_op import PlanningGraph, estimate, strategy_problem

    module = _tiny_module()
    p = strategy_problem(module, "2x4", name="tiny")
    assert p.name == "tiny" and p.usage_limit is None
    sol = solve(p, time_limit=5.0)
    objective, peak, status = estimate(module, (2, 4))
    assert sol.status == status == "optimal"
    assert sol.cost == pytest.approx(objective, rel=1e-9)
    limited = PlanningGraph(module).strategy_problem("2x4", memory_budget=10**9)
    assert limited.usage_limit == 10**9 and limited.num_nodes == p.num_nodes


def test_benchmark_smoke(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(autopar.__file__).resolve().parents[1])
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/intra_op_problems.py",
            "--models",
            "tiny",
            "--meshes",
            "2x4",
            "--time-limit",
            "1",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| tiny_2x4 | " in out.stdout and "| tiny_2x4_mem50 | " in out.stdout
    assert "| NO |" not in out.stdout
    limited = StrategyProblem.from_json(tmp_path / "tiny_2x4_mem50.json.gz")
    assert limited.usage_limit is not None
    assert StrategyProblem.from_json(tmp_path / "tiny_2x4.json.gz").num_nodes == limited.num_nodes


def test_the_exact_path_solves_the_memory_free_network_once(monkeypatch) -> None:
    """The exact path's memory-free round hands its solution to the priced rounds, which took it from a second
    toulbar2 solve of the same unpriced network before (0.4-0.6 s on the contest's B and G)."""
    from autopar.solver.cfn import PricedCfn

    unpriced, solve_cfn = [], PricedCfn.solve

    def counting(self, node_price, *args, **kwargs):
        unpriced.append(node_price is None)
        return solve_cfn(self, node_price, *args, **kwargs)

    monkeypatch.setattr(PricedCfn, "solve", counting)
    p = StrategyProblem.from_json(DATA / "intra_op_gpt_2x4_mem50.json.gz")
    sol = solve(p, time_limit=6.0)  # at 3 s the priced phase's budget pays for one repair and no round
    assert "exact path" in sol.message and sol.feasible
    assert sum(unpriced) == 1 and len(unpriced) > 1  # one memory-free solve, then priced ones
    assert relative_gap(sol.cost, sol.lower_bound) <= PROBLEMS["intra_op_gpt_2x4_mem50.json.gz"][2]
