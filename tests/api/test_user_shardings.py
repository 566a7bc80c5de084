"""Steps that fix some layouts themselves (api/user_shardings.py). Sharding constraints written for the
user's own mesh (`jax.lax.with_sharding_constraint`, flax's `nn.with_logical_constraint`) used to make
parallelize refuse the whole step ("the module already has an sdy.mesh"); they are dropped, the plan
chooses every layout on its own mesh, a remark names where they were, and the step trains like jax.jit.
A `jax.shard_map` is refused with its line."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import autopar
from autopar.api.user_shardings import ShardMapError
from numeric import assert_priced_bytes_compiled, assert_trains_like_jit, assert_trees_close, normal

MESHES = [(8,), (2, 4), (2, 2, 2)]
WIDTH, BATCH = 128, 64
USER_MESH = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _mesh_id(shape):
    return "x".join(map(str, shape))


def _params():
    return {"w1": normal((WIDTH, 2 * WIDTH), seed=0) * 0.1, "w2": normal((2 * WIDTH, WIDTH), seed=1) * 0.1}


def _batch():
    return normal((BATCH, WIDTH), seed=2), normal((BATCH, WIDTH), seed=3)


def constrained_step(params, batch):
    x, y = batch

    def loss(p):
        h = jnp.tanh(x @ p["w1"])
        h = jax.lax.with_sharding_constraint(h, NamedSharding(USER_MESH, P("data", None)))
        return jnp.mean((h @ p["w2"] - y) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value


CONSTRAINT_LINE = constrained_step.__code__.co_firstlineno + 5


@pytest.mark.parametrize("mesh_shape", MESHES, ids=_mesh_id)
def test_a_sharding_constraint_on_the_users_mesh_is_dropped_and_remarked(mesh_shape):
    f = autopar.parallelize(constrained_step, method=autopar.ShardParallel(mesh_shape=mesh_shape))
    assert_trains_like_jit(f, constrained_step, _params(), _batch())
    plan = f.get_execution_plan(_params(), _batch())
    (remark,) = [r for r in plan.remarks if "sharding constraint" in r]
    assert remark.startswith(f"the step's sharding constraints at {__file__}:{CONSTRAINT_LINE}:")
    assert "data" not in str(plan)  # nothing of the user's mesh is left in the plan
    assert_priced_bytes_compiled(plan)


def test_a_debug_print_beside_a_sharding_constraint_still_prints_once(capfd):
    # Dropping the step's layouts once dropped the callback's placement too, and XLA's partitioner then
    # stopped on "Side-effect HLO must have sharding".
    def step(params, batch):
        new, value = constrained_step(params, batch)
        jax.debug.print("loss is {v}", v=value)
        return new, value

    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=(2, 4)))
    ours = jax.block_until_ready(f(_params(), _batch()))
    jax.effects_barrier()
    printed = capfd.readouterr().out
    ref = jax.jit(step)(_params(), _batch())
    jax.effects_barrier()
    assert jnp.allclose(ours[1], ref[1]) and printed.count("loss is ") == 1, printed
    assert any("sharding constraint" in r for r in f.get_execution_plan(_params(), _batch()).remarks)


def test_a_pipelined_step_with_a_sharding_constraint_trains_like_jit():
    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=2),
        stage_option=autopar.UniformStageOption(num_stages=2),
    )
    f = autopar.parallelize(constrained_step, method=method)
    assert_trains_like_jit(f, constrained_step, _params(), _batch())
    assert any("sharding constraint" in r for r in f.get_execution_plan(_params(), _batch()).remarks)


class _LogicalMLP(nn.Module):
    """flax's logical partitioning: names of dims, mapped to mesh axes by the rules in context."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(2 * WIDTH, use_bias=False)(x)
        h = nn.with_logical_constraint(nn.gelu(h), ("batch", "mlp"))
        return nn.Dense(WIDTH, use_bias=False)(h)


@pytest.mark.parametrize("mesh_shape", [(2, 4)], ids=_mesh_id)
def test_flax_logical_constraints_under_axis_rules_train_like_jit(mesh_shape):
    model = _LogicalMLP()
    x, y = _batch()
    variables = model.init(jax.random.key(0), x)

    def step(variables, batch):
        x, y = batch
        value, grads = jax.value_and_grad(lambda v: jnp.mean((model.apply(v, x) - y) ** 2))(variables)
        return jax.tree.map(lambda p, g: p - 0.1 * g, variables, grads), value

    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=mesh_shape))
    with jax.set_mesh(USER_MESH), nn.logical_axis_rules([("batch", "data"), ("mlp", None)]):
        assert_trains_like_jit(f, step, variables, (x, y))
        plan = f.get_execution_plan(variables, (x, y))
    assert any("sharding constraint" in r for r in plan.remarks)


def test_shard_map_is_refused_at_its_line():
    def step(params, batch):
        x, y = batch
        total = jax.shard_map(
            lambda xb: jax.lax.psum(jnp.sum(xb**2), "data"), mesh=USER_MESH, in_specs=P("data"), out_specs=P()
        )(x)
        return params, total

    line = step.__code__.co_firstlineno + 2
    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=(8,)))
    with pytest.raises(ShardMapError, match=rf"step calls jax.shard_map at .*test_user_shardings.py:{line}:"):
        f(_params(), _batch())


def test_a_step_without_constraints_has_no_such_remark():
    def plain_step(params, batch):
        x, y = batch
        value, grads = jax.value_and_grad(lambda p: jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2))(
            params
        )
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value

    plan = autopar.parallelize(plain_step).get_execution_plan(_params(), _batch())
    assert not any("sharding constraint" in r or "own shardings" in r for r in plan.remarks)


def test_jax_randoms_own_constraint_on_a_mesh_without_axes_is_not_remarked():
    """jax.random.permutation constrains its key on JAX's empty mesh (`<@empty_mesh, [{}]>`), which fixes
    no layout of the user's: the plan runs without a remark about constraints the user never wrote."""

    def shuffled_step(params, batch, key):
        x, y = batch
        order = jax.random.permutation(key, BATCH)  # a minibatch order drawn in the step (flax's PPO)
        x, y = x[order], y[order]
        value, grads = jax.value_and_grad(lambda p: jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2))(
            params
        )
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value

    key = jax.random.key(0)
    assert "@empty_mesh, [{}]" in jax.jit(shuffled_step).lower(_params(), _batch(), key).as_text()
    f = autopar.parallelize(shuffled_step)
    plan = f.get_execution_plan(_params(), _batch(), key)
    assert not any("sharding constraint" in r or "own shardings" in r for r in plan.remarks), plan.remarks
    assert_trees_close(f(_params(), _batch(), key), jax.jit(shuffled_step)(_params(), _batch(), key))
