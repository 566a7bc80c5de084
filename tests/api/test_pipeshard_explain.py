"""`PipeshardExecutionPlan.explain(path)`: per stage function reading the argument, the chosen layout's cost
split and alternatives on that stage's re-solved problem (matching the layout the module has), the stage's
summary with its transfers; one-device stages say there is nothing to choose; and
`PipeshardExecutionPlan.diff`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import autopar
from autopar.api.explain import ExplainError

PARAMS = [jax.ShapeDtypeStruct((64, 64), jnp.float32)] * 4
BATCH = (jax.ShapeDtypeStruct((32, 64), jnp.float32),) * 2


def mlp_step(params, batch):
    x, y = batch

    def loss(ps):
        h = x
        for w in ps:
            h = jnp.tanh(h @ w)
        return jnp.mean((h - y) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    return [p - 0.5 * g for p, g in zip(params, grads, strict=True)], value


def plan_of(num_stages: int, micro_batches: int = 2, cluster=(2, 4)):
    method = autopar.PipeshardParallel(
        num_micro_batches=micro_batches,
        layer_option=autopar.AutoLayerOption(layer_num=4),
        stage_option=autopar.UniformStageOption(num_stages=num_stages),
        cluster_shape=cluster,
    )
    f = autopar.parallelize(mlp_step, method=method, devices=jax.devices()[: cluster[0] * cluster[1]])
    return f.get_execution_plan(PARAMS, BATCH)


@pytest.fixture(scope="module")
def plan():
    return plan_of(2)


def test_each_stage_function_gets_a_mesh_plan_explanation(plan):
    e = plan.explain("params[3]")
    assert [p.function for p in e.parts] == ["stage_1_forward", "stage_1_backward", "stage_1_apply"]
    specs = {(t.stage, t.part): t.spec for t in e.reads}
    for p in e.parts:
        x = p.explanation
        assert p.stage == 1 and x is not None
        assert x.target == f"params[3] in @{p.function}" and x.node.startswith("argument %arg")
        # The re-solved stage problem gives the layout the module has (no note saying otherwise).
        assert x.note == ""
        if (p.stage, p.part) in specs:
            assert x.strategy == specs[(p.stage, p.part)]
        c = x.cost
        parts = c.compute + sum(c.communication.values())
        parts += sum(r.seconds for r in (*c.reshard_in, *c.reshard_out))
        assert c.total == pytest.approx(parts) and c.memory > 0
        assert 0 < c.total <= x.objective
        assert x.alternatives and all(a.strategy != x.strategy for a in x.alternatives)
        assert all(a.delta is not None and a.delta >= -1e-12 for a in x.alternatives)
    text = str(e)
    assert "  params[3] in @stage_1_forward: argument %arg1 of @stage_1_forward on [x=4, y=1]\n" in text
    assert "of @stage_1_forward's " in text and "alternatives (extra seconds over the plan):" in text


def test_stage_summary_has_cost_memory_and_transfers(plan):
    (summary,) = plan.explain("params[0]").summaries
    s = summary.placement
    assert s.index == 0 and s.estimated_cost > 0 and s.estimated_memory > 0
    assert [(t.src, t.dst) for t in summary.receives] == [(1, 0)]
    assert [(t.src, t.dst) for t in summary.sends] == [(0, 1)]
    assert all(t.bytes > 0 and t.seconds > 0 for t in (*summary.receives, *summary.sends))
    text = str(summary)
    assert text.startswith("stage 0: layers [0, 3), devices [0, 1, 2, 3], logical mesh 4x1, ")
    assert "\n  receives from stage 1: 1 value(s), 4.0 KiB, " in text
    assert "\n  sends to stage 1: 1 value(s), 4.0 KiB, " in text


def test_one_device_stages_have_nothing_to_choose():
    plan = plan_of(2, cluster=(1, 2))
    e = plan.explain("params[0]")
    assert e.parts and all(p.explanation is None for p in e.parts)
    assert "@stage_0_forward: one device, replicated: nothing to choose" in str(e)
    with pytest.raises(ExplainError, match="no argument any stage reads"):
        plan.explain("params[7]")


def test_diff_of_two_pipeshard_plans(plan):
    other = plan_of(4, micro_batches=4)
    d = plan.diff(other)
    assert [c.index for c in d.stages] == [0, 1, 2, 3]
    assert d.stages[2].before == "" and d.stages[2].after.startswith("layers [2, 3) on submesh 1x2")
    assert d.latency == (plan.estimated_latency, other.estimated_latency)
    assert d.latency_delta == pytest.approx(other.estimated_latency - plan.estimated_latency)
    assert d.bubble == (plan.estimated_bubble, other.estimated_bubble) and d.micro_batches == (2, 4)
    assert d.transfer_bytes == (sum(t.bytes for t in plan.transfers), sum(t.bytes for t in other.transfers))
    moved = {c.path: c for c in d.layouts}
    assert "stage 1 forward" in moved["params[3]"].before and "stage 3 forward" in moved["params[3]"].after
    text = str(d)
    assert text.startswith("stages: 4 differ\n  stage 0: layers [0, 3) on submesh 1x4")
    assert "\nbubble: 0.500 -> " in text and "\nlayouts that differ: " in text
    same = plan.diff(plan)
    assert same.stages == () and same.layouts == () and same.latency_delta == 0


def test_a_stage_is_explained_with_its_own_stage_options():
    # Stage 1 forces data parallelism (stage-options): its parameters have no other strategy left,
    # while stage 0, planned with the method's options, has alternatives.
    stages = autopar.ManualStageOption(
        forward_stage_layer_ids=[[0, 1], [2, 3]],
        submesh_physical_shapes=[(1, 4), (1, 4)],
        submesh_logical_shapes=[(2, 2), (2, 2)],
        submesh_autosharding_option_dicts=[{}, {"force_data_parallel": True}],
    )
    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=4),
        stage_option=stages,
        cluster_shape=(2, 4),
    )
    plan = autopar.parallelize(mlp_step, method=method).get_execution_plan(PARAMS, BATCH)
    free, forced = plan.explain("params[0]").parts, plan.explain("params[3]").parts
    assert all(p.stage == 0 and p.explanation.alternatives for p in free)
    assert all(p.stage == 1 and p.explanation.alternatives == () for p in forced)
    for p in (*free, *forced):
        assert p.explanation.note == ""  # the re-solve gives the module's layout
    assert "no alternative: this is the only strategy the options leave" in str(plan.explain("params[3]"))


def test_an_op_is_explained_in_every_stage_function_that_has_it(plan):
    line = f"test_pipeshard_explain.py:{mlp_step.__code__.co_firstlineno + 6}"  # h = jnp.tanh(h @ w)
    e = plan.explain(line)
    assert e.ops >= 4 and not e.reads
    assert {p.stage for p in e.parts} == {0, 1} and {s.placement.index for s in e.summaries} == {0, 1}
    functions = {p.function for p in e.parts}
    assert {"stage_0_forward", "stage_1_forward", "stage_1_backward"} <= functions
    for p in e.parts:
        x = p.explanation
        assert x is not None and x.target == f"{line} in @{p.function}"
        assert x.node.startswith("op #") and f" of @{p.function} on [" in x.node
        assert 0 <= x.cost.total <= x.objective
    text = str(e)
    assert text.startswith(f"{line}: {e.ops} op(s) in {len(functions)} stage function(s)")
    if e.ops > 8:
        assert len(e.parts) == 8
        assert "ops match: 8 are explained, the first of each stage function first" in text
    (dot,) = [p for p in plan.explain("dot_general").parts if p.function == "stage_0_forward"][:1]
    assert "dot_general" in dot.explanation.node


def test_an_op_of_a_one_device_stage_has_nothing_to_choose():
    plan = plan_of(2, cluster=(1, 2))
    e = plan.explain("tanh")
    assert e.ops and all(p.explanation is None for p in e.parts)
    with pytest.raises(ExplainError, match="nor an op name or source location"):
        plan.explain("no_such_op.py:1")


def conv_step(params, images):
    """Stage 0: a grouped convolution (8 input features in 2 groups); stage 1: a dense layer."""

    def loss(ps):
        kernel, w = ps
        h = jax.lax.conv_general_dilated(
            images, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2
        )
        h = autopar.mark_pipeline_boundary(jnp.tanh(h))
        return jnp.mean(jnp.tanh(h.reshape(h.shape[0], -1) @ w) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    return [p - 0.1 * g for p, g in zip(params, grads, strict=True)], value


def test_stage_remarks_and_platform_remarks_reach_the_plan(tmp_path):
    import json

    from autopar.api import plan_report
    from autopar.api.methods import REDUCE_SCATTER_ON_CPU

    params = [
        jax.ShapeDtypeStruct((3, 3, 4, 8), jnp.float32),
        jax.ShapeDtypeStruct((8 * 8 * 8, 16), jnp.float32),
    ]
    images = jax.ShapeDtypeStruct((8, 8, 8, 8), jnp.float32)
    # Stage 1 asks for reduce-scatters, which XLA on CPU does not compile (methods.as_compiled_for).
    manual = autopar.ManualStageOption(
        forward_stage_layer_ids=[[0], [1]],
        submesh_physical_shapes=[(1, 4), (1, 4)],
        submesh_logical_shapes=[(4, 1), (4, 1)],
        submesh_autosharding_option_dicts=[{}, {"prefer_reduce_scatter": True}],
    )
    method = autopar.PipeshardParallel(num_micro_batches=2, stage_option=manual)
    f = autopar.parallelize(conv_step, method=method, batch_argnums=(1,))
    asked = "stage-options='1:prefer-reduce-scatter=true'"
    assert asked in method.pipeline((1, 8)) and "reduce-scatter=true" not in f.method.pipeline((1, 8))
    plan = f.get_execution_plan(params, images)
    assert plan.remarks[0] == REDUCE_SCATTER_ON_CPU
    # The grouped convolution's remark comes from stage 0's forward plan (and its backward's), named so.
    grouped = [r for r in plan.remarks if "form 2 groups" in r]
    assert grouped and grouped[0].startswith("stage 0 forward: stablehlo.convolution at "), plan.remarks
    assert all(r.startswith("stage 0 ") for r in grouped) and len(set(plan.remarks)) == len(plan.remarks)
    assert f"remark: {grouped[0]}" in str(plan)
    plan.report(tmp_path / "plan.html")
    assert "form 2 groups" in (tmp_path / "plan.html").read_text()
    # --plan-report's data reads the same stage remarks from the module.
    data = json.loads(json.dumps(plan_report.report(plan.source.module)))
    assert data["remarks"] == [r for r in plan.remarks if r.startswith("stage ")]
