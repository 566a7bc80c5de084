"""Counted loops (lax.scan, fori_loop with static bounds, flax's nn.scan) are written out by
autopar-unroll-loops before planning, so their work splits like a Python loop's: the plan of a scanned
step has the collectives of the same step written with a Python loop, runs like jax.jit, and XLA compiles
what it prices. A loop whose trip count depends on data stays a loop, kept whole, and the plan says so."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import autopar
from numeric import assert_priced_bytes_compiled, assert_trains_like_jit, assert_trees_close, normal

WIDTH, BATCH, LAYERS = 64, 256, 4


def _step(forward):
    def step(params, batch):
        x, y = batch
        value, grads = jax.value_and_grad(lambda p: jnp.mean((forward(p, x) - y) ** 2))(params)
        return params - 0.5 * grads, value

    return step


def _scanned(params, x):
    return jax.lax.scan(lambda h, w: (jnp.tanh(h @ w), None), x, params)[0]


def _fori(params, x):
    return jax.lax.fori_loop(0, LAYERS, lambda i, h: jnp.tanh(h @ params[i]), x)


def _python_loop(params, x):
    for i in range(LAYERS):
        x = jnp.tanh(x @ params[i])
    return x


def _data():
    params = normal((LAYERS, WIDTH, WIDTH), seed=0) * 0.2
    return params, (normal((BATCH, WIDTH), seed=1), normal((BATCH, WIDTH), seed=2))


def _collectives(plan) -> list[tuple[str, int]]:
    return sorted((c.kind, c.bytes) for c in plan.collectives)


@pytest.mark.parametrize("mesh_shape", [(8,), (2, 4), (2, 2, 2)], ids=["8", "2x4", "2x2x2"])
@pytest.mark.parametrize("forward", [_scanned, _fori], ids=["scan", "fori_loop"])
def test_a_counted_loop_plans_like_the_python_loop(forward, mesh_shape) -> None:
    params, batch = _data()
    step = _step(forward)
    assert "stablehlo.while" in jax.jit(step).lower(params, batch).as_text()
    method = autopar.ShardParallel(mesh_shape=mesh_shape)
    ours = autopar.parallelize(step, method=method)
    assert_trees_close(ours(params, batch), jax.jit(step)(params, batch), rtol=1e-4, atol=1e-5)
    plan = ours.get_execution_plan(params, batch)
    assert "stablehlo.while" not in ours.lower(params, batch).as_text()
    assert not plan.remarks, plan.remarks
    unrolled = autopar.parallelize(_step(_python_loop), method=method).get_execution_plan(params, batch)
    assert _collectives(plan) == _collectives(unrolled)
    assert_priced_bytes_compiled(plan)


def test_a_loop_on_data_stays_a_loop_and_the_plan_says_so() -> None:
    params, batch = _data()

    def forward(p, x):
        h = _python_loop(p, x)
        # Halves h until it is small: how many times depends on the data.
        return jax.lax.while_loop(lambda h: jnp.max(jnp.abs(h)) > 0.5, lambda h: h * 0.5, h)

    step = jax.jit(lambda p, b: (forward(p, b[0]) - b[1]).sum())
    ours = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=(8,)))
    np.testing.assert_allclose(float(ours(params, batch)), float(step(params, batch)), rtol=1e-5)
    text = ours.lower(params, batch).as_text()
    assert text.count("stablehlo.while(") == 1
    (remark,) = ours.get_execution_plan(params, batch).remarks
    assert remark.startswith("stablehlo.while at ") and "test_loops.py" in remark, remark
    assert "the loop runs whole on every device" in remark


@pytest.mark.parametrize("method", ["shard", "pipeshard"])
def test_max_unrolled_ops_decides_which_loops_are_written_out(method) -> None:
    """The scan over 4 layers stays a loop when the option allows fewer ops than its copies add, and the
    remark says how to raise it; ShardParallel and PipeshardParallel both hand the option on."""
    params, batch = _data()
    step = _step(_scanned)
    small = autopar.AutoShardingOption(max_unrolled_ops=10)
    if method == "shard":
        kept, written = (
            autopar.ShardParallel(mesh_shape=(8,), auto_sharding_option=o) for o in (small, None)
        )
    else:
        kept, written = (
            autopar.PipeshardParallel(
                num_micro_batches=2,
                layer_option=autopar.AutoLayerOption(layer_num=1),
                auto_sharding_option=o or autopar.AutoShardingOption(),
            )
            for o in (small, None)
        )
    ours = autopar.parallelize(step, method=kept)
    assert "stablehlo.while(" in ours.lower(params, batch).as_text()
    assert_trees_close(ours(params, batch), jax.jit(step)(params, batch), rtol=1e-4, atol=1e-5)
    if method == "shard":
        remarks = ours.get_execution_plan(params, batch).remarks
        assert any("AutoShardingOption(max_unrolled_ops=...) raises it" in r for r in remarks), remarks
    assert "stablehlo.while(" not in autopar.parallelize(step, method=written).lower(params, batch).as_text()


class Block(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.gelu(nn.Dense(WIDTH)(x)), None


class ScannedMLP(nn.Module):
    """flax's nn.scan over identical blocks: one stacked parameter per weight, a while loop in the step."""

    @nn.compact
    def __call__(self, x):
        blocks = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=LAYERS)
        x, _ = blocks()(x, None)
        return nn.Dense(1)(x)


@pytest.mark.parametrize("mesh_shape", [(8,), (2, 4)], ids=["8", "2x4"])
def test_flax_scanned_model_trains_like_jax_jit(mesh_shape) -> None:
    model = ScannedMLP()
    x, y = normal((BATCH, WIDTH), seed=3), normal((BATCH, 1), seed=4)
    params = model.init(jax.random.key(0), x[:2])

    def step(params, batch):
        xs, ys = batch
        value, grads = jax.value_and_grad(lambda p: jnp.mean((model.apply(p, xs) - ys) ** 2))(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value

    ours = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=mesh_shape))
    assert_trains_like_jit(ours, step, params, (x, y))
    plan = ours.get_execution_plan(params, (x, y))
    assert not any("while" in r for r in plan.remarks), plan.remarks
    assert_priced_bytes_compiled(plan)


def test_a_scanned_step_pipelines_over_its_layers() -> None:
    """Written out, the scan's trips are layers the stage DP can cut between: each stage's forward runs
    its share of them. (The stacked weight's gradient is one tensor, so its backward stays together.)"""
    from autopar.ir.stages import stage_calls

    params, batch = _data()
    step = _step(_scanned)
    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=2),
        stage_option=autopar.UniformStageOption(num_stages=2),
    )
    ours = autopar.parallelize(step, method=method)
    assert_trees_close(ours(params, batch), jax.jit(step)(params, batch), rtol=1e-4, atol=1e-5)
    forwards = [
        str(fn).count("stablehlo.dot_general")
        for _, fn in stage_calls(ours.lower(params, batch).module)
        if "_forward" in str(fn.attributes["sym_name"])
    ]
    assert forwards == [LAYERS // 2, LAYERS // 2], forwards


def test_nested_scans_with_a_conditional_inside_are_written_out() -> None:
    """Inner loops first, then the outer one copies them written out; the light conditional in each trip
    is flattened after (autopar-flatten-conditionals). The gradient equals jax.jit's."""
    w = normal((3, 2, 32, 32), seed=5) * 0.2
    x = normal((64, 32), seed=6)

    def loss(w, x):
        def outer(h, pair):
            h = jax.lax.scan(lambda g, wi: (jnp.tanh(g @ wi), None), h, pair)[0]
            return jax.lax.cond(h.sum() > 0, lambda: h * 2.0, lambda: h), None

        return jax.lax.scan(outer, x, w)[0].sum()

    grad = jax.grad(loss)
    ours = autopar.parallelize(grad, method=autopar.ShardParallel(mesh_shape=(8,)), batch_argnums=(1,))
    assert_trees_close(ours(w, x), jax.jit(grad)(w, x), rtol=1e-4, atol=1e-5)
    text = ours.lower(w, x).as_text()
    assert "stablehlo.while(" not in text and "stablehlo.case" not in text
    assert ours.get_execution_plan(w, x).remarks == ()
