"""A Wide-ResNet (bottleneck blocks) in plain JAX, with Alpa's Wide-ResNet benchmark suite shapes.

(layers, channels, width): 50 layers = stages of [3, 4, 6, 3] bottleneck blocks, 101 = [3, 4, 23, 3];
stage i has `channels * 2**i` filters, each block's 3x3 convolution widens to `width` x filters, the
block outputs 4x filters (Alpa's alpa/model/wide_resnet.py). 224x224 images, 1024 classes. Normalisation
is left out (it adds no parameters of note and the planner only needs the convolutions). Layers differ
a lot (early stages: large activations, late stages: large weights), the case for unequal stages.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

IMAGE, CLASSES, GLOBAL_BATCH = 224, 1024, 1536
STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


@dataclasses.dataclass(frozen=True)
class WResNetConfig:
    name: str
    layers: int
    channels: int
    width: int
    batch: int = 8
    image: int = IMAGE
    classes: int = CLASSES


# Alpa's suite_wresnet.py: (layers, channels, width).
WRESNET_SUITE = {
    "250M": WResNetConfig("250M", 50, 160, 2),
    "500M": WResNetConfig("500M", 50, 224, 2),
    "1B": WResNetConfig("1B", 50, 320, 2),
    "2B": WResNetConfig("2B", 50, 448, 2),
    "4B": WResNetConfig("4B", 50, 640, 2),
    "6.8B": WResNetConfig("6.8B", 50, 320, 16),
    "13B": WResNetConfig("13B", 101, 320, 16),
}


def param_shapes(cfg: WResNetConfig) -> dict[str, Any]:
    """HWIO kernels."""
    c = cfg.channels
    blocks, in_ch = [], c
    for stage, count in enumerate(STAGE_BLOCKS[cfg.layers]):
        f = c * 2**stage
        for k in range(count):
            mid = f * cfg.width
            block = {"c1": (1, 1, in_ch, f), "c2": (3, 3, f, mid), "c3": (1, 1, mid, 4 * f)}
            if k == 0:
                block["proj"] = (1, 1, in_ch, 4 * f)
            blocks.append(block)
            in_ch = 4 * f
    return {"stem": (7, 7, 3, c), "blocks": blocks, "head": (in_ch, cfg.classes)}


def num_params(cfg: WResNetConfig) -> int:
    leaves = jax.tree.leaves(param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple))
    total = 0
    for s in leaves:
        n = 1
        for d in s:
            n *= d
        total += n
    return total


def _conv(x, w, stride=1):
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def make_train_step(cfg: WResNetConfig, learning_rate: float = 1e-4):
    counts = STAGE_BLOCKS[cfg.layers]
    strides = [2 if (s > 0 and k == 0) else 1 for s, n in enumerate(counts) for k in range(n)]

    def loss_fn(params, images, labels):
        x = jax.nn.relu(_conv(images, params["stem"], 2))
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
        for p, stride in zip(params["blocks"], strides, strict=True):
            y = jax.nn.relu(_conv(x, p["c1"]))
            y = jax.nn.relu(_conv(y, p["c2"], stride))
            y = _conv(y, p["c3"])
            shortcut = _conv(x, p["proj"], stride) if "proj" in p else x
            x = jax.nn.relu(y + shortcut)
        logits = jnp.mean(x, axis=(1, 2)) @ params["head"]
        onehot = jax.nn.one_hot(labels, cfg.classes, dtype=logits.dtype)
        return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * onehot, -1))

    def train_step(params, images, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
        return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), loss

    return train_step


def abstract_args(cfg: WResNetConfig, dtype=jnp.float16) -> tuple[Any, Any, Any]:
    params = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s, dtype), param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple)
    )
    images = jax.ShapeDtypeStruct((cfg.batch, cfg.image, cfg.image, 3), dtype)
    return params, images, jax.ShapeDtypeStruct((cfg.batch,), jnp.int32)
