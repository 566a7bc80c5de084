"""`parallelize` plans from shapes and dtypes, never from where the arguments live: every placement of the
same signature shares one plan, and results equal `jax.jit`'s."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax.training import train_state
from jax.sharding import NamedSharding, PartitionSpec

import autopar


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(64)(x))
        x = nn.LayerNorm()(x)
        return nn.Dense(8)(x)


def train_step(state: train_state.TrainState, batch):
    x, y = batch

    def loss_fn(params):
        return jnp.mean((state.apply_fn(params, x) - y) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def make_state(batch: int = 32):
    model = MLP()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, 16)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(1).standard_normal((batch, 8)), jnp.float32)
    params = model.init(jax.random.key(0), x)
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-2))
    return state, (x, y)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def mesh(shape, names):
    devices = np.array(jax.devices()[: int(np.prod(shape))]).reshape(shape)
    return jax.sharding.Mesh(devices, names)


@pytest.mark.parametrize("mesh_shape", [(8,), (2, 4), (2, 2, 2)])
def test_flax_train_state_loop_matches_jit(mesh_shape) -> None:
    # After step 1 the state's step counter and parameters are sharded jax.Arrays: step 2 must reuse the
    # plan (it used to refuse them: "the module already has an sdy.mesh").
    state, batch = make_state()
    f = autopar.parallelize(train_step, method=autopar.ShardParallel(mesh_shape=mesh_shape))
    ours, ref = state, state
    for _ in range(3):
        ours, loss = f(ours, batch)
        ref, ref_loss = jax.jit(train_step)(ref, batch)
        np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    assert_trees_close(ours.params, ref.params)
    # Two signatures, as with jax.jit: the fresh state's step is a weakly typed Python int, later an array.
    assert int(ours.step) == 3 and f.cache_size() == 2


def test_resume_from_arrays_restored_with_other_shardings() -> None:
    state, batch = make_state()
    f = autopar.parallelize(train_step, method=autopar.ShardParallel(mesh_shape=(2, 4)))
    after_one, _ = f(state, batch)
    # "Restored" elsewhere: every leaf on one device, or split over an unrelated mesh where it divides.
    other = mesh((8,), ("data",))

    def restore(x):
        spec = PartitionSpec("data") if x.ndim and x.shape[0] % 8 == 0 else PartitionSpec()
        return jax.device_put(np.asarray(x), NamedSharding(other, spec))

    restored = jax.tree.map(restore, after_one)
    f(after_one, batch)  # plans the signature of a trained state
    resumed, loss = f(restored, batch)
    ref, ref_loss = jax.jit(train_step)(*jax.jit(train_step)(state, batch)[:1], batch)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    assert_trees_close(resumed.params, ref.params)
    assert f.cache_size() == 2  # the fresh state's weakly typed step, then the restored array: no third plan


def test_batch_presharded_by_the_user() -> None:
    state, (x, y) = make_state()
    user = mesh((4, 2), ("a", "b"))
    x = jax.device_put(x, NamedSharding(user, PartitionSpec("a", "b")))
    y = jax.device_put(y, NamedSharding(user, PartitionSpec(None, "b")))
    f = autopar.parallelize(train_step, method=autopar.ShardParallel(mesh_shape=(2, 4)))
    ours, loss = f(state, (x, y))
    ref, ref_loss = jax.jit(train_step)(state, (x, y))
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    assert_trees_close(ours.params, ref.params)


def test_outputs_of_one_plan_feed_another() -> None:
    state, batch = make_state()
    first = autopar.parallelize(train_step, method=autopar.ShardParallel(mesh_shape=(2, 4)))
    second = autopar.parallelize(train_step, method=autopar.DataParallel())
    mid, _ = first(state, batch)
    ours, loss = second(mid, batch)
    ref = jax.jit(train_step)(state, batch)[0]
    ref, ref_loss = jax.jit(train_step)(ref, batch)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    assert_trees_close(ours.params, ref.params)


def test_a_batch_size_that_changes_between_calls() -> None:
    state, batch = make_state(32)
    _, small = make_state(16)
    f = autopar.parallelize(train_step, method=autopar.ShardParallel(mesh_shape=(2, 4)))
    ours, _ = f(state, batch)
    ours, loss = f(ours, small)
    ref, _ = jax.jit(train_step)(state, batch)
    ref, ref_loss = jax.jit(train_step)(ref, small)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    assert_trees_close(ours.params, ref.params)
    assert f.cache_size() == 2


def noisy_step(w, key, x):
    key, sub = jax.random.split(key)
    noise = 0.01 * jax.random.normal(sub, x.shape)
    return w - 0.1 * (x + noise).T @ ((x + noise) @ w), key


def test_a_typed_prng_key_argument_and_result() -> None:
    w, x = jnp.ones((16, 8)), jnp.asarray(np.random.default_rng(2).standard_normal((32, 16)), jnp.float32)
    key = jax.random.key(0)
    f = autopar.parallelize(noisy_step, batch_argnums=(2,))
    for _ in range(2):  # the returned key goes back in
        (w_ours, key_ours), (w_ref, key_ref) = f(w, key, x), jax.jit(noisy_step)(w, key, x)
        np.testing.assert_allclose(np.asarray(w_ours), np.asarray(w_ref), rtol=1e-5, atol=1e-6)
        assert key_ours.dtype == key.dtype
        np.testing.assert_array_equal(jax.random.key_data(key_ours), jax.random.key_data(key_ref))
        w, key = w_ours, key_ours


def test_jax_debug_print_inside_the_step(capfd) -> None:
    def step(w, x):
        jax.debug.print("loss is {l}", l=jnp.sum(x @ w))
        return w - 0.01 * x.T @ (x @ w)

    w, x = jnp.ones((16, 8)), jnp.ones((32, 16))
    f = autopar.parallelize(step)
    ours = jax.block_until_ready(f(w, x))  # the callback runs with the step, asynchronously
    jax.effects_barrier()
    out = capfd.readouterr().out
    np.testing.assert_allclose(np.asarray(ours), np.asarray(jax.jit(step)(w, x)), rtol=1e-6)
    assert out.count("loss is 4096.0") == 1, out
