"""Conditionals in training steps nobody here wrote: optax.MultiSteps (gradient accumulation) and
optax.apply_if_finite return every parameter and optimizer state from a `lax.cond`. autopar-flatten-
conditionals runs their light branches side by side, so the plan keeps those values split instead of
gathering them: it trains like jax.jit over steps that take each branch, remarks nothing about the
conditional, and XLA compiles what it prices. A conditional with a heavy branch stays whole, remarked."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autopar
from numeric import assert_priced_bytes_compiled, assert_trains_like_jit, normal

WIDTH, BATCH = 64, 256


def _params():
    return {"w1": normal((WIDTH, WIDTH), seed=0) * 0.2, "w2": normal((WIDTH, WIDTH), seed=1) * 0.2}


def _loss(p, x, y):
    return jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2)


def _step(optimizer):
    def step(state, batch):
        params, opt_state = state
        value, grads = jax.value_and_grad(_loss)(params, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    return step


OPTIMIZERS = {
    "multi_steps": lambda: optax.MultiSteps(optax.adam(1e-2), every_k_schedule=2),
    "apply_if_finite": lambda: optax.apply_if_finite(optax.adam(1e-2), max_consecutive_errors=3),
}


@pytest.mark.parametrize("mesh_shape", [(8,), (2, 4), (2, 2, 2)], ids=["8", "2x4", "2x2x2"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optax_wrappers_train_like_jax_jit_without_gathering_the_state(name, mesh_shape) -> None:
    optimizer = OPTIMIZERS[name]()
    params = _params()
    state = (params, optimizer.init(params))
    batch = (normal((BATCH, WIDTH), seed=2), normal((BATCH, WIDTH), seed=3))
    step = _step(optimizer)
    assert "stablehlo.case" in jax.jit(step).lower(state, batch).as_text()
    ours = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=mesh_shape))
    # MultiSteps accumulates, applies, accumulates: both branches run.
    assert_trains_like_jit(ours, step, state, batch, steps=3)
    plan = ours.get_execution_plan(state, batch)
    assert "stablehlo.case" not in ours.lower(state, batch).as_text()
    assert plan.remarks == (), plan.remarks
    assert_priced_bytes_compiled(plan)
    # Only the gradient reduction: nothing is gathered for the conditional (it gathered every state).
    assert {c.kind for c in plan.collectives} <= {"all-reduce"}, plan.fidelity_table()


def test_a_conditional_with_a_heavy_branch_stays_whole_and_the_plan_says_so() -> None:
    params = _params()

    def step(p, batch):
        x, y = batch
        # A dot in the taken-or-not branch: running it on every step would cost its work.
        h = jax.lax.cond(jnp.sum(x) > 0, lambda: x @ p["w1"], lambda: x)
        return _loss(p, h, y)

    batch = (normal((BATCH, WIDTH), seed=2), normal((BATCH, WIDTH), seed=3))
    ours = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=(8,)))
    np.testing.assert_allclose(float(ours(params, batch)), float(jax.jit(step)(params, batch)), rtol=1e-5)
    (remark,) = ours.get_execution_plan(params, batch).remarks
    assert remark.startswith("stablehlo.case at ") and "the conditional runs whole" in remark, remark
