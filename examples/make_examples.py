"""Regenerates the bundled example modules (deterministic: run it and `git diff` shows nothing).

    python examples/make_examples.py

mlp_train_step.mlir: one SGD step of a 4-layer MLP (batch 256, hidden 1024) with its loss, lowered from
JAX with abstract arguments. It is what `parallelize` would hand to the passes, and what the README's
first command runs through autopar-opt.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

HERE = Path(__file__).resolve().parent
BATCH, HIDDEN, LAYERS = 256, 1024, 4


def mlp_loss(params, batch):
    x, y = batch
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return jnp.mean((x - y) ** 2)


def train_step(params, batch):
    loss, grads = jax.value_and_grad(mlp_loss)(params, batch)
    new_params = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
    return new_params, loss


def abstract_args():
    f32 = jnp.float32
    params = [
        (jax.ShapeDtypeStruct((HIDDEN, HIDDEN), f32), jax.ShapeDtypeStruct((HIDDEN,), f32))
        for _ in range(LAYERS)
    ]
    batch = (jax.ShapeDtypeStruct((BATCH, HIDDEN), f32), jax.ShapeDtypeStruct((BATCH, HIDDEN), f32))
    return params, batch


def main() -> None:
    lowered = jax.jit(train_step).lower(*abstract_args())
    # Keep JAX's name-stack locations (later passes pair forward and backward ops with them), but name
    # source files relative to this folder so the file does not depend on where the repo lives.
    text = lowered.as_text(debug_info=True).replace(f'"{HERE}/', '"')
    (HERE / "mlp_train_step.mlir").write_text(text)
    print(f"wrote {HERE / 'mlp_train_step.mlir'} ({text.count(chr(10))} lines)")


if __name__ == "__main__":
    main()
