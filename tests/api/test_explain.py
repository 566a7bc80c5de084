"""Why a plan is what it is: `ExecutionPlan.explain` (chosen strategy, cost split, alternatives),
`ExecutionPlan.diff`, the source line of every compiled collective, and `PipeshardExecutionPlan.explain`."""

from __future__ import annotations

import inspect
import re

import jax
import jax.numpy as jnp
import pytest

import autopar
from autopar.api.explain import ExplainError


def step(params, x):
    def loss(p):
        h = jax.nn.relu(x @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] * p["s"]) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value


PARAMS = {
    "w1": jax.ShapeDtypeStruct((64, 1024), jnp.float32),
    "b1": jax.ShapeDtypeStruct((1024,), jnp.float32),
    "w2": jax.ShapeDtypeStruct((1024, 16), jnp.float32),
    "s": jax.ShapeDtypeStruct((16,), jnp.float32),
}
X = jax.ShapeDtypeStruct((2048, 64), jnp.float32)


def plan_on(mesh):
    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=mesh))
    return f.get_execution_plan(PARAMS, X)


@pytest.fixture(scope="module")
def plan():
    return plan_on((2, 4))


def check_split(e):
    c = e.cost
    parts = (
        c.compute
        + sum(c.communication.values())
        + sum(r.seconds for r in c.reshard_in)
        + sum(r.seconds for r in c.reshard_out)
    )
    assert c.total == pytest.approx(parts, rel=1e-12)
    assert c.compute >= 0 and all(v >= 0 for v in c.communication.values())


def test_explain_a_sharded_and_a_replicated_weight(plan):
    specs = {t.path: str(t.spec) for t in plan.inputs}
    for path, want in (("params['w1']", "P(None, 'x')"), ("params['s']", "replicated")):
        e = plan.explain(path)
        assert e.target == path and e.node == f"argument {path}"
        assert e.strategy == want and (want == "replicated" or specs[path] == want)
        check_split(e)
        assert e.cost.memory > 0
        # The plan is proven optimal: forcing any other strategy costs at least as much.
        assert 1 <= len(e.alternatives) <= 3
        for a in e.alternatives:
            assert a.delta is not None and a.delta >= -1e-12 and a.local_delta >= -1e-12
            assert a.strategy != e.strategy
        assert [a.delta for a in e.alternatives] == sorted(a.delta for a in e.alternatives)
        text = str(e)
        assert text.startswith(f"{path}: argument {path}\n  chosen: {want}")
        assert "alternatives (extra seconds over the plan):" in text and "re-solved" in text
    # The replicated one could have been split: the alternatives say what that would have cost.
    assert any("'x'" in a.strategy for a in plan.explain("params['s']").alternatives)


def test_explain_an_op_ties_its_collective_to_the_source_line(plan):
    lines, first = inspect.getsourcelines(step)
    with_collectives = []
    for i in range(40):
        try:
            e = plan.explain(i, top=0)
        except ExplainError:
            break
        check_split(e)
        if e.collectives:
            with_collectives.append(e)
    assert with_collectives, "no op of the plan owns a compiled collective"
    e = with_collectives[0]
    assert e.node.startswith("op #") and "test_explain.py:" in e.node
    assert "test_explain.py:" in e.collectives[0] and "<- " in e.collectives[0]
    assert any(e.cost.communication for e in with_collectives)


def test_collectives_name_their_source_line(plan):
    lines, first = inspect.getsourcelines(step)
    sources = [s for s in plan.collective_sources if s is not None]
    assert len(plan.collective_sources) == len(plan.collectives) and sources
    for s in sources:
        assert s.file == __file__ and first <= s.line < first + len(lines), s
        assert s.op_name
    assert f"<- test_explain.py:{sources[0].line} (" in str(plan)


def test_explain_output_and_errors(plan):
    e = plan.explain("out[1]")  # the loss: a scalar computed by an op
    assert e.node.startswith("op #") and e.strategy.endswith("-> replicated")
    with pytest.raises(ExplainError, match="no argument or result path"):
        plan.explain("params['nope']")
    with pytest.raises(ExplainError, match="out of range"):
        plan.explain(10_000)
    with pytest.raises(ExplainError, match="matches .* ops"):
        plan.explain("dot_general")
    # Not a str or an int: said so, not "'NoneType' object has no attribute 'strip'" from inside.
    with pytest.raises(TypeError, match=r"takes a path, .* or an op index \(an int\), got NoneType"):
        plan.explain(None)
    with pytest.raises(ValueError, match="top must be an int >= 0 .*, got -1"):
        plan.explain("params['w1']", top=-1)


def test_explain_takes_ssa_names_as_the_module_prints_them(plan):
    text = plan.source.module.operation.get_asm()  # what f.lower(...).as_text() prints
    dots = re.findall(r"^    (%\w+) = stablehlo.dot_general", text, re.M)
    constraint = re.search(r"^    (%\w+) = sdy.sharding_constraint (%\w+) ", text, re.M)
    assert dots and constraint
    e = plan.explain(dots[0])
    assert e.target == f"{dots[0]} (op #0)" and e.node.startswith("op #0 stablehlo.dot_general")
    assert e.strategy == plan.explain(0).strategy and e.note == ""
    # A constraint is explained by the value it constrains, and says so.
    c = plan.explain(constraint.group(1))
    assert c.note.startswith(f"{constraint.group(1)} is the sharding constraint on {constraint.group(2)}: ")
    assert c.note.endswith(constraint.group(2)) and c.node == plan.explain(constraint.group(2)).node
    assert plan.explain("%arg0").node == f"argument {plan.inputs[0].path}"
    with pytest.raises(ExplainError, match=r"'%999' names no value of @main .*as_text\(\)"):
        plan.explain("%999")
    with pytest.raises(ExplainError, match=r"or an SSA name of @main as the plan's module prints it"):
        plan.explain("nothing_like_this")


def test_diff_of_two_meshes(plan):
    other = plan_on((8,))
    d = plan.diff(other)
    assert d.mesh == ("[x=2, y=4]", "[x=8]")
    assert d.cost == (plan.estimated_cost, other.estimated_cost)
    assert d.cost_delta == pytest.approx(other.estimated_cost - plan.estimated_cost)
    changed = {c.path for c in d.layouts}
    assert "x" in changed  # batch-split over y on 2x4, replicated on 8
    for c in d.layouts:
        assert c.before != c.after
    counts_a, counts_b = plan.collective_counts(), other.collective_counts()
    assert d.collectives == {k: (counts_a[k], counts_b[k]) for k in counts_a if counts_a[k] != counts_b[k]}
    text = str(d)
    assert text.startswith("mesh: [x=2, y=4] -> [x=8]\ncost: ")
    assert "layouts that differ:" in text and "  x  " in text
    assert plan.diff(plan).layouts == () and plan.diff(plan).collectives == {}


def test_manual_plans_cannot_be_explained():
    method = autopar.ShardParallel(
        manual_sharding_option=autopar.ManualShardingOption(("x",), in_axis_resources=(None, None))
    )
    f = autopar.parallelize(step, method=method, devices=jax.devices()[:8])
    plan = f.get_execution_plan(PARAMS, X)
    with pytest.raises(ExplainError, match="manual|keeps no planned module"):
        plan.explain("params['w1']")


def mlp_step(params, batch):
    x, y = batch

    def loss(ps):
        h = x
        for w in ps:
            h = jnp.tanh(h @ w)
        return jnp.mean((h - y) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    return [p - 0.5 * g for p, g in zip(params, grads, strict=True)], value


def test_pipeshard_explain_gives_stage_and_layout():
    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=4),
        stage_option=autopar.UniformStageOption(num_stages=2),
        cluster_shape=(2, 4),
    )
    params = [jax.ShapeDtypeStruct((64, 64), jnp.float32)] * 4
    batch = (jax.ShapeDtypeStruct((32, 64), jnp.float32),) * 2
    plan = autopar.parallelize(mlp_step, method=method).get_execution_plan(params, batch)
    assert plan.tensors and {t.stage for t in plan.tensors} == {0, 1}
    first, last = plan.explain("params[0]"), plan.explain("params[3]")
    assert {t.stage for t in first.reads} == {0} and {t.stage for t in last.reads} == {1}
    for t in (*first.reads, *last.reads):
        assert t.shape == (64, 64) and t.dtype == "float32" and t.mesh.startswith("[x=")
        assert t.spec == "replicated" or t.spec.startswith("P(")
    text = str(last)
    assert text.startswith("params[3]: read by") and "stage 1 forward: float32[64,64]" in text
    assert "devices [4, 5, 6, 7]" in text
    assert "    params[3] (forward): " in str(plan)
    with pytest.raises(ExplainError, match="no argument any stage reads"):
        plan.explain("params[9]")
    with pytest.raises(TypeError, match=r"takes a path, an op name or a source location \(a str\), got int"):
        plan.explain(3)
    mesh_plan = autopar.parallelize(mlp_step).get_execution_plan(params, batch)
    with pytest.raises(
        TypeError, match="got PipeshardExecutionPlan and ExecutionPlan: pass another Pipeshard"
    ):
        plan.diff(mesh_plan)
    with pytest.raises(
        TypeError, match="got ExecutionPlan and PipeshardExecutionPlan: pass another Execution"
    ):
        mesh_plan.diff(plan)
    with pytest.raises(TypeError, match="got ExecutionPlan and str"):
        mesh_plan.diff("plan.txt")


def test_explain_a_plan_family_plan_explains_that_plan():
    # plan-family plans one family without search: the explanation re-plans that family too, not the
    # solver's own plan (it used to, and explained a plan the module does not hold).
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class DataFamily(autopar.ShardParallel):
        def pipeline(self, mesh_shape, axis_names):
            return super().pipeline(mesh_shape, axis_names)[: -len("})")] + " plan-family=data})"

    f = autopar.parallelize(step, method=DataFamily(mesh_shape=(8,)))
    family = f.get_execution_plan(PARAMS, X)
    e = family.explain("params['w1']")
    assert e.objective == pytest.approx(family.estimated_cost, rel=1e-9)
    assert "re-solved" not in e.note and e.strategy == "replicated"


def test_a_source_line_names_the_ops_on_that_line_only():
    from autopar.api.explain_problem import ops_matching

    class Node:
        def __init__(self, kind, location):
            self.kind, self.location = kind, location

    class Graph:
        num_args = 0
        nodes = [
            Node("stablehlo.add", 'loc("/u/model.py":12:8)'),
            Node("stablehlo.dot_general", 'loc("/u/model.py":120:3)'),
            Node("stablehlo.tanh", 'loc("/u/other_model.py":12:1)'),
        ]

    assert ops_matching(Graph, "model.py:12") == [0]
    assert ops_matching(Graph, "model.py:12:8") == [0]
    assert ops_matching(Graph, "/u/model.py:120") == [1]
    assert ops_matching(Graph, "dot_general") == [1]
    assert ops_matching(Graph, "model.py:1") == []


def test_an_argument_without_a_pytree_path_is_named_once() -> None:
    # Raw IR (the CLI, an exported artifact) has no `autopar.path`: the graph names such an argument
    # `argument i`, which node_name used to prefix again ("argument argument 1").
    from autopar import ir as air
    from autopar.api.explain_problem import node_name
    from autopar.passes.intra_op import PlanningGraph

    text = """
    func.func public @main(%arg0: tensor<8x4xf32> {autopar.batch}, %arg1: tensor<4x4xf32> {autopar.parameter})
        -> tensor<8x4xf32> {
      %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0]
          : (tensor<8x4xf32>, tensor<4x4xf32>) -> tensor<8x4xf32>
      return %0 : tensor<8x4xf32>
    }
    """
    graph = PlanningGraph(air.parse_text(text)).graph
    assert [node_name(graph, v) for v in range(2)] == ["argument 0", "argument 1"]
