"""Training steps shared by the suites that compare parallelization methods and pipelines: an MLP and
the example transformer, each trained with Adam, as (step, concrete args, batch_argnums)."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from benchmarks.models.small import mlp_adam
from flax.training import train_state

sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "examples"))
from train_transformer import BATCH, SEQ, VOCAB, LanguageModel, train_step  # noqa: E402


def relu_mlp_loss(params, x, y):
    h = x
    for i, w in enumerate(params):
        h = h @ w
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return jnp.mean((h - y) ** 2)


def relu_mlp_sgd_step(params, x, y):
    """A bias-free ReLU MLP's SGD step: (new params, loss)."""
    loss, grads = jax.value_and_grad(relu_mlp_loss)(params, x, y)
    return [w - 0.1 * g for w, g in zip(params, grads, strict=True)], loss


def mlp_case():
    step, abstract, batch_argnums = mlp_adam()
    rng = np.random.default_rng(0)
    args = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape) * 0.05, s.dtype), abstract)
    return step, args, batch_argnums


def transformer_case():
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, VOCAB, (BATCH, SEQ + 1)), jnp.int32)
    model = LanguageModel()
    params = model.init(jax.random.key(0), tokens[:, :-1])
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adamw(3e-3))
    return train_step, (state, tokens), (1,)


CASES = {"mlp": mlp_case, "transformer": transformer_case}
