"""optax's optimizers whose updates are more than elementwise, each training a small flax MLP through
`autopar.parallelize` exactly as `jax.jit` does: Adafactor (factored second moments: row and column means
of each squared gradient), LAMB (a trust ratio from each layer's parameter and update norms), Muon (Newton-
Schulz iterations: matmuls of each update with itself), schedule-free AdamW (an average of iterates kept
beside the parameters) and L-BFGS (a line search that calls the loss in a loop on data). Under ZeRO-2
and ZeRO-3 their reductions run over split optimizer state, on a 3-axis mesh over a plan the solver picked;
on one mesh XLA compiles the collectives the plan priced."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

import autopar
from numeric import assert_priced_bytes_compiled, assert_trees_close

RTOL, ATOL = 2e-4, 2e-5  # the second step's update turns rounding into sign flips of tiny gradients


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.LayerNorm()(nn.gelu(nn.Dense(64)(x)))
        return nn.Dense(8)(nn.gelu(nn.Dense(64)(x)))


def step(state, batch):
    def loss(params):
        logits = state.apply_fn(params, batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    value, grads = jax.value_and_grad(loss)(state.params)
    return state.apply_gradients(grads=grads), value


OPTIMIZERS = {
    "adafactor": lambda: optax.adafactor(1e-3),
    "lamb": lambda: optax.lamb(1e-3),
    "muon": lambda: optax.contrib.muon(1e-3),
    "schedule_free": lambda: optax.contrib.schedule_free_adamw(1e-3),
}
METHODS = {
    "zero2": autopar.Zero2Parallel(),
    "zero3": autopar.Zero3Parallel(),
    "2x2x2": autopar.ShardParallel(mesh_shape=(2, 2, 2)),
}


def _batch():
    rng = np.random.default_rng(0)
    return {
        "x": jnp.asarray(rng.standard_normal((16, 32), dtype=np.float32)),
        "y": jnp.asarray(rng.integers(0, 8, 16)),
    }


# Each optimizer on the method whose split its update reduces over (one case each keeps the suite short):
# Adafactor's row and column means and LAMB's norms over ZeRO-3's and ZeRO-2's split state, Muon's
# matmuls of each update with itself over a 3-axis plan, schedule-free's averaged iterate under ZeRO-3.
CASES = [("adafactor", "zero3"), ("lamb", "zero2"), ("muon", "2x2x2"), ("schedule_free", "zero3")]


@pytest.mark.parametrize("optimizer,method", CASES, ids=[f"{o}-{m}" for o, m in CASES])
def test_optimizer_trains_like_jit_and_compiles_what_it_prices(optimizer, method):
    batch = _batch()
    model = MLP()
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(jax.random.key(0), batch["x"]), tx=OPTIMIZERS[optimizer]()
    )
    ours = autopar.parallelize(step, method=METHODS[method])
    mine, theirs = state, state
    for _ in range(2):
        mine, my_loss = ours(mine, batch)
        theirs, their_loss = jax.jit(step)(theirs, batch)
        assert_trees_close(my_loss, their_loss, rtol=1e-5, atol=0)
    assert_trees_close(mine, theirs, rtol=RTOL, atol=ATOL)
    assert_priced_bytes_compiled(ours.get_execution_plan(state, batch))


@pytest.mark.parametrize("optimizer", ["adafactor", "muon"])
def test_optimizer_trains_like_jit_pipelined(optimizer):
    batch = _batch()
    model = MLP()
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(jax.random.key(0), batch["x"]), tx=OPTIMIZERS[optimizer]()
    )
    method = autopar.PipeshardParallel(num_micro_batches=2, layer_option=autopar.AutoLayerOption(layer_num=2))
    mine, my_loss = autopar.parallelize(step, method=method)(state, batch)
    theirs, their_loss = jax.jit(step)(state, batch)
    assert_trees_close((mine, my_loss), (theirs, their_loss), rtol=RTOL, atol=ATOL)


def test_lbfgs_with_its_line_search_trains_like_jit_under_zero3():
    """L-BFGS calls the loss again inside its zoom line search (a while loop over trial steps, `value_fn`)
    and keeps a history of past steps and gradients: the data-dependent loop stays one loop, run whole on
    every device, and the plan says where it is; the history is split under ZeRO-3."""
    batch = _batch()
    model = MLP()
    params = model.init(jax.random.key(0), batch["x"])
    optimizer = optax.lbfgs()

    def lbfgs_step(params, opt_state, batch):
        def loss(p):
            logits = model.apply(p, batch["x"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(
            grads, opt_state, params, value=value, grad=grads, value_fn=loss
        )
        return optax.apply_updates(params, updates), opt_state, value

    ours = autopar.parallelize(lbfgs_step, method=autopar.Zero3Parallel(), batch_argnums=(2,))
    mine = theirs = (params, optimizer.init(params))
    for _ in range(3):  # the first step has no history; the later ones use it
        *mine, my_loss = ours(*mine, batch)
        *theirs, their_loss = jax.jit(lbfgs_step)(*theirs, batch)
        assert_trees_close(my_loss, their_loss, rtol=1e-5, atol=0)
    assert_trees_close(mine, theirs, rtol=RTOL, atol=ATOL)
    args = (params, optimizer.init(params), batch)
    assert ours.lower(*args).as_text().count("stablehlo.while(") == 1
    plan = ours.get_execution_plan(*args)
    # The remark names the step's line that calls the optimizer (JAX's user frame), not optax's loop.
    loops = [r for r in plan.remarks if r.startswith("stablehlo.while at ")]
    assert len(loops) == 1 and "test_optax_optimizers.py" in loops[0], plan.remarks
    assert "the loop runs whole on every device" in loops[0]
    history = [p.spec for p in plan.inputs if ".diff_params_memory[" in p.path]
    assert history and all(spec != jax.sharding.PartitionSpec() for spec in history), history
