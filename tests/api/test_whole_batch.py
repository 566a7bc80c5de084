"""Values computed from the batch alone that do not split into micro-batches (ir/whole_batch.py): mixup
written in the step, a sample standard deviation, a median or a cumulative count over the batch. Each is
computed once from the whole batch before the micro-batches run, so the pipelined step equals jax.jit's;
each was refused before."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import autopar
from numeric import assert_trees_close, normal

TWO_STAGES = dict(
    num_micro_batches=4,
    layer_option=autopar.AutoLayerOption(layer_num=2),
    stage_option=autopar.UniformStageOption(num_stages=2),
)


def mlp(params, x):
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


def sgd(loss):
    def step(params, batch, key):
        value, grads = jax.value_and_grad(loss)(params, batch, key)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value

    return step


@pytest.fixture(scope="module")
def data():
    params = {"w1": normal((16, 32)) * 0.3, "w2": normal((32, 8)) * 0.3}
    return params, (normal((16, 16)) + 1.0, normal((16, 8)))


def mixup_loss(params, batch, key):
    """big_vision's mixup in the step: every example mixed with its neighbour in the batch."""
    x, y = batch
    lam = jax.random.beta(key, 0.2, 0.2)
    x = lam * x + (1 - lam) * jnp.roll(x, 1, axis=0)
    y = lam * y + (1 - lam) * jnp.roll(y, 1, axis=0)
    return jnp.mean((mlp(params, x) - y) ** 2)


LOSSES = {
    "mixup": mixup_loss,
    "sample standard deviation": lambda p, b, k: jnp.mean((mlp(p, b[0] / b[0].std(0, ddof=1)) - b[1]) ** 2),
    "median": lambda p, b, k: jnp.mean((mlp(p, b[0]) - b[1]) ** 2) / jnp.median(jnp.abs(b[1])),
    "cumulative count": lambda p, b, k: jnp.sum((mlp(p, b[0]) - b[1]) ** 2) / jnp.cumsum(b[0][:, 0] > 1)[-1],
    "shuffled batch, weighted by position": lambda p, b, k: shuffled_loss(p, b, k),
}


def shuffled_loss(params, batch, key):
    """The batch shuffled in the step (jax.random.permutation: a sort in a loop) and weighted by position."""
    x, y = batch
    order = jax.random.permutation(key, x.shape[0])
    weights = jnp.linspace(0.5, 1.5, x.shape[0])[:, None]
    return jnp.mean((mlp(params, x[order]) - y[order]) ** 2 * weights)


@pytest.mark.parametrize("name", LOSSES)
def test_values_of_the_batch_that_do_not_split_are_taken_from_the_whole_batch(data, name):
    params, batch = data
    step = sgd(LOSSES[name])
    ours = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    key = jax.random.key(4)
    assert_trees_close(ours(params, batch, key), jax.jit(step)(params, batch, key), rtol=1e-5, atol=1e-6)
    plan = ours.get_execution_plan(params, batch, key)
    assert any("of the whole batch at" in t.path for t in plan.tensors), [t.path for t in plan.tensors]


def test_mixup_trains_over_steps_with_a_process_per_mesh(data):
    params, batch = data
    step = sgd(mixup_loss)
    method = autopar.PipeshardParallel(**TWO_STAGES, executor="processes")
    ours = autopar.parallelize(step, method=method)
    mine = theirs = params
    for seed in range(3):
        key = jax.random.key(seed)
        mine, my_loss = ours(mine, batch, key)
        theirs, their_loss = jax.jit(step)(theirs, batch, key)
        assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
