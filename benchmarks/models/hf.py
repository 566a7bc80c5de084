"""Training steps of HF transformers' Flax models (random init from small configs; nothing downloads): code
nobody here wrote, for the planning benchmarks. Each builder returns (step, abstract args, batch_argnums).

transformers 4.56's Flax T5 calls `jnp.clip(..., a_max=...)`, which jax 0.10 removed; `_t5_clip_shim`
restores the keyword for the duration of a T5 trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

BATCH, SEQ, IMAGE = 8, 128, 32


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def _sgd_step(apply_loss: Callable[[Any, Any], jax.Array]):
    def step(params, batch):
        loss, grads = jax.value_and_grad(apply_loss)(params, batch)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), loss

    return step


def gpt2():
    from transformers import FlaxGPT2LMHeadModel, GPT2Config

    model = FlaxGPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=256, n_head=4, vocab_size=2048, n_positions=SEQ))

    def loss(params, tokens):
        logits = model(tokens[:, :-1], params=params).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    tokens = jax.ShapeDtypeStruct((BATCH, SEQ + 1), jnp.int32)
    return _sgd_step(loss), (_abstract(model.params), tokens), (1,)


def bert():
    from transformers import BertConfig, FlaxBertForMaskedLM

    config = BertConfig(
        vocab_size=2048, hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=1024
    )
    model = FlaxBertForMaskedLM(config)

    def loss(params, tokens):
        logits = model(tokens, params=params).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens).mean()

    return _sgd_step(loss), (_abstract(model.params), jax.ShapeDtypeStruct((BATCH, SEQ), jnp.int32)), (1,)


def vit():
    from transformers import FlaxViTForImageClassification, ViTConfig

    config = ViTConfig(
        image_size=IMAGE,
        patch_size=4,
        hidden_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=1024,
        num_labels=10,
    )
    model = FlaxViTForImageClassification(config)

    def loss(params, batch):
        images, labels = batch
        logits = model(images, params=params).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    batch = (
        jax.ShapeDtypeStruct((BATCH, 3, IMAGE, IMAGE), jnp.float32),
        jax.ShapeDtypeStruct((BATCH,), jnp.int32),
    )
    return _sgd_step(loss), (_abstract(model.params), batch), (1,)


def resnet():
    from transformers import FlaxResNetForImageClassification, ResNetConfig

    config = ResNetConfig(
        embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1], num_labels=10
    )
    model = FlaxResNetForImageClassification(config)

    def loss(params, batch):
        images, labels = batch
        logits = model(images, params=params, train=False).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    batch = (
        jax.ShapeDtypeStruct((BATCH, 3, IMAGE, IMAGE), jnp.float32),
        jax.ShapeDtypeStruct((BATCH,), jnp.int32),
    )
    params = {"params": model.params["params"]}  # batch statistics are not trained

    def step(params, batch):
        def with_stats(p, b):
            return loss({**p, "batch_stats": model.params["batch_stats"]}, b)

        value, grads = jax.value_and_grad(with_stats)(params, batch)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), value

    return step, (_abstract(params), batch), (1,)


def t5():
    from transformers import FlaxT5ForConditionalGeneration, T5Config

    config = T5Config(
        vocab_size=2048, d_model=256, d_kv=64, d_ff=1024, num_layers=2, num_decoder_layers=2, num_heads=4
    )
    with _t5_clip_shim():
        model = FlaxT5ForConditionalGeneration(config)

    def loss(params, batch):
        inputs, targets = batch
        with _t5_clip_shim():
            logits = model(inputs, decoder_input_ids=targets[:, :-1], params=params).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets[:, 1:]).mean()

    batch = (
        jax.ShapeDtypeStruct((BATCH, SEQ), jnp.int32),
        jax.ShapeDtypeStruct((BATCH, SEQ // 2 + 1), jnp.int32),
    )
    return _sgd_step(loss), (_abstract(model.params), batch), (1,)


@contextlib.contextmanager
def _t5_clip_shim():
    original = jnp.clip

    def clip(a, a_min=None, a_max=None, **kwargs):
        return original(a, kwargs.pop("min", a_min), kwargs.pop("max", a_max), **kwargs)

    jnp.clip = clip
    try:
        yield
    finally:
        jnp.clip = original


HF_MODELS = {"gpt2": gpt2, "bert": bert, "vit": vit, "resnet": resnet, "t5": t5}
