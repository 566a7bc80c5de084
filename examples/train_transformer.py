"""A Flax transformer language model trained for a few steps with optax, through `autopar.parallelize`.

    python examples/train_transformer.py [--steps 5] [--mesh 2x4]

On a machine without accelerators this runs on 8 virtual CPU devices. The plan autopar chose is summarised
first (`print(step.get_execution_plan(...))` shows all of it: every argument's PartitionSpec and every
collective XLA compiled); then each step prints autopar's loss beside the loss of the same step under
`jax.jit`: they agree to float32 rounding.
"""

from __future__ import annotations

import argparse
import os

# Virtual devices must be requested before jax is imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import linen as nn  # noqa: E402
from flax.training import train_state  # noqa: E402

import autopar  # noqa: E402

VOCAB, SEQ, WIDTH, HEADS, LAYERS, BATCH = 512, 64, 128, 4, 2, 16


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
        # No biases in attention: a key bias gets a gradient that is zero but for rounding, which Adam would
        # blow up to a full-size update of arbitrary sign.
        x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS, use_bias=False)(nn.LayerNorm()(x), mask=mask)
        h = nn.gelu(nn.Dense(4 * WIDTH)(nn.LayerNorm()(x)))
        return x + nn.Dense(WIDTH)(h)


class LanguageModel(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(VOCAB, WIDTH)(tokens) + self.param("pos", nn.initializers.normal(0.02), (SEQ, WIDTH))
        for _ in range(LAYERS):
            x = Block()(x)
        return nn.Dense(VOCAB)(nn.LayerNorm()(x))


def train_step(state: train_state.TrainState, tokens: jax.Array):
    def loss_fn(params):
        logits = state.apply_fn(params, tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--mesh", default="2x4", help="logical mesh over the devices, e.g. 8, 2x4, 2x2x2")
    args = parser.parse_args()
    mesh_shape = tuple(int(s) for s in args.mesh.split("x"))

    rng = np.random.default_rng(0)
    data = jnp.asarray(rng.integers(0, VOCAB, (args.steps, BATCH, SEQ + 1)), jnp.int32)
    model = LanguageModel()
    params = model.init(jax.random.key(0), data[0, :, :-1])
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adamw(3e-3))

    step = autopar.parallelize(train_step, method=autopar.ShardParallel(mesh_shape=mesh_shape))
    reference = jax.jit(train_step)
    plan = step.get_execution_plan(state, data[0])
    print(f"{plan.method} on mesh {plan.mesh_shape}, solver {plan.solver_status}")
    print(f"collectives in the compiled step: {plan.collective_counts()}")
    for path, spec in plan.parameter_specs().items():
        if path.startswith("state.params") and "Embed_0" in path:
            print(f"{path}: {spec}")
    ours, theirs = state, state
    for i in range(args.steps):
        ours, loss = step(ours, data[i])
        theirs, reference_loss = reference(theirs, data[i])
        print(f"step {i}: loss {float(loss):.6f} (jax.jit: {float(reference_loss):.6f})")


if __name__ == "__main__":
    main()
