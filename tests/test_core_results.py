"""autopar._core hands results back as typed, read-only objects (not dicts keyed by strings)."""

from pathlib import Path

import numpy as np
import pytest

from autopar import _core
from autopar.solver import StrategyProblem

EXAMPLE = Path(__file__).resolve().parent / "data" / "iopddl_example.json"


def _fields(obj) -> list[str]:
    return [k for k in dir(type(obj)) if not k.startswith("_")]


def test_heuristic_result_is_typed_and_read_only():
    p = StrategyProblem.from_json(EXAMPLE)
    h = _core.solve_heuristic(p._core, 1.0, 0, 10, None)
    assert isinstance(h, _core.HeuristicResult)
    assert h.solution.dtype == np.int64 and h.solution.shape == (p.num_nodes,)
    assert h.feasible and p.evaluate(h.solution) == (h.cost, h.peak_usage, True)
    assert isinstance(h.rounds, int) and isinstance(h.cost, float)
    assert repr(h).startswith("HeuristicResult(cost=")
    with pytest.raises(AttributeError):
        h.cost = 0.0
    with pytest.raises(TypeError):
        h["cost"]  # noqa: B018


def test_problem_and_ilp_arrays():
    p = StrategyProblem.from_json(EXAMPLE)
    a = p.arrays()
    assert isinstance(a, _core.ProblemArrays)
    names = "interval_start interval_end strategy_offset node_cost node_usage edge_u edge_v edge_offset"
    assert _fields(a) == sorted([*names.split(), "edge_cost"])
    assert a.strategy_offset.shape == (p.num_nodes + 1,) and a.edge_u.dtype == np.int32
    assert a.node_cost is a.node_cost  # converted once
    assert repr(a) == f"ProblemArrays(num_nodes={p.num_nodes}, num_edges={p.num_edges})"
    gm = _core.GroupModel(p._core)
    st = gm.stats()
    assert isinstance(st, _core.PresolveStats) and st.groups == gm.num_groups
    assert "groups=" in repr(st)
    free = gm.free_groups()
    h = _core.solve_heuristic(p._core, 1.0, 0, 10, None)
    model = gm.build(gm.encode(h.solution), free, 10**7)
    ilp = model.arrays()
    assert isinstance(ilp, _core.IlpArrays)
    assert ilp.col_cost.shape == (model.num_cols,) and ilp.row_start.shape == (model.num_rows + 1,)
    assert repr(ilp) == f"IlpArrays(num_cols={model.num_cols}, num_rows={model.num_rows})"


def test_inter_op_results():
    out = _core.cluster_layers([1.0] * 4, [(0, 2.0, [2])], 2, 0.0)
    assert isinstance(out, _core.LayerClusteringResult)
    assert out.layer_of_block == [0, 0, 1, 1] and out.boundary_bytes == 2.0
    assert repr(out).startswith("LayerClusteringResult(num_blocks=4")
    plan = _core.solve_stages(2, 1, 4, [1], 1, [1.0, 2.0, float("inf"), 1.0], [8] * 4)
    assert isinstance(plan, _core.StageDpResult) and plan.feasible
    (stage,) = plan.stages
    assert isinstance(stage, _core.StageChoice)
    assert (stage.start_layer, stage.end_layer, stage.submesh, stage.config, stage.cost) == (0, 2, 0, 0, 2.0)
    assert repr(stage) == "StageChoice(start_layer=0, end_layer=2, submesh=0, config=0, cost=2.0)"
    with pytest.raises(AttributeError):
        plan.latency = 0.0
