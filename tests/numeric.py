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


def assert_priced_bytes_compiled(plan, rel=0.1) -> None:
    """Per collective kind, the bytes a plan priced (`expected_collectives`) are the bytes XLA compiled,
    within `rel` (XLA merges the gradient all-reduces, so counts differ; bytes do not)."""
    from autopar.runtime.hlo import COLLECTIVE_KINDS

    planned = dict.fromkeys(COLLECTIVE_KINDS, 0)
    compiled = dict(planned)
    for e in plan.expected_collectives:
        planned[e.kind] += e.bytes
    for c in plan.collectives:
        compiled[c.kind] += c.bytes
    for kind in COLLECTIVE_KINDS:
        assert abs(compiled[kind] - planned[kind]) <= rel * planned[kind], (kind, plan.fidelity_table())


def assert_trains_like_jit(ours, step, state, batch, steps=2, rtol=1e-4, atol=1e-5):
    """Runs `steps` training steps of `ours` (a parallelized `step`) and of jax.jit(step) from `state`:
    each loss (the step's second result) within 1e-5 relative, the final state within rtol / atol."""
    import pytest

    mine, theirs = state, state
    for _ in range(steps):
        mine, my_loss = ours(mine, batch)
        theirs, their_loss = jax.jit(step)(theirs, batch)
        assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    assert_trees_close(mine, theirs, rtol=rtol, atol=atol)
