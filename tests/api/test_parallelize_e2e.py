"""parallelize end to end through the real autopar-intra-op pass on 8 virtual CPU devices: every output
compared with the unsharded program (`jax.jit(fn)`), plans checked in the compiled HLO.

Plan-quality tests of the pass itself live with the pass (tests/passes/intra_op/test_intra_op_plans.py);
these check what a user of `parallelize` sees: numerics, layouts of the returned arrays, collectives,
caching, donation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import autopar
from autopar.api.methods import INTRA_OP_PASS
from autopar.passes import registry
from numeric import assert_trees_close, normal

pytestmark = pytest.mark.skipif(
    registry.lookup(INTRA_OP_PASS) is None, reason=f"{INTRA_OP_PASS} is not on this branch yet"
)

# Costs of a CPU-like device, so that splitting compute pays off for test-sized models.
CPU = autopar.AutoShardingOption(device_flops=1e10, device_memory_bandwidth=1e11)


def _dense_params(sizes, seed=0):
    shapes = list(zip(sizes[:-1], sizes[1:], strict=True))
    return [normal((m, n), seed + i) / np.sqrt(m) for i, (m, n) in enumerate(shapes)]


def mlp(params, x):
    for i, w in enumerate(params):
        x = x @ w
        if i + 1 < len(params):
            x = jax.nn.relu(x)
    return x


def sgd_step(params, x):
    grads = jax.grad(lambda p: jnp.mean(mlp(p, x) ** 2))(params)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)


def _counts(plan):
    return {k: v for k, v in plan.collective_counts().items() if v}


def test_mlp_large_batch_small_hidden_is_data_parallel():
    params, x = _dense_params([64, 64, 64]), normal((4096, 64), seed=1)
    f = autopar.parallelize(sgd_step)
    assert_trees_close(f(params, x), jax.jit(sgd_step)(params, x))
    plan = f.get_execution_plan(params, x)
    assert plan.input_specs() == {"params[0]": P(), "params[1]": P(), "x": P("x")}
    assert _counts(plan) == {"all-reduce": 1}  # the gradients, combined by XLA
    assert plan.solver_status == "optimal" and plan.estimated_cost > 0


def test_mlp_small_batch_large_hidden_is_megatron():
    params, x = _dense_params([1024, 1024, 1024]), normal((8, 1024), seed=1)
    f = autopar.parallelize(sgd_step)
    out = f(params, x)
    assert_trees_close(out, jax.jit(sgd_step)(params, x), atol=1e-5)
    plan = f.get_execution_plan(params, x)
    assert plan.parameter_specs() == {"params[0]": P(None, "x"), "params[1]": P("x")}
    assert [o.spec for o in plan.outputs] == [P(None, "x"), P("x")]
    assert out[0].sharding.spec == P(None, "x")
    assert _counts(plan) == {"all-reduce": 1}


def test_transformer_layer_on_1d_and_2d_meshes():
    d, heads, ffn, seq, batch = 256, 8, 1024, 32, 4
    p = {
        "wq": normal((d, heads, d // heads)) / 16,
        "wk": normal((d, heads, d // heads)) / 16,
        "wv": normal((d, heads, d // heads)) / 16,
        "wo": normal((heads, d // heads, d)) / 16,
        "w1": normal((d, ffn)) / 16,
        "w2": normal((ffn, d)) / 32,
    }
    x = normal((batch, seq, d))

    def layer(p, x):
        def norm(v):
            v = v - v.mean(-1, keepdims=True)
            return v * jax.lax.rsqrt((v**2).mean(-1, keepdims=True) + 1e-5)

        h = norm(x)
        q, k, v = (jnp.einsum("bsd,dhk->bshk", h, p[n]) for n in ("wq", "wk", "wv"))
        attn = jax.nn.softmax(jnp.einsum("bqhk,bshk->bhqs", q, k) / 8.0, axis=-1)
        x = x + jnp.einsum("bqhk,hkd->bqd", jnp.einsum("bhqs,bshk->bqhk", attn, v), p["wo"])
        return x + jax.nn.gelu(norm(x) @ p["w1"]) @ p["w2"]

    reference = jax.jit(layer)(p, x)
    for shape in [(8,), (2, 4)]:
        f = autopar.parallelize(
            layer, method=autopar.ShardParallel(mesh_shape=shape, auto_sharding_option=CPU)
        )
        assert_trees_close(f(p, x), reference, atol=1e-5)
        specs = f.get_execution_plan(p, x).parameter_specs()
        # The MLP is split Megatron-style: w1 by columns and w2 by rows over the same axis.
        assert specs["p['w1']"][1] is not None and specs["p['w2']"][0] == specs["p['w1']"][1]


def test_conv_net_training_step():
    params = {
        "c1": normal((3, 3, 3, 16)) / 5,
        "c2": normal((3, 3, 16, 16)) / 12,
        "fc": normal((16, 10)) / 4,
    }
    images = normal((16, 8, 8, 3))
    labels = np.random.default_rng(5).integers(0, 10, (16,)).astype(np.int32)

    def loss_fn(p, images, labels):
        conv = lambda v, w: jax.lax.conv_general_dilated(  # noqa: E731
            v, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        h = jax.nn.relu(conv(jax.nn.relu(conv(images, p["c1"])), p["c2"]))
        logits = h.mean(axis=(1, 2)) @ p["fc"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def step(p, batch):
        loss, grads = jax.value_and_grad(loss_fn)(p, *batch)
        return jax.tree.map(lambda w, g: w - 0.1 * g, p, grads), loss

    f = autopar.parallelize(step, method=autopar.ShardParallel(auto_sharding_option=CPU))
    assert_trees_close(
        f(params, (images, labels)), jax.jit(step)(params, (images, labels)), rtol=1e-4, atol=1e-5
    )
    plan = f.get_execution_plan(params, (images, labels))
    assert plan.solver_status in ("optimal", "feasible")
    assert {t.path: t.role for t in plan.inputs}["batch[0]"] == "batch"


@pytest.mark.parametrize(
    "method",
    [
        autopar.ShardParallel(mesh_shape=(2, 4)),
        autopar.DataParallel(),
        autopar.Zero2Parallel(),
        autopar.Zero3Parallel(),
    ],
    ids=["shard-2x4", "data", "zero2", "zero3"],
)
def test_optax_adam_step_with_donation(method):
    optimizer = optax.adam(1e-2)

    def train_step(params, opt_state, batch):
        x, y = batch
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((mlp(p, x) - y) ** 2))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params = _dense_params([32, 128, 32], seed=2)
    batch = (normal((256, 32), seed=6), normal((256, 32), seed=7))
    state = optimizer.init(params)
    step = autopar.parallelize(train_step, method=method, donate_argnums=(0, 1), batch_argnums=(2,))
    reference = jax.jit(train_step)
    ref = (params, state)
    mine = jax.tree.map(jnp.copy, (params, state))
    for _ in range(3):
        *ref, ref_loss = reference(*ref, batch)
        *mine, loss = step(*mine, batch)
        # Adam divides by sqrt(nu): a near-zero gradient turns reduction-order noise into up to ~1e-5
        # of a 1e-2 step, so params get an absolute tolerance of half a percent of one step.
        assert_trees_close((mine, loss), (ref, ref_loss), rtol=1e-5, atol=5e-5)
    assert step.cache_size() == 1
    plan = step.get_execution_plan(*mine, batch)
    if isinstance(method, autopar.DataParallel):
        assert all(spec == P() for spec in plan.parameter_specs().values())
        assert plan.input_specs()["batch[0]"] == P("x")
