"""A minimal GPT training step for the inter-op benchmark, until benchmarks/models/gpt.py lands on main
(then this file is deleted). Pre-LN transformer, tied embedding, cross-entropy, SGD; abstract arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Alpa's GPT suite: (hidden, layers, heads); seq 1024, vocab 51200, global batch 1024.
GPT_CONFIGS = {
    "gpt-350m": (1024, 24, 16),
    "gpt-1.3b": (2048, 24, 32),
    "gpt-2.6b": (2560, 32, 32),
    "gpt-6.7b": (4096, 32, 32),
    "gpt-15b": (5120, 48, 40),
    "gpt-39b": (8192, 48, 64),
}
SEQ, VOCAB, BATCH = 1024, 51200, 1024


def _layer_norm(x):
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5)


def _block(p, x, heads):
    b, s, h = x.shape
    y = _layer_norm(x)
    qkv = (y @ p["qkv"]).reshape(b, s, 3, heads, h // heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(h // heads).astype(x.dtype)
    att = jax.nn.softmax(att, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, s, h)
    x = x + out @ p["proj"]
    y = _layer_norm(x)
    return x + jax.nn.gelu(y @ p["fc1"]) @ p["fc2"]


def make_step(name: str):
    """(train_step, abstract params, abstract batch) for a GPT config of Alpa's suite."""
    hidden, layers, heads = GPT_CONFIGS[name]
    dt = jnp.float16
    sds = jax.ShapeDtypeStruct
    params = {
        "embed": sds((VOCAB, hidden), dt),
        "blocks": [
            {
                "qkv": sds((hidden, 3 * hidden), dt),
                "proj": sds((hidden, hidden), dt),
                "fc1": sds((hidden, 4 * hidden), dt),
                "fc2": sds((4 * hidden, hidden), dt),
            }
            for _ in range(layers)
        ],
    }
    tokens = sds((BATCH, SEQ), jnp.int32)

    def loss_fn(params, tokens):
        x = params["embed"][tokens]
        for p in params["blocks"]:
            x = _block(p, x, heads)
        logits = _layer_norm(x) @ params["embed"].T
        labels = jax.nn.one_hot(tokens, VOCAB, dtype=logits.dtype)
        return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * labels, -1))

    def train_step(params, tokens):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
        return loss, jax.tree.map(lambda p, g: p - 1e-4 * g, params, grads)

    return train_step, (params, tokens)
