"""A GShard-style mixture-of-experts transformer in plain JAX, with Alpa's MoE benchmark suite shapes.

Every layer is attention + a mixture-of-experts FFN (that is how Alpa's suite reaches its parameter counts:
70B = 32 layers x 64 experts x 8 H^2). Tokens are routed in groups of `expert_group` tokens, top-1
(Switch) routing with capacity 2 * group / experts and GShard's einsum dispatch/combine (Alpa used top-2;
top-1 keeps the lowered graph smaller and has the same shapes). Abstract arguments only: the benchmark
plans, it does not run.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

SEQ, VOCAB, EXPERT_GROUP, GLOBAL_BATCH = 1024, 32000, 2048, 1024


@dataclasses.dataclass(frozen=True)
class MoEConfig:
    name: str
    hidden: int
    layers: int
    heads: int
    experts: int
    batch: int = 8
    seq_len: int = SEQ
    vocab: int = VOCAB
    expert_group: int = EXPERT_GROUP

    def num_params(self) -> int:
        h = self.hidden
        per_layer = 4 * h * h + self.experts * 8 * h * h + h * self.experts
        return self.layers * per_layer + (self.vocab + self.seq_len) * h


# Alpa's suite_auto_moe.py: (hidden, layers, heads, experts); seq 1024, vocab 32000, expert group 2048.
MOE_SUITE = {
    "380M": MoEConfig("380M", 768, 8, 16, 8),
    "690M": MoEConfig("690M", 768, 8, 16, 16),
    "1.3B": MoEConfig("1.3B", 768, 16, 16, 16),
    "2.4B": MoEConfig("2.4B", 1024, 16, 16, 16),
    "10B": MoEConfig("10B", 1536, 16, 16, 32),
    "27B": MoEConfig("27B", 2048, 16, 16, 48),
    "70B": MoEConfig("70B", 2048, 32, 16, 64),
}


def param_shapes(cfg: MoEConfig) -> dict[str, Any]:
    h, e = cfg.hidden, cfg.experts
    layer = {"qkv": (h, 3 * h), "proj": (h, h), "gate": (h, e), "wi": (e, h, 4 * h), "wo": (e, 4 * h, h)}
    return {
        "embed": (cfg.vocab, h),
        "pos": (cfg.seq_len, h),
        "layers": [dict(layer) for _ in range(cfg.layers)],
    }


def _layer_norm(x):
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5)


def _attention(p, x, heads):
    b, s, h = x.shape
    d = h // heads
    qkv = (_layer_norm(x) @ p["qkv"]).reshape(b, s, 3, heads, d)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    att = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.asarray(math.sqrt(d), x.dtype), axis=-1)
    return x + jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, s, h) @ p["proj"]


def _moe(p, x, cfg: MoEConfig):
    b, s, h = x.shape
    tokens = b * s
    group = min(cfg.expert_group, tokens)
    g, e = tokens // group, cfg.experts
    capacity = max(1, 2 * group // e)
    y = _layer_norm(x).reshape(g, group, h)
    probs = jax.nn.softmax((y @ p["gate"]).astype(jnp.float32), axis=-1)  # [g, s, e]
    expert = jnp.argmax(probs, axis=-1)
    onehot = jax.nn.one_hot(expert, e, dtype=jnp.float32)
    position = jnp.cumsum(onehot, axis=1) * onehot - 1.0  # slot of each token in its expert's buffer
    keep = onehot * (position < capacity)
    slot = jax.nn.one_hot(jnp.sum(position * keep, -1).astype(jnp.int32), capacity, dtype=jnp.float32)
    dispatch = (keep[..., None] * slot[:, :, None, :]).astype(x.dtype)  # [g, s, e, c]
    combine = dispatch * jnp.sum(probs * keep, -1)[..., None, None].astype(x.dtype)
    expert_in = jnp.einsum("gsec,gsh->egch", dispatch, y)
    hidden = jax.nn.gelu(jnp.einsum("egch,ehf->egcf", expert_in, p["wi"]))
    expert_out = jnp.einsum("egcf,efh->egch", hidden, p["wo"])
    return x + jnp.einsum("gsec,egch->gsh", combine, expert_out).reshape(b, s, h)


def make_train_step(cfg: MoEConfig, learning_rate: float = 1e-4):
    def loss_fn(params, tokens):
        x = params["embed"][tokens] + params["pos"][None, : tokens.shape[1]]
        for p in params["layers"]:
            x = _moe(p, _attention(p, x, cfg.heads), cfg)
        logits = _layer_norm(x) @ params["embed"].T
        labels = jax.nn.one_hot(tokens, cfg.vocab, dtype=logits.dtype)
        return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * labels, -1))

    def train_step(params, tokens):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
        return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), loss

    return train_step


def abstract_args(cfg: MoEConfig, dtype=jnp.float16) -> tuple[Any, Any]:
    params = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s, dtype), param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple)
    )
    return params, jax.ShapeDtypeStruct((cfg.batch, cfg.seq_len), jnp.int32)
