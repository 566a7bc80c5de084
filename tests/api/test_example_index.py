"""Randomness per example under micro-batches (ir/example_index.py): dropout, noise and per-example keys
draw, in each micro-batch, the bits the whole batch draws for its examples, so a pipelined step with
them equals jax.jit's full-batch step. They were refused before (an iota over the batch dim)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import autopar
from numeric import assert_trains_like_jit, assert_trees_close, normal

TWO_STAGES = dict(
    num_micro_batches=4,
    layer_option=autopar.AutoLayerOption(layer_num=2),
    stage_option=autopar.UniformStageOption(num_stages=2),
)


def mlp(params, x, key=None):
    h = jnp.tanh(x @ params["w1"])
    if key is not None:
        keep = jax.random.bernoulli(key, 0.8, h.shape)
        h = jnp.where(keep, h / 0.8, 0.0)
    return h @ params["w2"]


@pytest.fixture(scope="module")
def data():
    params = {"w1": normal((16, 32)) * 0.3, "w2": normal((32, 8)) * 0.3}
    return params, (normal((16, 16)), normal((16, 8)))


@pytest.mark.parametrize("executor", ["processes", "in-process"])
def test_dropout_trains_pipelined_as_under_jax_jit(data, executor):
    params, batch = data

    def step(params, batch):
        (x, y), key = batch, jax.random.fold_in(jax.random.key(0), 3)
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((mlp(p, x, key) - y) ** 2))(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), loss

    ours = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES, executor=executor))
    assert_trains_like_jit(ours, step, params, batch, steps=2)
    plan = ours.get_execution_plan(params, batch)
    assert any(t.path == "index of each example in the batch" for t in plan.tensors)


@pytest.mark.parametrize("remat", [False, True], ids=["saved", "rematerialised"])
def test_dropout_in_scanned_layers_trains_pipelined_as_under_jax_jit(data, remat):
    """Bits drawn inside a loop over layers (jax.lax.scan), whose carry the parameters compute: the body
    reads the example indices from the step's arguments. Rematerialised, the backward loop draws the same
    bits again, from the same indices."""
    _, batch = data
    params = {"w1": normal((16, 16)) * 0.3, "w2": normal((16, 8)) * 0.3}

    def loss(p, x, y, key):
        def layer(h, k):
            keep = jax.random.bernoulli(k, 0.9, h.shape)
            return jnp.where(keep, jnp.tanh(h @ p["w1"]) / 0.9, 0.0), None

        h, _ = jax.lax.scan(jax.checkpoint(layer) if remat else layer, x, jax.random.split(key, 3))
        return jnp.mean((h @ p["w2"] - y) ** 2)

    def step(params, batch):
        (x, y), key = batch, jax.random.fold_in(jax.random.key(5), 1)
        value, grads = jax.value_and_grad(loss)(params, x, y, key)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value

    ours = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    assert_trains_like_jit(ours, step, params, batch, steps=2)


def test_flax_nn_scan_layers_with_dropout_pipeline_as_under_jax_jit(data):
    """flax linen's `nn.scan` over a residual block with `nn.Dropout`, its dropout keys split per layer
    (`split_rngs`), as scanned transformers are written: each layer's mask is drawn inside the loop."""
    nn = pytest.importorskip("flax.linen")

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            h = nn.Dropout(0.1, deterministic=False)(nn.gelu(nn.Dense(32)(nn.LayerNorm()(x))))
            return x + nn.Dense(16)(h), None

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            scan = nn.scan(
                Block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True}, length=3
            )
            x, _ = scan()(x, None)
            return nn.Dense(8)(x)

    model = Model()
    _, (x, y) = data
    params = model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x)

    def step(params, batch):
        (x, y), key = batch, jax.random.fold_in(jax.random.key(7), 2)

        def loss(p):
            return jnp.mean((model.apply(p, x, rngs={"dropout": key}) - y) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value

    ours = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    assert_trains_like_jit(ours, step, params, (x, y), steps=2)


def test_a_diffusion_step_with_random_timesteps_and_noise_pipelines(data):
    """A denoising objective: per example a random timestep (`randint` of shape (B,)) and Gaussian noise
    over the whole input, from keys split off one step key."""
    params, (x, _) = data
    params = {"w1": normal((17, 32)) * 0.3, "w2": normal((32, 16)) * 0.3}

    def step(params, x, key):
        t_key, noise_key = jax.random.split(key)
        t = jax.random.randint(t_key, (x.shape[0],), 0, 100)
        noise = jax.random.normal(noise_key, x.shape)
        alpha = jnp.cos(t / 100 * jnp.pi / 2)[:, None]
        noisy = alpha * x + jnp.sqrt(1 - alpha**2) * noise
        inputs = jnp.concatenate([noisy, (t / 100)[:, None]], axis=1)
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((mlp(p, inputs) - noise) ** 2))(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), loss

    ours = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    key = jax.random.key(5)
    mine, my_loss = ours(params, x, key)
    theirs, their_loss = jax.jit(step)(params, x, key)
    assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_hf_gpt2_trained_with_dropout_pipelines():
    """HF's FlaxGPT2 with `train=True`: dropout on embeddings, attention weights and residuals, its keys
    folded from one `dropout_rng`. Random init from a tiny config; nothing downloads."""
    transformers = pytest.importorskip("transformers")
    import optax

    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=128, n_positions=16)
    model = transformers.FlaxGPT2LMHeadModel(config, seed=0)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 128, (8, 17)), jnp.int32)

    def step(params, tokens, key):
        def loss(params):
            logits = model(tokens[:, :-1], params=params, dropout_rng=key, train=True).logits
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

        value, grads = jax.value_and_grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 0.05 * g, params, grads), value

    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=2),
        stage_option=autopar.UniformStageOption(num_stages=2),
    )
    ours = autopar.parallelize(step, method=method, batch_argnums=(1,))
    key = jax.random.key(3)
    mine, my_loss = ours(model.params, tokens, key)
    theirs, their_loss = jax.jit(step)(model.params, tokens, key)
    assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_an_nnx_model_with_dropout_updated_in_place_pipelines_as_under_nnx_jit():
    """flax NNX's own Dropout, its key drawn from the module's RNG stream (whose counter the step writes
    back), with an optax optimizer: two pipelined steps train as nnx.jit's."""
    import optax
    from flax import nnx

    class Model(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.up = nnx.Linear(16, 64, rngs=rngs)
            self.dropout = nnx.Dropout(0.2, rngs=rngs)
            self.down = nnx.Linear(64, 8, rngs=rngs)

        def __call__(self, x):
            return self.down(self.dropout(nnx.gelu(self.up(x))))

    def step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    def state():
        model = Model(nnx.Rngs(0))
        return model, nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    x, y = normal((16, 16), seed=1), normal((16, 8), seed=2)
    method = autopar.PipeshardParallel(num_micro_batches=2, layer_option=autopar.AutoLayerOption(layer_num=2))
    f = autopar.parallelize(step, method=method, batch_argnums=(2, 3))
    (mine, my_opt), (theirs, their_opt) = state(), state()
    for _ in range(2):
        assert float(f(mine, my_opt, x, y)) == pytest.approx(
            float(nnx.jit(step)(theirs, their_opt, x, y)), rel=1e-5
        )
    assert_trees_close(nnx.state(mine, nnx.Param), nnx.state(theirs, nnx.Param), rtol=1e-4, atol=1e-5)
    assert int(mine.dropout.rngs.count[...]) == int(theirs.dropout.rngs.count[...]) == 2
