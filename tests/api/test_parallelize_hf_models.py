"""Code nobody here wrote: HF transformers' Flax GPT-2, Llama, Mistral, BART, BERT (also with its gradient
checkpointing), ALBERT, ViT, ResNet, RegNet and a classifier on CLIP's pooled text (random init from tiny
configs; nothing downloads), trained through `autopar.parallelize` on 1-, 2- and 3-axis meshes of 8
devices. Each step's loss and the trained parameters equal `jax.jit`'s, and the collectives XLA compiled
carry the bytes the plan priced, per kind (XLA merges the gradient all-reduces, so counts differ; bytes
do not).
Pipelined (PipeshardParallel: two stages on submeshes, two micro-batches), each equals `jax.jit`'s
full-batch step too (ResNet's max pool and that pool's gradient combine over the micro-batches).

Plain SGD, not Adam: these models keep a bias on attention's keys, whose gradient is zero but for
rounding (softmax does not see a shift shared by every key), and Adam turns that noise into a
full-size step whose sign differs between any two programs that round differently (jax.jit's program
on one device against any sharded one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autopar
import hf_configs
from numeric import assert_priced_bytes_compiled

transformers = pytest.importorskip("transformers")

BATCH, SEQ, VOCAB, IMAGE = 8, 32, 512, 16
# A tiny text model: BERT's, CLIP's, Llama's and ALBERT's configs take these names.
TINY_ENCODER = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=SEQ,
)


def _causal_lm(model):
    """(params, next-token loss, token batches) of an HF Flax causal language model."""

    def loss(params, tokens):
        logits = model(tokens[:, :-1], params=params).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    return model.params, loss, lambda rng: rng.integers(0, VOCAB, (BATCH, SEQ + 1)).astype(np.int32)


def _masked_lm(model):
    """(params, loss predicting every token, token batches) of an HF Flax masked language model."""

    def loss(params, tokens):
        logits = model(tokens, params=params).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens).mean()

    return model.params, loss, lambda rng: rng.integers(0, VOCAB, (BATCH, SEQ)).astype(np.int32)


def _gpt2():
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=SEQ)
    return _causal_lm(transformers.FlaxGPT2LMHeadModel(config, seed=0))


def _llama():
    # Grouped-query attention (2 key/value heads for 4 query heads) and rotary position embeddings.
    config = transformers.LlamaConfig(**TINY_ENCODER, num_key_value_heads=2)
    return _causal_lm(transformers.FlaxLlamaForCausalLM(config, seed=0))


def _mistral():
    # Sliding-window attention (a band of 16 positions) over grouped-query attention.
    config = transformers.MistralConfig(**TINY_ENCODER, num_key_value_heads=2, sliding_window=16)
    return _causal_lm(transformers.FlaxMistralForCausalLM(config, seed=0))


def _bart():
    """An encoder-decoder: the first half of each sequence is the source, the decoder predicts the second
    half (cross-attention, a decoder's causal mask and a shared embedding)."""
    config = transformers.BartConfig(
        vocab_size=VOCAB,
        d_model=64,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=SEQ,
    )
    model = transformers.FlaxBartForConditionalGeneration(config, seed=0)
    half = SEQ // 2

    def loss(params, tokens):
        source, target = tokens[:, :half], tokens[:, half:]
        logits = model(input_ids=source, decoder_input_ids=target[:, :-1], params=params).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, target[:, 1:]).mean()

    # Ids from 3 on: 0-2 are BART's padding and sequence marks.
    return model.params, loss, lambda rng: rng.integers(3, VOCAB, (BATCH, SEQ + 1)).astype(np.int32)


def _albert():
    # One layer's weights shared by every layer, and a factorised embedding (32 wide, projected to 64).
    config = transformers.AlbertConfig(**TINY_ENCODER, embedding_size=32)
    return _masked_lm(transformers.FlaxAlbertForMaskedLM(config, seed=0))


def _bert(remat: bool = False):
    model = transformers.FlaxBertForMaskedLM(transformers.BertConfig(**TINY_ENCODER), seed=0)
    if remat:  # transformers' own gradient checkpointing: flax's remat on every layer
        model.enable_gradient_checkpointing()
    return _masked_lm(model)


def _vit():
    config = transformers.ViTConfig(
        image_size=IMAGE,
        patch_size=4,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        num_labels=10,
    )
    model = transformers.FlaxViTForImageClassification(config, seed=0)

    def loss(params, batch):
        images, labels = batch
        logits = model(images, params=params).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def data(rng):
        images = rng.standard_normal((BATCH, 3, IMAGE, IMAGE)).astype(np.float32)
        return images, rng.integers(0, 10, (BATCH,)).astype(np.int32)

    return model.params, loss, data


def _resnet():
    config = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=10)
    model = transformers.FlaxResNetForImageClassification(config, seed=0)
    stats = model.params["batch_stats"]  # running statistics: not trained, read in inference mode

    def loss(params, batch):
        images, labels = batch
        logits = model(images, params={**params, "batch_stats": stats}, train=False).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def data(rng):
        images = rng.standard_normal((BATCH, 3, IMAGE, IMAGE)).astype(np.float32)
        return images, rng.integers(0, 10, (BATCH,)).astype(np.int32)

    return {"params": model.params["params"]}, loss, data


def _regnet():
    # Grouped convolutions (groups of 8 channels), which XLA runs replicated under any sharding: the plan
    # must keep them whole and price the gathers (docs/platform.md, "Grouped convolutions run replicated").
    config = transformers.RegNetConfig(
        embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], groups_width=8, num_labels=10
    )
    model = transformers.FlaxRegNetForImageClassification(config, seed=0)
    stats = model.params["batch_stats"]

    def loss(params, batch):
        images, labels = batch
        logits = model(images, params={**params, "batch_stats": stats}, train=False).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def data(rng):
        images = rng.standard_normal((BATCH, 3, 2 * IMAGE, 2 * IMAGE)).astype(np.float32)
        return images, rng.integers(0, 10, (BATCH,)).astype(np.int32)

    return {"params": model.params["params"]}, loss, data


def _clip_text():
    # A classifier on CLIP's pooled text: the state at each sequence's end token, `h[jnp.arange(B), i]`.
    config = transformers.CLIPTextConfig(**TINY_ENCODER)
    model = transformers.FlaxCLIPTextModel(config, seed=0)
    head = np.random.default_rng(1).standard_normal((64, 10)).astype(np.float32) * 0.1

    def loss(params, batch):
        tokens, labels = batch
        pooled = model(tokens, params=params["clip"]).pooler_output
        return optax.softmax_cross_entropy_with_integer_labels(pooled @ params["head"], labels).mean()

    def data(rng):
        return rng.integers(0, VOCAB, (BATCH, SEQ)).astype(np.int32), rng.integers(0, 10, (BATCH,)).astype(
            np.int32
        )

    return {"clip": model.params, "head": jnp.asarray(head)}, loss, data


MODELS = {
    "albert": _albert,
    "bart": _bart,
    "mistral": _mistral,
    "clip-text": _clip_text,
    "llama": _llama,
    "gpt2": _gpt2,
    "bert": _bert,
    "bert-remat": lambda: _bert(remat=True),
    "vit": _vit,
    "resnet": _resnet,
    "regnet": _regnet,
}


def _sgd_step(loss):
    def step(params, batch):
        value, grads = jax.value_and_grad(loss)(params, batch)
        return jax.tree.map(lambda p, g: p - 0.05 * g, params, grads), value

    return step


@pytest.mark.parametrize("mesh_shape", [(8,), (2, 4), (2, 2, 2)], ids=["8", "2x4", "2x2x2"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_hf_flax_model_trains_like_jax_jit(model: str, mesh_shape: tuple[int, ...]) -> None:
    params, loss, make_batch = MODELS[model]()
    step = _sgd_step(loss)
    rng = np.random.default_rng(0)
    batches = [jax.tree.map(jnp.asarray, make_batch(rng)) for _ in range(2)]
    ours = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=mesh_shape), batch_argnums=(1,))
    reference = jax.jit(step)

    mine, theirs = params, params
    for batch in batches:
        mine, my_loss = ours(mine, batch)
        theirs, their_loss = reference(theirs, batch)
        assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)

    plan = ours.get_execution_plan(params, batches[0])
    assert plan.solver_status in ("optimal", "feasible"), plan.solver_status
    assert_priced_bytes_compiled(plan)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_hf_flax_model_pipelined_equals_the_full_batch_step(model: str) -> None:
    params, loss, make_batch = MODELS[model]()
    step = _sgd_step(loss)
    batch = jax.tree.map(jnp.asarray, make_batch(np.random.default_rng(0)))
    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=2),
        stage_option=autopar.UniformStageOption(num_stages=2),
    )
    ours = autopar.parallelize(step, method=method, batch_argnums=(1,))
    mine, my_loss = ours(params, batch)
    theirs, their_loss = jax.jit(step)(params, batch)
    assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    assert len(ours.get_execution_plan(params, batch).stages) == 2


def test_hf_bert_with_gradient_checkpointing_plans_like_without() -> None:
    """Checkpointing puts optimization barriers in the step; they plan as the identity they are
    (docs/platform.md, "Optimization barriers carry layouts"), so the collectives are the same."""
    batch = jnp.asarray(MODELS["bert"]()[2](np.random.default_rng(0)))
    compiled = {}
    for name in ("bert", "bert-remat"):
        params, loss, _ = MODELS[name]()
        step = _sgd_step(loss)
        method = autopar.ShardParallel(mesh_shape=(2, 4))
        plan = autopar.parallelize(step, method=method, batch_argnums=(1,)).get_execution_plan(params, batch)
        assert not any("optimization_barrier" in r for r in plan.remarks), plan.remarks
        compiled[name] = sorted((c.kind, c.bytes) for c in plan.collectives)
    assert compiled["bert-remat"] == compiled["bert"]


def test_hf_wav2vec2_on_padded_audio_with_a_ctc_loss_pipelined_equals_the_full_batch_step() -> None:
    """Speech recognition as its users train it: padded audio with its attention mask (whose feature mask
    FlaxWav2Vec2 writes with `m.at[jnp.arange(B), lengths - 1].set(1)`) and optax's CTC loss (its scores
    start from constants set per example). Both were refused under micro-batches before."""
    config = hf_configs.wav2vec2(transformers, width=32, conv_width=16, vocab=12, positions=8)
    model = transformers.FlaxWav2Vec2ForCTC(config, seed=0)
    rng = np.random.default_rng(0)
    audio = jnp.asarray(rng.standard_normal((BATCH, 160)), jnp.float32)  # 15 frames
    lengths = jnp.asarray([160, 150, 140, 160, 120, 155, 160, 145])
    mask = (jnp.arange(160)[None] < lengths[:, None]).astype(jnp.int32)
    labels = jnp.asarray(rng.integers(1, 12, (BATCH, 4)), jnp.int32)

    def loss(params, batch):
        audio, mask, labels = batch
        logits = model(audio, attention_mask=mask, params=params, train=False).logits
        frames = model._get_feat_extract_output_lengths(mask.sum(-1))
        padding = (jnp.arange(logits.shape[1])[None] >= frames[:, None]).astype(jnp.float32)
        return optax.ctc_loss(logits, padding, labels, jnp.zeros(labels.shape), blank_id=0).mean()

    step = _sgd_step(loss)
    method = autopar.PipeshardParallel(num_micro_batches=2, layer_option=autopar.AutoLayerOption(layer_num=2))
    mine, my_loss = autopar.parallelize(step, method=method, batch_argnums=(1,))(
        model.params, (audio, mask, labels)
    )
    theirs, their_loss = jax.jit(step)(model.params, (audio, mask, labels))
    assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
