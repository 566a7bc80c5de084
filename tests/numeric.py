"""Test data and comparisons shared by the suites that check plans numerically against jax.jit."""

import jax
import numpy as np

_RNG = np.random.default_rng(0)


def normal(shape, seed=None) -> np.ndarray:
    """Test data drawn on the host: jax.random would compile a program per shape (seconds in total)."""
    rng = _RNG if seed is None else np.random.default_rng(seed)
    return rng.standard_normal(shape, dtype=np.float32)


def assert_trees_close(a, b, rtol=2e-5, atol=2e-6) -> None:
    jax.tree.map(
        lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol), a, b
    )
