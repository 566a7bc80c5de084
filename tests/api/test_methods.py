"""DataParallel, Zero2Parallel and Zero3Parallel mean what their names say, on an MLP and a transformer
trained with Adam: where parameters and optimizer state live, which collectives the step compiles to, and
that they leave each step in the layout they came in (no reshard between steps)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import autopar
from cases import CASES
from numeric import assert_priced_bytes_compiled

LEARNING_RATE = 3e-3  # the largest of the two cases' (the transformer's AdamW; the MLP's Adam: 1e-3)


def is_state(path: str) -> bool:
    return "opt_state" in path and ("mu" in path or "nu" in path)


def is_parameter(path: str) -> bool:
    return path.startswith("params") or path.startswith("state.params")


def run(case: str, method):
    step, args, batch_argnums = CASES[case]()
    f = autopar.parallelize(step, method=method, batch_argnums=batch_argnums)
    ours = f(*args)
    ours = f(*ours[: len(args) - len(batch_argnums)], *args[len(args) - len(batch_argnums) :])
    ref = jax.jit(step)(*args)
    ref = jax.jit(step)(*ref[: len(args) - len(batch_argnums)], *args[len(args) - len(batch_argnums) :])
    *state, loss = ours
    *ref_state, ref_loss = ref
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
        # Adam moves every element by about its learning rate whatever the gradient's size: an element
        # whose gradient is zero but for rounding, summed in another order, may move the other way.
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2 * LEARNING_RATE)
    return f.get_execution_plan(*args)


def specs(plan) -> tuple[dict[str, P], dict[str, P]]:
    return plan.input_specs(), {t.path: t.spec for t in plan.outputs}


def assert_state_keeps_its_layout(plan) -> None:
    """Each parameter / optimizer-state leaf leaves in the layout it entered: outputs in input order."""
    ins = [t for t in plan.inputs if t.role == "parameter"]
    outs = plan.outputs[: len(ins)]
    for i, o in zip(ins, outs, strict=True):
        assert (i.shape, i.spec) == (o.shape, o.spec), (i.path, i.spec, o.path, o.spec)


@pytest.mark.parametrize("case", sorted(CASES))
def test_data_parallel_replicates_state_and_only_all_reduces(case) -> None:
    plan = run(case, autopar.DataParallel())
    ins, _ = specs(plan)
    assert all(spec == P() for path, spec in ins.items() if is_parameter(path) or is_state(path)), ins
    counts = plan.collective_counts()
    assert counts["all-reduce"] >= 1 and counts["all-reduce"] == sum(counts.values()), counts
    assert_state_keeps_its_layout(plan)


@pytest.mark.parametrize("case", sorted(CASES))
def test_zero2_shards_optimizer_state_and_reduces_gradients_as_xla_compiles(case) -> None:
    plan = run(case, autopar.Zero2Parallel())
    ins, _ = specs(plan)
    assert all(ins[p] == P() for p in ins if is_parameter(p)), ins
    big_state = [
        p for p in ins if is_state(p) and np.prod(next(t.shape for t in plan.inputs if t.path == p)) >= 64
    ]
    assert big_state and all(ins[p] != P() for p in big_state), ins
    # XLA on CPU runs a reduce-scatter as an all-reduce and a slice: the plan reduces the gradients with
    # the all-reduce, says so, and gathers the updated parameters; nothing else moves.
    assert plan.expected_counts()["reduce-scatter"] == 0, plan.expected_collectives
    assert any(r.startswith("prefer_reduce_scatter: XLA on CPU") for r in plan.remarks), plan.remarks
    counts = plan.collective_counts()
    assert counts["all-gather"] >= 1 and counts["all-to-all"] == counts["collective-permute"] == 0, counts
    assert_priced_bytes_compiled(plan)
    assert_state_keeps_its_layout(plan)


@pytest.mark.parametrize("case", sorted(CASES))
def test_zero3_shards_parameters_and_gathers_them_for_use(case) -> None:
    plan = run(case, autopar.Zero3Parallel())
    ins, _ = specs(plan)
    big = [t.path for t in plan.inputs if is_parameter(t.path) and np.prod(t.shape) >= 64 * 8]
    assert big and all(ins[p] != P() for p in big), ins
    counts = plan.collective_counts()
    assert counts["all-gather"] >= 1 and counts["all-to-all"] == counts["collective-permute"] == 0, counts
    assert_priced_bytes_compiled(plan)
    assert_state_keeps_its_layout(plan)


@pytest.mark.parametrize("case", sorted(CASES))
def test_zero3_on_two_axes_compiles_the_gathers_it_prices(case) -> None:
    # On 2x4 some parameters are split over two dims; XLA gathers them one dim at a time, and the plan
    # prices each of those gathers with its own bytes (resharding.gather_steps).
    step, args, batch_argnums = CASES[case]()
    method = autopar.Zero3Parallel(mesh_shape=(2, 4))
    plan = autopar.parallelize(step, method=method, batch_argnums=batch_argnums).get_execution_plan(*args)
    split_twice = [t for t in plan.inputs if t.role == "parameter" and sum(d is not None for d in t.spec) > 1]
    assert split_twice, plan.input_specs()
    assert_priced_bytes_compiled(plan, rel=0.002)


def test_shard_parallel_state_keeps_its_layout_too() -> None:
    assert_state_keeps_its_layout(run("transformer", autopar.ShardParallel(mesh_shape=(2, 4))))


def deep_mlp_step(ws, x, y):
    def loss(ws, x, y):
        for i, w in enumerate(ws):
            x = x @ w
            if i < len(ws) - 1:
                x = jax.nn.relu(x)
        return jnp.mean((x - y) ** 2)

    value, grads = jax.value_and_grad(loss)(ws, x, y)
    return [w - 0.1 * g for w, g in zip(ws, grads, strict=True)], value


@pytest.mark.parametrize(
    "batch,hidden,expect",
    [(256, 32, "data parallel"), (32, 256, "megatron")],
)
def test_shard_parallel_never_computes_a_dot_replicated_by_default(batch, hidden, expect) -> None:
    """Alpa's and XLA's default (allow_recompute_heavy_op=False): every device shares the dots, whatever
    the shapes; with allow_recompute_heavy_op=True the cost model may replicate a small model's work."""
    rng = np.random.default_rng(0)
    ws = [jnp.asarray(rng.standard_normal((hidden, hidden)) * 0.1, jnp.float32) for _ in range(6)]
    x = jnp.asarray(rng.standard_normal((batch, hidden)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((batch, hidden)), jnp.float32)
    f = autopar.parallelize(deep_mlp_step, devices=jax.devices()[:4], batch_argnums=(1, 2))
    plan = f.get_execution_plan(ws, x, y)
    spec = plan.input_specs()
    if expect == "data parallel":  # the batch is split, weights replicated, gradients all-reduced
        assert spec["x"] == P("x") and all(spec[f"ws[{i}]"] == P() for i in range(6)), spec
        assert plan.collective_counts()["all-reduce"] >= 1
    else:  # Megatron's pairs: a column-split dot feeds a row-split one
        assert spec["x"] == P(), spec
        assert (spec["ws[0]"], spec["ws[1]"]) == (P(None, "x"), P("x")), spec
    new_ws, loss = f(ws, x, y)
    ref_ws, ref_loss = jax.jit(deep_mlp_step)(ws, x, y)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    for a, b in zip(new_ws, ref_ws, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_auto_sharding_option_none_is_the_default_as_in_alpa_and_a_wrong_type_is_named():
    for method in (
        autopar.ShardParallel,
        autopar.DataParallel,
        autopar.Zero3Parallel,
        autopar.PipeshardParallel,
    ):
        assert method(auto_sharding_option=None).auto_sharding_option == method().auto_sharding_option
    with pytest.raises(
        TypeError, match="auto_sharding_option must be an autopar.AutoShardingOption, got dict"
    ):
        autopar.ShardParallel(auto_sharding_option={"zero_stage": 3})
