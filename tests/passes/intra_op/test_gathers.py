"""An argument several ops read is gathered once, and priced once (passes/intra_op/gathers.py)."""

import dataclasses
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import autopar
from autopar.api import explain_problem
from autopar.passes.intra_op import PlanningGraph, gathers, problem, resharding, solve


@dataclasses.dataclass(frozen=True)
class FamilyParallel(autopar.ShardParallel):
    family: str = ""

    def pipeline(self, mesh_shape, axis_names):
        text = super().pipeline(mesh_shape, axis_names)
        return text[: -len("})")] + f" plan-family={self.family}}})" if self.family else text


def twice_read_step(params, x):
    """SGD on a weight that the forward pass reads twice (and the backward pass twice more)."""

    def loss(p):
        h = jnp.tanh(x @ p["w"])
        return jnp.mean((h @ p["w"]) ** 2)

    grads = jax.grad(loss)(params)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)


def _args():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((64, 64)) * 0.1, jnp.float32)}
    return params, jnp.asarray(rng.standard_normal((32, 64)), jnp.float32)


def _plan(family: str, mesh=(8,)):
    f = autopar.parallelize(
        twice_read_step, method=FamilyParallel(mesh_shape=mesh, family=family), batch_argnums=(1,)
    )
    return f, f.get_execution_plan(*_args())


def _problems(plan):
    """The plan's problem as the pass builds it, and the same problem priced edge by edge (no gathers)."""
    config = explain_problem.intra_op_options(plan.source.pipeline)
    stripped = explain_problem.strip_plan(plan.source.module)
    shared = problem.build(PlanningGraph(stripped).graph, config)
    original = gathers.gather_once
    try:
        gathers.gather_once = lambda graph, node_strategies, config: node_strategies
        graph = PlanningGraph(stripped).graph
        per_edge = problem.build(graph, config)
    finally:
        gathers.gather_once = original
    return graph, config, shared, per_edge


def test_zero3_gathers_a_parameter_once_for_all_its_readers_as_xla_does():
    f, plan = _plan("zero3")
    # The weight stays split over the 8 devices, and one all-gather serves the dots that read it whole.
    assert plan.parameter_specs()["params['w']"] != jax.sharding.PartitionSpec()
    explanation = str(plan.explain("params['w']"))
    assert "gathered once to replicated for its readers" in explanation
    compiled = plan.collective_counts().get("all-gather", 0)
    assert compiled == plan.expected_counts().get("all-gather", 0) == 1
    # The compiled all-gather names the tensor and the line of the op that first reads it so.
    (line,) = [t for t in str(plan).splitlines() if t.strip().startswith("all-gather") and "<-" in t]
    assert line.endswith("(params['w'])") and "test_gathers.py:" in line, line
    np.testing.assert_allclose(
        jax.tree.leaves(f(*_args()))[0], jax.tree.leaves(jax.jit(twice_read_step)(*_args()))[0], rtol=2e-5
    )


def test_the_gather_is_priced_once_where_the_edges_priced_it_per_reader():
    _, plan = _plan("zero3")
    graph, config, shared, per_edge = _problems(plan)
    w = next(v for v in range(graph.num_args) if graph.nodes[v].path == "params['w']")
    readers = [
        (v, k)
        for v, node in enumerate(graph.nodes)
        for k, (u, _) in enumerate(node.operands)
        if u == w and graph.nodes[v].kind == "stablehlo.dot_general"
    ]
    assert len(readers) >= 2
    chosen = solve.solve_as_configured(shared, graph, config).strategies
    s = shared.strategies[w]
    layout, gathered = s.result_layouts[0][chosen[w]], s.gathered[chosen[w]]
    assert (layout >= 0).any() and (gathered < 0).all()
    one_gather = resharding.reshard_cost(
        layout[None], gathered[None], (64, 64), 4, config.mesh, config.allow_all_gather, True
    )[0, 0]
    assert one_gather > 0
    # The same strategies priced edge by edge: every reader that needs the weight whole pays the gather.
    old_chosen = []
    for v, k in enumerate(chosen):
        old = per_edge.strategies[v]
        if v != w:
            old_chosen.append(k)
            continue
        old_chosen.append(int(np.flatnonzero((old.result_layouts[0] == layout).all(axis=1))[0]))
    whole = sum(
        1 for v, k in readers if (shared.strategies[v].operand_layouts[k][chosen[v]] == gathered).all()
    )
    assert whole >= 2
    saved = per_edge.objective(old_chosen) - shared.objective(list(chosen))
    assert saved == pytest.approx((whole - 1) * one_gather, rel=1e-9)


@pytest.mark.parametrize("mesh", [(8,), (2, 4)])
def test_every_plan_priced_edge_by_edge_is_still_a_plan_at_the_same_price(mesh):
    """The pairs include "no gather" for every layout, so the model never prices a plan higher than
    before: the edge-wise plan maps onto the pairs at its old objective (or less)."""
    _, plan = _plan("", mesh)
    graph, config, shared, per_edge = _problems(plan)
    old = solve.solve_as_configured(per_edge, graph, config)
    mapped = []
    for v, k in enumerate(old.strategies):
        s = shared.strategies[v]
        if s.gathered is None:
            mapped.append(k)
            continue
        layout = per_edge.strategies[v].result_layouts[0][k]
        same = (s.result_layouts[0] == layout).all(axis=1) & (s.gathered == layout).all(axis=1)
        mapped.append(int(np.flatnonzero(same)[0]))
    assert shared.objective(mapped) == pytest.approx(per_edge.objective(list(old.strategies)), rel=1e-12)


def test_a_family_that_fixes_every_layout_picks_each_arguments_cheapest_gather():
    from autopar.passes.intra_op import families

    _, plan = _plan("zero3")
    graph, config, shared, _ = _problems(plan)
    core = problem.to_solver_problem(shared, None)
    zero3 = families.plan(graph, shared, config, ("zero3",), core, None)
    chosen = [int(k) for k in zero3.strategies]
    assert zero3.cost == pytest.approx(shared.objective(chosen))
    expanded = [v for v in range(graph.num_args) if shared.strategies[v].gathered is not None]
    assert expanded
    for v in expanded:
        s = shared.strategies[v]
        same_layout = np.flatnonzero((s.result_layouts[0] == s.result_layouts[0][chosen[v]]).all(axis=1))
        for other in same_layout:
            trial = list(chosen)
            trial[v] = int(other)
            assert shared.objective(trial) >= zero3.cost * (1 - 1e-12)


def test_an_arguments_alternatives_are_other_layouts_each_with_its_best_gather():
    _, plan = _plan("")
    e = plan.explain("params['w']")
    layout = lambda text: text.split(", gathered once")[0]  # noqa: E731
    others = [layout(a.strategy) for a in e.alternatives]
    assert others and len(set(others)) == len(others) and layout(e.strategy) not in others
