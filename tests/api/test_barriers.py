"""Optimization barriers (mark_pipeline_boundary's marker, jax.checkpoint's and flax's nn.remat's) plan as
the identity they are: a ShardParallel step with them gets the plan of the same step without them (the
same collectives, nothing gathered at a barrier), runs like jax.jit, and XLA compiles what the plan prices.
Before graph.TRANSPARENT_OPS each barrier was kept replicated (no Shardy rule) and gathered its values."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import autopar
from numeric import assert_priced_bytes_compiled, assert_trains_like_jit, assert_trees_close, normal

WIDTH, BATCH = 64, 256
MESHES = [(8,), (2, 4), (2, 2, 2)]


def _mlp_step(layer_of):
    def step(params, batch):
        x, y = batch

        def loss(ps):
            h = x
            for i, w in enumerate(ps):
                h = layer_of(i, len(ps))(w, h)
            return jnp.mean((h - y) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        return [p - 0.5 * g for p, g in zip(params, grads, strict=True)], value

    return step


def _dense(w, h):
    return jnp.tanh(h @ w)


def _marked(i, n):
    if i == n - 1:
        return _dense
    return lambda w, h: autopar.mark_pipeline_boundary(_dense(w, h))


STEPS = {
    "marked": _mlp_step(_marked),
    "checkpointed": _mlp_step(lambda i, n: jax.checkpoint(_dense)),
}
PLAIN = _mlp_step(lambda i, n: _dense)


def _params_and_batch():
    params = [normal((WIDTH, WIDTH), seed=i) * 0.2 for i in range(4)]
    return params, (normal((BATCH, WIDTH), seed=10), normal((BATCH, WIDTH), seed=11))


def _collectives(plan) -> list[tuple[str, int]]:
    return sorted((c.kind, c.bytes) for c in plan.collectives)


@pytest.mark.parametrize("mesh_shape", MESHES, ids=["8", "2x4", "2x2x2"])
@pytest.mark.parametrize("name", sorted(STEPS))
def test_a_barrier_changes_nothing_in_the_plan(name: str, mesh_shape: tuple[int, ...]) -> None:
    params, batch = _params_and_batch()
    step = STEPS[name]
    assert "optimization_barrier" in jax.jit(step).lower(params, batch).as_text()
    method = autopar.ShardParallel(mesh_shape=mesh_shape)
    ours = autopar.parallelize(step, method=method)
    assert_trees_close(ours(params, batch), jax.jit(step)(params, batch), rtol=1e-4, atol=1e-5)
    plan = ours.get_execution_plan(params, batch)
    plain = autopar.parallelize(PLAIN, method=method).get_execution_plan(params, batch)
    assert plan.remarks == (), plan.remarks
    assert _collectives(plan) == _collectives(plain)
    assert "all-gather" not in {c.kind for c in plan.collectives}
    assert_priced_bytes_compiled(plan)


class Block(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        return nn.gelu(nn.Dense(self.features)(x))


class MLP(nn.Module):
    """With `remat`, flax's own nn.remat on each block (jax.checkpoint under the hood)."""

    remat: bool
    layers: int = 3

    @nn.compact
    def __call__(self, x):
        block = nn.remat(Block) if self.remat else Block
        for i in range(self.layers):  # named: the same parameter tree with or without remat
            x = block(WIDTH, name=f"block{i}")(x)
        return nn.Dense(1)(x)


def _flax_step(model):
    def step(params, batch):
        xs, ys = batch
        loss = lambda p: jnp.mean((model.apply(p, xs) - ys) ** 2)  # noqa: E731
        value, grads = jax.value_and_grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value

    return step


@pytest.mark.parametrize("mesh_shape", [(8,), (2, 4)], ids=["8", "2x4"])
def test_flax_remat_model_trains_like_jax_jit_and_plans_like_without_remat(mesh_shape) -> None:
    x, y = normal((BATCH, WIDTH), seed=1), normal((BATCH, 1), seed=2)
    params = MLP(remat=False).init(jax.random.key(0), x[:2])
    step = _flax_step(MLP(remat=True))
    method = autopar.ShardParallel(mesh_shape=mesh_shape)
    ours = autopar.parallelize(step, method=method)
    assert_trains_like_jit(ours, step, params, (x, y))
    plan = ours.get_execution_plan(params, (x, y))
    plain = autopar.parallelize(_flax_step(MLP(remat=False)), method=method).get_execution_plan(
        params, (x, y)
    )
    assert plan.remarks == (), plan.remarks
    assert _collectives(plan) == _collectives(plain)
    assert_priced_bytes_compiled(plan)


def test_checkpointed_gpt_on_three_axes_compiles_what_it_prices() -> None:
    # GPT at 125M shapes, 2 blocks under jax.checkpoint, on 2x2x2 (compiled only, from abstract arguments).
    # In its backward, one reader of a cotangent carried through a barrier needs it split over (x, y, z):
    # before each barrier result was constrained to the layout it carries, Shardy propagated that split
    # back into the result, and XLA sliced the value before the barrier and gathered it again after it
    # (3.3 % more all-gather bytes than priced).
    from benchmarks.models import gpt

    cfg = gpt.GPTConfig("125M-2", 1024, 768, 2, 12, 51200, batch=8)
    step = gpt.make_train_step(cfg, remat=True)
    args = (gpt.abstract_params(cfg), *gpt.abstract_batch(cfg))
    method = autopar.ShardParallel(mesh_shape=(2, 2, 2))
    plan = autopar.parallelize(step, method=method, batch_argnums=(1, 2)).get_execution_plan(*args)
    assert_priced_bytes_compiled(plan, rel=0.005)
