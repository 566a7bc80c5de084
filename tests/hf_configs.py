"""Tiny configs of HF transformers' Flax models shared by the suites (random init; nothing downloads)."""

from typing import Any


def wav2vec2(transformers: Any, width: int, conv_width: int, vocab: int, positions: int) -> Any:
    """A FlaxWav2Vec2ForCTC config of two layers of `width` (4 heads, 2x wide MLP), two feature convolutions
    of `conv_width` channels (strides 5 and 2), and a positional convolution over `positions` frames in 4
    groups."""
    return transformers.Wav2Vec2Config(
        vocab_size=vocab,
        hidden_size=width,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * width,
        conv_dim=(conv_width, conv_width),
        conv_stride=(5, 2),
        conv_kernel=(10, 3),
        num_conv_pos_embeddings=positions,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=True,  # the only layout HF's Flax port implements
        feat_extract_norm="layer",
    )
