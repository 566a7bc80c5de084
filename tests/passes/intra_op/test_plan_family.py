"""Option plan-family: a fixed plan of the family grid, priced by the pass's own cost model (what
benchmarks/cost_model.py compares against measured step times)."""

from pathlib import Path

import pytest

import autopar
from autopar.errors import PassError
from autopar.ir import attrs, io
from autopar.passes import intra_op

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "mlp_train_step.mlir"


@pytest.fixture
def module():
    m = io.load(EXAMPLE)
    autopar.passes.run(m, "builtin.module(autopar-inline)")
    return m


def test_a_family_costs_what_the_pass_writes_and_never_beats_the_search(module):
    solved = intra_op.estimate(module, (2, 4))[0]
    costs = {}
    for family in ("data,model", "model,data", "data,data", "zero2,zero2"):
        cost, peak, status = intra_op.estimate(module, (2, 4), plan_family=family)
        assert status == "feasible" and peak > 0
        assert cost >= solved * (1 - 1e-9)  # the search starts from the best family
        costs[family] = cost
    assert len(set(costs.values())) == len(costs)  # different plans, different prices
    autopar.passes.run(module, "builtin.module(autopar-intra-op{mesh=2x4 plan-family=model,data})")
    result = attrs.get_intra_op_result(module.operation)
    assert result.objective == pytest.approx(costs["model,data"])


@pytest.mark.parametrize("family", ["data", "data,model,data", "pipeline,data"])
def test_a_family_needs_one_known_role_per_active_axis(module, family):
    with pytest.raises(PassError, match="plan-family"):
        intra_op.estimate(module, (2, 4), plan_family=family)
