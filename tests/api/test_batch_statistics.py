"""Pipelined steps that read statistics of their batch (ir/batch_statistics.py): a loss normalised by the
batch's token count, as padded language-model training writes it, and inputs scaled by the batch's own
statistics. Each is computed over the whole batch before the micro-batches run, so the step equals
jax.jit's full-batch step; it was refused before (a ratio of sums does not combine)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autopar
from numeric import assert_trains_like_jit, assert_trees_close, normal

TWO_STAGES = dict(
    num_micro_batches=4,
    layer_option=autopar.AutoLayerOption(layer_num=2),
    stage_option=autopar.UniformStageOption(num_stages=2),
)
BATCH = 16


def mlp(params, x):
    h = jnp.tanh(x @ params["w1"])
    return h @ params["w2"]


def masked_loss(params, batch):
    x, y, mask = batch
    per_example = jnp.sum((mlp(params, x) - y) ** 2, axis=-1)
    return jnp.sum(per_example * mask) / jnp.sum(mask)


@pytest.fixture(scope="module")
def data():
    params = {"w1": normal((16, 32)) * 0.3, "w2": normal((32, 8)) * 0.3}
    mask = (np.arange(BATCH) % 3 != 0).astype(np.float32)
    mask[:4] = 0  # a micro-batch with fewer valid examples than the others (its own mean would weigh more)
    return params, (normal((BATCH, 16)), normal((BATCH, 8)), mask)


@pytest.mark.parametrize("executor", ["processes", "in-process"])
def test_a_masked_mean_trains_pipelined_as_under_jax_jit(data, executor):
    params, batch = data
    optimizer = optax.adamw(1e-2)

    def step(state, batch):
        params, opt_state = state
        loss, grads = jax.value_and_grad(masked_loss)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    method = autopar.PipeshardParallel(**TWO_STAGES, executor=executor)
    ours = autopar.parallelize(step, method=method)
    assert_trains_like_jit(ours, step, (params, optimizer.init(params)), batch, steps=3)


def test_the_plan_names_the_statistic_by_its_line_and_input_metrics_are_exact(data):
    params, batch = data

    def step(params, batch):
        x = batch[0]
        loss, grads = jax.value_and_grad(masked_loss)(params, batch)
        new = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        return new, loss, jnp.log(jnp.mean(x**2)), x / jnp.max(jnp.abs(x))  # metrics of the input alone

    ours = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    assert_trees_close(ours(params, batch), jax.jit(step)(params, batch))
    plan = ours.get_execution_plan(params, batch)
    line = masked_loss.__code__.co_firstlineno + 3
    named = {t.path for t in plan.tensors if t.path.startswith("batch ")}
    where = f"test_batch_statistics.py:{line}:"
    assert any(p.startswith("batch sum at ") and where in p for p in named), named
    assert "batch sum at " in str(plan)


def test_ppo_with_advantage_normalisation_pipelines(data):
    """PPO's clipped objective as RL code writes it: the advantages, an input, normalised by the batch's
    own mean and standard deviation (jnp.std's `N - ddof > 0` guard included), plus an entropy bonus."""
    params = {"w1": normal((16, 32)) * 0.3, "w2": normal((32, 4)) * 0.3}
    rng = np.random.default_rng(1)
    batch = (
        normal((BATCH, 16)),
        rng.integers(0, 4, BATCH).astype(np.int32),
        normal((BATCH,)),  # advantages
        np.full(BATCH, -1.4, np.float32),  # the old policy's log-probabilities
    )
    optimizer = optax.adam(1e-2)

    def ppo_loss(params, batch):
        obs, actions, advantages, old_log_probs = batch
        logits = mlp(params, obs)
        log_probs = jnp.take_along_axis(jax.nn.log_softmax(logits), actions[:, None], axis=1)[:, 0]
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        ratio = jnp.exp(log_probs - old_log_probs)
        clipped = jnp.clip(ratio, 0.8, 1.2)
        policy = -jnp.minimum(ratio * advantages, clipped * advantages).mean()
        entropy = -(jax.nn.softmax(logits) * jax.nn.log_softmax(logits)).sum(-1).mean()
        return policy - 0.01 * entropy

    def step(state, batch):
        params, opt_state = state
        loss, grads = jax.value_and_grad(ppo_loss)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    ours = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    assert_trains_like_jit(ours, step, (params, optimizer.init(params)), batch, steps=2)


def test_gradients_over_the_token_count_with_a_parameter_the_loss_does_not_read(data):
    """HF's examples divide every gradient by the count the loss returns as aux; a parameter the loss does
    not read (FlaxBart's final_logits_bias) has a zero gradient, and 0 / count is the same in every
    micro-batch. Its ops were unlabelled for that, which the runtime read as ops added after labelling."""
    params, batch = data
    params = {**params, "unused": np.ones((8,), np.float32)}

    def step(params, batch):
        def summed(params):
            x, y, mask = batch
            mask = mask.astype(jnp.int32)  # an integer count, converted to float by each division
            return jnp.sum(jnp.sum((mlp(params, x) - y) ** 2, -1) * mask), mask.sum()

        (loss, count), grads = jax.value_and_grad(summed, has_aux=True)(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g / count, params, grads), loss / count

    ours = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    assert_trains_like_jit(ours, step, params, batch, steps=2)


def test_a_denominator_computed_from_the_parameters_is_still_refused(data):
    params, batch = data

    def step(params, batch):
        x, y, mask = batch

        def loss(p):
            weights = jnp.exp(mlp(p, x)[:, 0])  # weights the model computes: not the batch's alone
            return jnp.sum(jnp.sum((mlp(p, x) - y) ** 2, -1) * weights) / jnp.sum(weights)

        value, grads = jax.value_and_grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value

    with pytest.raises(autopar.AutoparError, match="ratio of sums does not combine exactly"):
        autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))(params, batch)


def test_hf_gpt2_on_padded_sequences_normalised_by_the_token_count_pipelines():
    """Causal LM training as HF's Flax examples write it: padded sequences with their attention mask, the
    loss summed over the real tokens and the loss and gradients divided by the batch's token count
    (returned as the loss function's aux). Random init from a tiny config; nothing downloads."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=32)
    model = transformers.FlaxGPT2LMHeadModel(config, seed=0)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, 256, (8, 33)), jnp.int32)
    lengths = jnp.asarray([33, 20, 28, 33, 12, 30, 25, 33])
    attention = (jnp.arange(33)[None] < lengths[:, None]).astype(jnp.int32)

    def step(params, batch):
        tokens, attention = batch

        def loss_fn(params):
            logits = model(tokens[:, :-1], attention_mask=attention[:, :-1], params=params).logits
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
            padding = attention[:, 1:]
            return jnp.sum(loss * padding), padding.sum()

        (loss, num_labels), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        grads = jax.tree.map(lambda g: g / num_labels, grads)
        return jax.tree.map(lambda p, g: p - 0.05 * g, params, grads), loss / num_labels

    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=2),
        stage_option=autopar.UniformStageOption(num_stages=2),
    )
    ours = autopar.parallelize(step, method=method, batch_argnums=(1,))
    mine, my_loss = ours(model.params, (tokens, attention))
    theirs, their_loss = jax.jit(step)(model.params, (tokens, attention))
    assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
