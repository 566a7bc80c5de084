"""A convolution's FLOPs as the cost model counts them (dot_shape.convolution_flops), against XLA's count."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import autopar
from autopar.api import explain_problem
from autopar.passes.intra_op import problem


def conv(x, w, stride):
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def xla_flops(f, *args) -> float:
    analysis = jax.jit(f).lower(*args).compile().cost_analysis()
    return float((analysis[0] if isinstance(analysis, list) else analysis)["flops"])


def model_flops(step, *args) -> list[float]:
    """Per convolution of `step`'s planned graph, the FLOPs the cost model counts."""
    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=(8,)), batch_argnums=(0,))
    rebuilt = explain_problem.rebuild(f.get_execution_plan(*args).source)
    out = []
    for node in rebuilt.graph.nodes:
        if node.kind == "stablehlo.convolution":
            out.append(problem._facts(node).flops)
    return out


@pytest.mark.parametrize("kernel, stride", [(3, 1), (3, 2), (1, 2)])
def test_forward_weight_and_input_gradient_convolutions_count_the_forward_flops(kernel, stride):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((8, 9, 9, 16)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((kernel, kernel, 16, 32)), jnp.float32)
    forward = xla_flops(lambda x, w: conv(x, w, stride), x, w)
    # 2 * output elements * kh * kw * input features: what XLA counts for a VALID conv.
    out = (9 - kernel) // stride + 1
    assert forward == pytest.approx(2 * 8 * out * out * 32 * kernel * kernel * 16, rel=0.01)

    def step(x, w):
        return jax.grad(lambda x, w: jnp.sum(conv(x, w, stride) ** 2), argnums=(0, 1))(x, w)

    counted = model_flops(step, x, w)
    # The forward conv, the weight gradient's and the input gradient's (a dilated input when strided):
    # each does the forward's multiply-adds (the input gradient's padding taps aside, zero for 1 x 1).
    assert len(counted) == 3
    for flops in counted:
        assert forward <= flops <= forward * (1 + (kernel - 1) * 4), counted
    assert sorted(counted)[:2] == pytest.approx([forward, forward], rel=1e-9)


def test_a_loop_left_whole_is_priced_with_its_body_once_per_trip():
    """A counted loop autopar-unroll-loops leaves whole (over its op budget) runs replicated; its price
    counts the dots of its body once per trip, so a 4-trip loop costs about twice a 2-trip one."""
    from autopar.ir.lowering import module_from_lowered
    from autopar.ir.stages import find_function
    from autopar.passes import registry
    from autopar.passes.intra_op import config as config_lib
    from autopar.passes.intra_op import graph

    options = registry.lookup("autopar-intra-op").parse_options([("mesh", "8")])
    config = config_lib.from_options(options)

    def objective(trips: int) -> float:
        w = jnp.ones((trips, 256, 256), jnp.float32)
        x = jnp.ones((64, 256), jnp.float32)
        step = jax.jit(lambda w, x: jax.lax.scan(lambda h, wi: (h @ wi, None), x, w)[0])
        module = module_from_lowered(step.lower(w, x))
        autopar.passes.run(module, "builtin.module(autopar-inline)")  # the loop as the pass sees it
        g = graph.read_function(find_function(module.operation))
        prob = problem.build(g, config)
        (loop,) = [v for v, n in enumerate(g.nodes) if n.kind == "stablehlo.while"]
        return float(prob.node_costs[loop][0])

    dot = 2 * 64 * 256 * 256
    two, four = objective(2), objective(4)
    # Replicated: every device runs every trip's dot (the roofline's compute side, before it was 0).
    assert two >= config.mesh.device.op_time(2 * dot, 0.0) > 0
    assert four >= config.mesh.device.op_time(4 * dot, 0.0)
    assert four == pytest.approx(2 * two, rel=0.1)


def test_window_ops_move_their_window_not_the_whole_tensor():
    """dynamic_slice reads its slice and dynamic_update_slice writes its update in place (XLA's buffers):
    their price moves the window's bytes, whatever the size of the stacked tensor around it."""
    from autopar.ir.lowering import module_from_lowered
    from autopar.ir.stages import find_function
    from autopar.passes import registry
    from autopar.passes.intra_op import config as config_lib
    from autopar.passes.intra_op import graph

    config = config_lib.from_options(registry.lookup("autopar-intra-op").parse_options([("mesh", "8")]))
    device = config.mesh.device

    def replicated_costs(layers: int) -> dict[str, float]:
        def f(stacked, update, i):
            window = jax.lax.dynamic_index_in_dim(stacked, i, keepdims=False)
            return window, jax.lax.dynamic_update_index_in_dim(stacked, update, i, axis=0)

        args = (jnp.ones((layers, 256, 512)), jnp.ones((256, 512)), jnp.int32(1))
        module = module_from_lowered(jax.jit(f).lower(*args))
        autopar.passes.run(module, "builtin.module(autopar-inline)")
        g = graph.read_function(find_function(module.operation))
        prob = problem.build(g, config)
        out = {}
        for v, node in enumerate(g.nodes):
            if node.kind in ("stablehlo.dynamic_slice", "stablehlo.dynamic_update_slice"):
                replicated = [k for k, a in enumerate(prob.strategies[v].assignment) if (a < 0).all()]
                out[node.kind] = float(prob.node_costs[v][replicated[0]])
        return out

    window = 256 * 512 * 4
    for layers in (4, 64):
        costs = replicated_costs(layers)
        for kind in ("stablehlo.dynamic_slice", "stablehlo.dynamic_update_slice"):
            assert costs[kind] == pytest.approx(device.op_time(256 * 512, 2 * window)), (layers, costs)
