"""A GPT-2 style decoder in plain JAX, with Alpa's GPT benchmark suite shapes.

Parameters are a dict pytree so a training step lowers with abstract arguments (`jax.ShapeDtypeStruct`)
at any size without allocating it. Used by benchmarks/intra_op.py and, at toy sizes, by the tests.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Attributes: the usual GPT hyper-parameters; `batch` sequences of `seq_len` tokens per step."""

    name: str
    seq_len: int
    hidden: int
    layers: int
    heads: int
    vocab: int
    batch: int = 8

    def num_params(self) -> int:
        per_layer = 12 * self.hidden * self.hidden + 13 * self.hidden
        return self.layers * per_layer + (self.vocab + self.seq_len) * self.hidden + 2 * self.hidden


# Alpa's suite_manual_gpt.py / paper Table 4 model shapes (seq 1024, vocab 51200).
GPT_SUITE = {
    "125M": GPTConfig("125M", 1024, 768, 12, 12, 51200),
    "350M": GPTConfig("350M", 1024, 1024, 24, 16, 51200),
    "760M": GPTConfig("760M", 1024, 1536, 24, 16, 51200),
    "1.3B": GPTConfig("1.3B", 1024, 2048, 24, 32, 51200),
    "2.6B": GPTConfig("2.6B", 1024, 2560, 32, 32, 51200),
    "6.7B": GPTConfig("6.7B", 1024, 4096, 32, 32, 51200),
    "15B": GPTConfig("15B", 1024, 5120, 48, 40, 51200),
    "39B": GPTConfig("39B", 1024, 8192, 48, 64, 51200),
}


def param_shapes(cfg: GPTConfig) -> dict[str, Any]:
    h = cfg.hidden
    layer = {
        "ln1_g": (h,),
        "ln1_b": (h,),
        "qkv_w": (h, 3 * h),
        "qkv_b": (3 * h,),
        "proj_w": (h, h),
        "proj_b": (h,),
        "ln2_g": (h,),
        "ln2_b": (h,),
        "fc1_w": (h, 4 * h),
        "fc1_b": (4 * h,),
        "fc2_w": (4 * h, h),
        "fc2_b": (h,),
    }
    return {
        "wte": (cfg.vocab, h),
        "wpe": (cfg.seq_len, h),
        "layers": [dict(layer) for _ in range(cfg.layers)],
        "lnf_g": (h,),
        "lnf_b": (h,),
    }


def abstract_params(cfg: GPTConfig, dtype=jnp.float32) -> dict[str, Any]:
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s, dtype), param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple)
    )


def init_params(cfg: GPTConfig, seed: int = 0) -> dict[str, Any]:
    shapes = param_shapes(cfg)
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    rng = np.random.default_rng(seed)  # numpy: eager jax.random compiles once per shape (slow in tests)
    values = [(rng.standard_normal(s) * (0.02 if len(s) > 1 else 0.1)).astype(np.float32) for s in leaves]
    return jax.tree.unflatten(treedef, values)


def _layer_norm(x, g, b):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * g + b


def block(p: dict[str, Any], x: jax.Array, heads: int) -> jax.Array:
    """One pre-LN transformer layer: causal self-attention then a 4x MLP, both residual."""
    b, s, h = x.shape
    d = h // heads
    y = _layer_norm(x, p["ln1_g"], p["ln1_b"])
    # Columns of qkv_w are (head, q/k/v, d): a column split is a split over heads (Megatron's layout).
    qkv = (y @ p["qkv_w"] + p["qkv_b"]).reshape(b, s, heads, 3, d)
    q, k, v = qkv[:, :, :, 0], qkv[:, :, :, 1], qkv[:, :, :, 2]
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d)
    mask = jnp.tril(jnp.ones((s, s), dtype=bool))
    scores = jnp.where(mask, scores, -1e9)
    attn = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, s, h)
    x = x + out @ p["proj_w"] + p["proj_b"]
    y = _layer_norm(x, p["ln2_g"], p["ln2_b"])
    y = jax.nn.gelu(y @ p["fc1_w"] + p["fc1_b"])
    return x + y @ p["fc2_w"] + p["fc2_b"]


def loss_fn(
    params: dict[str, Any], tokens: jax.Array, targets: jax.Array, heads: int, remat: bool = False
) -> jax.Array:
    """`remat`: each block under jax.checkpoint. A dict of stacked layers (`stack_layers`) is scanned over
    with lax.scan, a list of layers is a Python loop."""
    x = params["wte"][tokens] + params["wpe"][None, : tokens.shape[1]]
    layer_fn = functools.partial(block, heads=heads)
    if remat:
        layer_fn = jax.checkpoint(layer_fn)
    if isinstance(params["layers"], dict):
        x = jax.lax.scan(lambda h, layer: (layer_fn(layer, h), None), x, params["layers"])[0]
    for layer in params["layers"] if isinstance(params["layers"], list) else ():
        x = layer_fn(layer, x)
    x = _layer_norm(x, params["lnf_g"], params["lnf_b"])
    logits = x @ params["wte"].T
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))


def make_train_step(cfg: GPTConfig, learning_rate: float = 1e-3, remat: bool = False):
    """(params, tokens, targets) -> (new params, loss), plain SGD (the optimizer is not what is measured).
    `remat`: each block under jax.checkpoint; stacked layers (`stack_layers`) run as a lax.scan."""

    def train_step(params, tokens, targets):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens, targets, cfg.heads, remat)
        return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), loss

    return train_step


def stack_layers(params: dict[str, Any]) -> dict[str, Any]:
    """`params` with its list of layers as one dict of arrays stacked on a leading layer dim (what
    `loss_fn` scans over); abstract params stay abstract."""

    def stack(*xs):
        if isinstance(xs[0], jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct((len(xs), *xs[0].shape), xs[0].dtype)
        return np.stack(xs)

    return {**params, "layers": jax.tree.map(stack, *params["layers"])}


def abstract_batch(cfg: GPTConfig) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
    tok = jax.ShapeDtypeStruct((cfg.batch, cfg.seq_len), jnp.int32)
    return tok, tok
