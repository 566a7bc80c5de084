"""Code nobody here wrote, in the shapes flax's own examples give it: an LSTM encoder-decoder (flax's
`nn.RNN` over `nn.LSTMCell`, examples/seq2seq), a bidirectional LSTM text classifier with sequence
lengths and dropout (examples/sst2), a VAE drawing its noise in the step (examples/vae), message passing
over a batch of graphs with `segment_sum` (examples/ogbg_molpcba), PPO's update over shuffled minibatches
(examples/ppo) and greedy decoding with attention's cache (`decode=True`, examples/lm1b and wmt), each
trained or run through `autopar.parallelize` with optax and flax's TrainState from a random init.
Every result equals `jax.jit`'s, and on one mesh the collectives XLA compiled carry the bytes the plan
priced, per kind.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

import autopar
from numeric import assert_priced_bytes_compiled, assert_trees_close

BATCH = 8
PIPELINE = autopar.PipeshardParallel(num_micro_batches=2, layer_option=autopar.AutoLayerOption(layer_num=2))
SHARD_2X4 = autopar.ShardParallel(mesh_shape=(2, 4))
RTOL, ATOL = 2e-4, 2e-5  # Adam's first step turns rounding into sign flips of tiny gradients


def _state(model, *inputs, tx=None):
    params = model.init(jax.random.key(0), *inputs)
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx or optax.adam(1e-3))


def _runs_like_jit(step, args, method, fidelity=False):
    f = autopar.parallelize(step, method=method)
    assert_trees_close(f(*args), jax.jit(step)(*args), rtol=RTOL, atol=ATOL)
    if fidelity:
        assert_priced_bytes_compiled(f.get_execution_plan(*args))


class Seq2seq(nn.Module):
    @nn.compact
    def __call__(self, encoder_inputs, decoder_inputs):
        carry, _ = nn.RNN(nn.LSTMCell(32), return_carry=True)(encoder_inputs)
        return nn.Dense(16)(nn.RNN(nn.LSTMCell(32))(decoder_inputs, initial_carry=carry))


def seq2seq_step(state, batch):
    def loss(params):
        logits = state.apply_fn(params, batch["encoder"], batch["decoder"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

    value, grads = jax.value_and_grad(loss)(state.params)
    return state.apply_gradients(grads=grads), value


@pytest.mark.parametrize("method", [SHARD_2X4, PIPELINE], ids=["2x4", "pipeshard"])
def test_lstm_encoder_decoder_trains_like_jit(method):
    rng = np.random.default_rng(0)
    encoder = jnp.asarray(rng.standard_normal((BATCH, 5, 16), dtype=np.float32))
    decoder = jnp.asarray(rng.standard_normal((BATCH, 4, 16), dtype=np.float32))
    batch = {"encoder": encoder, "decoder": decoder, "labels": jnp.asarray(rng.integers(0, 16, (BATCH, 4)))}
    args = (_state(Seq2seq(), encoder, decoder), batch)
    _runs_like_jit(seq2seq_step, args, method, fidelity=method is SHARD_2X4)


class TextClassifier(nn.Module):
    @nn.compact
    def __call__(self, tokens, lengths, train):
        x = nn.Dropout(0.1, deterministic=not train)(nn.Embed(50, 16)(tokens))
        lstm = nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(16)), nn.RNN(nn.OptimizedLSTMCell(16)))
        x = lstm(x, seq_lengths=lengths)
        mask = (jnp.arange(tokens.shape[1])[None] < lengths[:, None])[..., None]
        pooled = (x * mask).sum(1) / lengths[:, None]
        return nn.Dense(1)(nn.tanh(nn.Dense(16)(pooled)))[:, 0]


def classifier_step(state, batch, key):
    def loss(params):
        logits = state.apply_fn(params, batch["tokens"], batch["lengths"], True, rngs={"dropout": key})
        return optax.sigmoid_binary_cross_entropy(logits, batch["labels"]).mean()

    value, grads = jax.value_and_grad(loss)(state.params)
    return state.apply_gradients(grads=grads), value


@pytest.mark.parametrize("method", [autopar.DataParallel(), PIPELINE], ids=["data", "pipeshard"])
def test_bidirectional_lstm_classifier_with_lengths_and_dropout_trains_like_jit(method):
    rng = np.random.default_rng(1)
    tokens, lengths = jnp.asarray(rng.integers(0, 50, (BATCH, 7))), jnp.asarray(rng.integers(1, 8, BATCH))
    labels = jnp.asarray(rng.integers(0, 2, BATCH).astype(np.float32))
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    state = _state(TextClassifier(), tokens, lengths, False, tx=tx)
    args = (state, {"tokens": tokens, "lengths": lengths, "labels": labels}, jax.random.key(3))
    _runs_like_jit(classifier_step, args, method, fidelity=not isinstance(method, autopar.PipeshardParallel))


class VAE(nn.Module):
    @nn.compact
    def __call__(self, x, key):
        h = nn.relu(nn.Dense(64)(x))
        mean, logvar = nn.Dense(8)(h), nn.Dense(8)(h)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, logvar.shape)
        return nn.Dense(x.shape[-1])(nn.relu(nn.Dense(64)(z))), mean, logvar


def vae_step(state, x, key):
    def loss(params):
        logits, mean, logvar = state.apply_fn(params, x, key)
        reconstruction = optax.sigmoid_binary_cross_entropy(logits, x).sum(-1)
        kl = -0.5 * jnp.sum(1 + logvar - mean**2 - jnp.exp(logvar), -1)
        return (reconstruction + kl).mean()

    value, grads = jax.value_and_grad(loss)(state.params)
    return state.apply_gradients(grads=grads), value


@pytest.mark.parametrize(
    "method", [autopar.ShardParallel(mesh_shape=(2, 2, 2)), PIPELINE], ids=["2x2x2", "pipeshard"]
)
def test_vae_drawing_its_noise_in_the_step_trains_like_jit(method):
    x = jnp.asarray((np.random.default_rng(2).random((BATCH, 32)) > 0.5).astype(np.float32))
    args = (_state(VAE(), x, jax.random.key(1)), x, jax.random.key(5))
    _runs_like_jit(vae_step, args, method, fidelity=not isinstance(method, autopar.PipeshardParallel))


NODES, EDGES, GRAPHS = 24, 48, 4


class MessagePassing(nn.Module):
    @nn.compact
    def __call__(self, nodes, edges, senders, receivers, node_graph):
        for _ in range(2):
            messages = nn.Dense(16)(jnp.concatenate([nodes[senders], edges], -1))
            incoming = jax.ops.segment_sum(messages, receivers, num_segments=NODES)
            nodes = nn.LayerNorm()(nn.relu(nn.Dense(16)(jnp.concatenate([nodes, incoming], -1))))
        return nn.Dense(3)(jax.ops.segment_sum(nodes, node_graph, num_segments=GRAPHS))


def graph_step(state, graphs):
    def loss(params):
        g = graphs
        predictions = state.apply_fn(params, g["nodes"], g["edges"], g["senders"], g["receivers"], g["graph"])
        return optax.l2_loss(predictions, g["targets"]).mean()

    value, grads = jax.value_and_grad(loss)(state.params)
    return state.apply_gradients(grads=grads), value


def _graphs():
    rng = np.random.default_rng(3)
    return {
        "nodes": jnp.asarray(rng.standard_normal((NODES, 9), dtype=np.float32)),
        "edges": jnp.asarray(rng.standard_normal((EDGES, 3), dtype=np.float32)),
        "senders": jnp.asarray(rng.integers(0, NODES, EDGES)),
        "receivers": jnp.asarray(rng.integers(0, NODES, EDGES)),
        "graph": jnp.asarray(np.repeat(np.arange(GRAPHS), NODES // GRAPHS)),
        "targets": jnp.asarray(rng.standard_normal((GRAPHS, 3), dtype=np.float32)),
    }


def test_message_passing_over_a_batch_of_graphs_trains_like_jit_and_is_not_cut_into_micro_batches():
    """The graphs' nodes, edges and targets lead with different sizes, and an edge names its nodes by
    index: slicing them into micro-batches would pair edges with other graphs' nodes. Sharded on one
    mesh the step runs as under jax.jit; pipelined it is refused, with the way out."""
    graphs = _graphs()
    state = _state(
        MessagePassing(),
        graphs["nodes"],
        graphs["edges"],
        graphs["senders"],
        graphs["receivers"],
        graphs["graph"],
    )
    _runs_like_jit(graph_step, (state, graphs), SHARD_2X4, fidelity=True)
    with pytest.raises(autopar.AutoparError, match="num_micro_batches=1"):
        autopar.parallelize(graph_step, method=PIPELINE)(state, graphs)


class ActorCritic(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.tanh(nn.Dense(32)(nn.tanh(nn.Dense(32)(x))))
        return nn.Dense(4)(h), nn.Dense(1)(h)[..., 0]


ROLLOUT, MINIBATCH, EPOCHS = 64, 16, 2


def ppo_update(state, rollout, key):
    """Epochs of shuffled minibatches; a clipped surrogate, value and entropy loss per minibatch."""

    def loss(params, mb):
        logits, value = state.apply_fn(params, mb["obs"])
        log_probs = jax.nn.log_softmax(logits)
        log_prob = jnp.take_along_axis(log_probs, mb["actions"][:, None], 1)[:, 0]
        ratio = jnp.exp(log_prob - mb["log_probs"])
        advantages = (mb["advantages"] - mb["advantages"].mean()) / (mb["advantages"].std() + 1e-8)
        surrogate = -jnp.minimum(ratio * advantages, jnp.clip(ratio, 0.8, 1.2) * advantages).mean()
        entropy = -(jnp.exp(log_probs) * log_probs).sum(-1).mean()
        return surrogate + 0.5 * ((value - mb["returns"]) ** 2).mean() - 0.01 * entropy

    def epoch(state, epoch_key):
        order = jax.random.permutation(epoch_key, ROLLOUT)
        shuffled = jax.tree.map(lambda x: x[order].reshape(-1, MINIBATCH, *x.shape[1:]), rollout)

        def minibatch(state, mb):
            value, grads = jax.value_and_grad(loss)(state.params, mb)
            return state.apply_gradients(grads=grads), value

        state, losses = jax.lax.scan(minibatch, state, shuffled)
        return state, losses.mean()

    state, losses = jax.lax.scan(epoch, state, jax.random.split(key, EPOCHS))
    return state, losses.mean()


@pytest.mark.parametrize(
    "method", [autopar.DataParallel(), autopar.Zero2Parallel(), SHARD_2X4], ids=["data", "zero2", "2x4"]
)
def test_ppo_update_over_shuffled_minibatches_trains_like_jit(method):
    rng = np.random.default_rng(4)
    rollout = {
        "obs": jnp.asarray(rng.standard_normal((ROLLOUT, 8), dtype=np.float32)),
        "actions": jnp.asarray(rng.integers(0, 4, ROLLOUT)),
        "log_probs": jnp.asarray(-rng.random(ROLLOUT, dtype=np.float32)),
        "advantages": jnp.asarray(rng.standard_normal(ROLLOUT, dtype=np.float32)),
        "returns": jnp.asarray(rng.standard_normal(ROLLOUT, dtype=np.float32)),
    }
    tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(3e-4))
    state = _state(ActorCritic(), rollout["obs"], tx=tx)
    _runs_like_jit(ppo_update, (state, rollout, jax.random.key(3)), method, fidelity=True)


VOCAB, WIDTH, STEPS = 64, 32, 8


class DecoderBlock(nn.Module):
    decode: bool

    @nn.compact
    def __call__(self, x):
        mask = None if self.decode else nn.make_causal_mask(x[..., 0])
        x = x + nn.MultiHeadDotProductAttention(num_heads=4, decode=self.decode)(nn.LayerNorm()(x), mask=mask)
        return x + nn.Dense(WIDTH)(nn.gelu(nn.Dense(4 * WIDTH)(nn.LayerNorm()(x))))


class LanguageModel(nn.Module):
    decode: bool = False

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(VOCAB, WIDTH)(tokens)
        for _ in range(2):
            x = DecoderBlock(self.decode)(x)
        return nn.Dense(VOCAB)(nn.LayerNorm()(x))


def greedy_decode(params, cache, first):
    """STEPS tokens, one at a time, each read from the model with its attention cache (updated in place)."""

    def step(i, carry):
        cache, token, out = carry
        variables = {"params": params, "cache": cache}
        logits, updated = LanguageModel(decode=True).apply(variables, token[:, None], mutable=["cache"])
        token = jnp.argmax(logits[:, 0], -1)
        return updated["cache"], token, out.at[:, i].set(token)

    out = jnp.zeros((first.shape[0], STEPS), jnp.int32)
    cache, _, out = jax.lax.fori_loop(0, STEPS, step, (cache, first, out))
    return out, cache


@pytest.mark.parametrize("method", [SHARD_2X4, PIPELINE], ids=["2x4", "pipeshard"])
def test_greedy_decoding_with_attentions_cache_runs_like_jit(method):
    """The cache is per example, so it is a batch argument: pipelined, each micro-batch decodes with its
    examples' cache. jnp writes it with a dynamic_update_slice at the batch dim's index `select(0 < 0,
    0 + n, 0)` (n the batch size), which the micro-batch kinds read as the 0 it always is."""
    first = jnp.asarray(np.random.default_rng(5).integers(0, VOCAB, BATCH))
    params = LanguageModel().init(jax.random.key(0), jnp.zeros((BATCH, STEPS), jnp.int32))["params"]
    cache = LanguageModel(decode=True).init(jax.random.key(0), jnp.zeros((BATCH, STEPS), jnp.int32))["cache"]
    f = autopar.parallelize(greedy_decode, method=method, batch_argnums=(1, 2))
    got, want = f(params, cache, first), jax.jit(greedy_decode)(params, cache, first)
    np.testing.assert_array_equal(got[0], want[0])  # the same tokens
    assert_trees_close(got[1], want[1], rtol=1e-4, atol=1e-5)
    if method is SHARD_2X4:
        assert_priced_bytes_compiled(f.get_execution_plan(params, cache, first))
