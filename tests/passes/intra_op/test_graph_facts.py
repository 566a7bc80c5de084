"""Facts the strategy problem reads from the graph (passes/intra_op/graph_facts.py), checked against what
XLA compiles."""

import dataclasses
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax
import jax.numpy as jnp
import numpy as np

import autopar
from autopar.api import explain_problem
from autopar.passes.intra_op.graph_facts import gradient_reductions, latency_share, merged_gradient_bytes


@dataclasses.dataclass(frozen=True)
class DataParallel8(autopar.ShardParallel):
    def pipeline(self, mesh_shape, axis_names):
        return super().pipeline(mesh_shape, axis_names)[: -len("})")] + " plan-family=data})"


def mlp_step(params, x):
    def loss(p):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] + p["b2"]) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value


def test_every_partial_sum_of_a_data_parallel_step_shares_the_one_all_reduce_xla_compiles():
    rng = np.random.default_rng(0)
    params = {
        "w1": jnp.asarray(rng.standard_normal((32, 64)), jnp.float32),
        "b1": jnp.zeros((64,), jnp.float32),
        "w2": jnp.asarray(rng.standard_normal((64, 16)), jnp.float32),
        "b2": jnp.zeros((16,), jnp.float32),
    }
    x = jnp.asarray(rng.standard_normal((64, 32)), jnp.float32)
    f = autopar.parallelize(mlp_step, method=DataParallel8(mesh_shape=(8,)), batch_argnums=(1,))
    plan = f.get_execution_plan(params, x)
    assert plan.collective_counts().get("all-reduce") == 1  # XLA's combiner: one for the whole step
    rebuilt = explain_problem.rebuild(plan.source)
    graph, prob = rebuilt.graph, rebuilt.problem
    gradients = gradient_reductions(graph)
    partial_sums = []
    for v, node in enumerate(graph.nodes[graph.num_args :], start=graph.num_args):
        if node.rule is None:
            continue
        assignment = prob.strategies[v].assignment[rebuilt.chosen[v]]
        if any(f >= 0 and f in node.rule.reduction for f in assignment):
            partial_sums.append(v)
    # The loss, the weights' and the biases' gradients (a bias's is a reduce over the batch, a reshape and a
    # reduce over a size-1 dim, which sums nothing): each pays a fifth of one all-reduce's latency.
    assert len(partial_sums) == 5
    assert {graph.nodes[v].kind for v in partial_sums} == {"stablehlo.dot_general", "stablehlo.reduce"}
    assert set(partial_sums) <= gradients
    assert all(latency_share(v, gradients) == 1 / len(gradients) for v in partial_sums)
    # The merged all-reduce a measured table prices each part at is the one XLA compiles, byte for byte.
    (compiled,) = [c for c in plan.collectives if c.kind == "all-reduce"]
    assert merged_gradient_bytes(graph) == compiled.bytes
    np.testing.assert_allclose(
        f(params, x)[0]["w1"], jax.jit(mlp_step)(params, x)[0]["w1"], rtol=2e-5, atol=1e-6
    )


def test_without_result_paths_a_state_argument_returned_as_it_came_pairs_with_itself():
    """A module without JAX's result paths (`autopar-opt` on text) pairs state in order. An argument
    returned unchanged (a PRNG key, a frozen table) is its own pair: the next argument of its type pairs
    with its own update, not with the unchanged one (which shifted every later pair before)."""
    from autopar.api.arguments import mark_roles
    from autopar.ir.lowering import module_from_lowered
    from autopar.ir.stages import find_function
    from autopar.passes.intra_op import graph as graph_lib
    from autopar.passes.intra_op.graph_facts import parameter_results

    def step(frozen, w, x):
        grad = jax.grad(lambda w: jnp.sum(jnp.tanh(x @ frozen @ w)))(w)
        return frozen, w - 0.1 * grad

    square = jnp.ones((32, 32), jnp.float32)
    module = module_from_lowered(jax.jit(step).lower(square, square, jnp.ones((8, 32), jnp.float32)))
    autopar.passes.run(module, "builtin.module(autopar-inline)")
    mark_roles(module, ["parameter", "parameter", "batch"])
    main = find_function(module.operation)
    del main.operation.attributes["res_attrs"]  # as a module written by hand has none
    g = graph_lib.read_function(main)
    assert g.result_paths == [None, None]
    assert parameter_results(g) == {1: 1}
