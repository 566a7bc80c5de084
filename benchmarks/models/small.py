"""Small training steps ("the test models"): what a user tries first, and what tests and the planning
benchmarks plan on every mesh. Each entry builds (step function, abstract arguments, batch_argnums) for
`autopar.parallelize`; nothing is allocated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from benchmarks.models import gpt, moe, wide_resnet


@dataclasses.dataclass(frozen=True)
class SmallModel:
    """Attributes: name; build() -> (step, abstract args, batch_argnums)."""

    name: str
    build: Callable[[], tuple[Callable[..., Any], tuple[Any, ...], tuple[int, ...]]]


def _f32(*shape: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def tanh_mlp_adam(width: int, layers: int, batch: int, *, lr: float = 1e-3, seed: int = 0):
    """The pipeline tests' and benchmarks' step: `layers` tanh layers of `width`, a mean squared error on
    (x, x), optax Adam; returns (step, concrete (params, opt_state, (x, x))) with params of unit gain."""
    optimizer = optax.adam(lr)

    def step(params, opt_state, batch):
        x, y = batch

        def loss(p):
            h = x
            for w in p:
                h = jnp.tanh(h @ w)
            return jnp.mean((h - y) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    rng = np.random.default_rng(seed)
    params = [
        jnp.asarray(rng.standard_normal((width, width)) / np.sqrt(width), jnp.float32) for _ in range(layers)
    ]
    x = jnp.asarray(rng.standard_normal((batch, width)), jnp.float32)
    return step, (params, optimizer.init(params), (x, x))


def tied_adam_step(params, opt_state, batch):
    """A tanh MLP whose first weight (`params["embed"]`) the last layer reads again, transposed (a tied
    embedding: two pipeline stages read one parameter), trained with Adam (lr 1e-2) on (x, y)."""
    x, y = batch

    def loss(p):
        h = jnp.tanh(x @ p["embed"])
        for w in p["hidden"]:
            h = jnp.tanh(h @ w)
        return jnp.mean((h @ p["embed"].T - y) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = _TIED_OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


_TIED_OPTIMIZER = optax.adam(1e-2)


def mlp_sgd():
    """The README example's step: 4 layers of 1024, batch 256, SGD."""

    def loss(params, batch):
        x, y = batch
        for i, (w, b) in enumerate(params):
            x = x @ w + b
            if i < len(params) - 1:
                x = jax.nn.relu(x)
        return jnp.mean((x - y) ** 2)

    def step(params, batch):
        value, grads = jax.value_and_grad(loss)(params, batch)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), value

    params = [(_f32(1024, 1024), _f32(1024)) for _ in range(4)]
    return step, (params, (_f32(256, 1024), _f32(256, 1024))), (1,)


def mlp_adam():
    """3 layers of 512, batch 128, optax Adam (optimizer state beside the parameters)."""
    optimizer = optax.adam(1e-3)

    def loss(params, x, y):
        for i, w in enumerate(params):
            x = x @ w
            if i < len(params) - 1:
                x = jax.nn.gelu(x)
        return jnp.mean((x - y) ** 2)

    def step(params, opt_state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    params = [_f32(512, 512) for _ in range(3)]
    opt_state = jax.eval_shape(optimizer.init, params)
    return step, (params, opt_state, _f32(128, 512), _f32(128, 512)), (2, 3)


def gpt_2layer():
    cfg = gpt.GPTConfig("2-layer", seq_len=128, hidden=256, layers=2, heads=4, vocab=2048, batch=8)
    return gpt.make_train_step(cfg), (gpt.abstract_params(cfg), *gpt.abstract_batch(cfg)), (1, 2)


def wide_resnet_small():
    cfg = wide_resnet.WResNetConfig("small", 50, 16, 1, batch=8, image=32, classes=10)
    return wide_resnet.make_train_step(cfg), wide_resnet.abstract_args(cfg, jnp.float32), (1, 2)


def moe_small():
    cfg = moe.MoEConfig("small", 128, 2, 4, 4, batch=4, seq_len=64, vocab=512, expert_group=64)
    params, tokens = moe.abstract_args(cfg, jnp.float32)
    return moe.make_train_step(cfg), (params, tokens), (1,)


SMALL_MODELS = [
    SmallModel("mlp-sgd", mlp_sgd),
    SmallModel("mlp-adam", mlp_adam),
    SmallModel("gpt-2layer", gpt_2layer),
    SmallModel("wide-resnet", wide_resnet_small),
    SmallModel("moe", moe_small),
]
