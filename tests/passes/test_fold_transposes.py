"""autopar-fold-transposes in the pipeline: a data-parallel step's weight gradients reach XLA as the dot
computes them, so the compiled program moves no weight-gradient-shaped buffer, where jax.jit's does."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import re

import jax
import jax.numpy as jnp
import numpy as np

import autopar
from cases import relu_mlp_sgd_step

SHAPES = ((32, 48), (48, 64), (64, 16))


def _weight_moves(hlo: str) -> int:
    """Transposes and copies of a weight's shape anywhere in a compiled module (fusions included)."""
    shapes = "|".join(f"{a},{b}" for a, b in SHAPES)
    return len(re.findall(rf"= f32\[(?:{shapes})\]\{{[01,]+\}} (?:transpose|copy)\(", hlo))


def test_data_parallel_weight_gradients_are_not_transposed_and_match_jit():
    rng = np.random.default_rng(0)
    params = [jnp.asarray(rng.standard_normal(s) / 8, jnp.float32) for s in SHAPES]
    x = jnp.asarray(rng.standard_normal((64, 32)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((64, 16)), jnp.float32)
    f = autopar.parallelize(relu_mlp_sgd_step, method=autopar.DataParallel(), batch_argnums=(1, 2))
    ours = f.lower(params, x, y).compile().as_text()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("x",))
    replicated, split = jax.NamedSharding(mesh, jax.P()), jax.NamedSharding(mesh, jax.P("x"))
    jitted = jax.jit(relu_mlp_sgd_step, in_shardings=([replicated] * len(SHAPES), split, split))
    # The mechanism the pass works around: XLA cannot fold the transpose JAX's autodiff writes once the
    # partitioner's all-reduce stands between it and the dot, and copies every weight gradient.
    assert _weight_moves(jitted.lower(params, x, y).compile().as_text()) >= len(SHAPES)
    assert _weight_moves(ours) == 0
    counts = f.get_execution_plan(params, x, y).collective_counts()
    assert {kind: n for kind, n in counts.items() if n} == {"all-reduce": 1}
    got, want = f(params, x, y), jax.jit(relu_mlp_sgd_step)(params, x, y)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
