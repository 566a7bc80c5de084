"""`autopar.parallelize(..., method=autopar.PipeshardParallel(...))` end to end on 8 virtual CPU devices:
planning with abstract arguments, the execution plan, and the sequential executor (stages sharded by
autopar-intra-op on their submeshes, B micro-batches accumulated) against the unsharded full-batch step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from benchmarks.models.small import tied_adam_step

import autopar
from autopar.api.pipeshard import PipeshardExecutionPlan
from autopar.errors import ArgumentError
from autopar.ir import attrs
from autopar.ir.stages import find_function
from autopar.runtime import shardings as sh
from autopar.runtime.remote_array import RemoteArray

WIDTH, BATCH, LAYERS = 16, 32, 4
OPTIMIZER = optax.adam(1e-2)


def mlp_loss(params, x, y, marked=False):
    for i, w in enumerate(params):
        x = jnp.tanh(x @ w)
        if marked and i < len(params) - 1:
            x = autopar.mark_pipeline_boundary(x)
    return jnp.mean((x - y) ** 2)


def mlp_outputs(params, x):
    for w in params:
        x = jnp.tanh(x @ w)
    return x


def sgd_step(params, batch):
    x, y = batch
    loss, grads = jax.value_and_grad(mlp_loss)(params, x, y)
    return [p - 0.5 * g for p, g in zip(params, grads, strict=True)], loss


def marked_sgd_step(params, batch):
    x, y = batch
    loss, grads = jax.value_and_grad(lambda p: mlp_loss(p, x, y, marked=True))(params)
    return [p - 0.5 * g for p, g in zip(params, grads, strict=True)], loss


def adam_step(params, opt_state, batch):
    x, y = batch
    loss, grads = jax.value_and_grad(mlp_loss)(params, x, y)
    updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    params = [jnp.asarray(rng.standard_normal((WIDTH, WIDTH)) * 0.4, jnp.float32) for _ in range(LAYERS)]
    x = jnp.asarray(rng.standard_normal((BATCH, WIDTH)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((BATCH, WIDTH)), jnp.float32)
    return params, (x, y)


def assert_trees_close(got, want, rtol=2e-5, atol=2e-6):
    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for a, b in zip(got_leaves, want_leaves, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def test_two_stages_four_micro_batches_match_the_full_batch_step(data):
    params, batch = data
    method = autopar.PipeshardParallel(
        num_micro_batches=4,
        layer_option=autopar.AutoLayerOption(layer_num=LAYERS),
        stage_option=autopar.UniformStageOption(num_stages=2),
        cluster_shape=(2, 4),
    )
    step = autopar.parallelize(sgd_step, method=method)
    new_params, loss = step(params, batch)
    want_params, want_loss = jax.jit(sgd_step)(params, batch)
    assert_trees_close(loss, want_loss)
    assert_trees_close(new_params, want_params)
    plan = step.get_execution_plan(params, batch)
    assert isinstance(plan, PipeshardExecutionPlan)
    assert [s.submesh for s in plan.stages] == [(1, 4), (1, 4)]
    assert sorted(d for s in plan.stages for d in s.device_ids) == list(range(8))
    assert plan.stages[0].layers[0] == 0 and plan.stages[-1].layers[1] == LAYERS
    assert plan.num_micro_batches == 4 and "stage 1: layers" in str(plan)
    # 1F1B on 2 stages and 4 micro-batches: (S - 1) / B of the work is bubble.
    assert plan.schedule == "1f1b" and plan.estimated_bubble == pytest.approx(1 / 4)
    assert "1f1b schedule, estimated bubble 0.250" in str(plan)
    # The activations go forward and their cotangents back, planned by the cross-mesh resharding core.
    pairs = {(t.src, t.dst): t for t in plan.transfers}
    assert set(pairs) >= {(0, 1), (1, 0)} and all(t.bytes > 0 and t.seconds > 0 for t in plan.transfers)
    assert "transfer stage 0 -> 1:" in str(plan)
    # Each stage ran sharded over its 4 devices by autopar-intra-op.
    exe = step._cache[next(iter(step._cache))].executable
    for name in exe.stage_names:
        assert exe.stage_device_count(name) == 4


def test_hand_placed_boundaries_and_adam_state(data):
    params, batch = data
    opt_state = OPTIMIZER.init(params)
    auto = autopar.PipeshardParallel(
        num_micro_batches=2, layer_option=autopar.AutoLayerOption(2), submesh_shapes=("1x4",)
    )
    step = autopar.parallelize(adam_step, method=auto, devices=jax.devices()[:8], batch_argnums=(2,))
    got = step(params, opt_state, batch)
    want = jax.jit(adam_step)(params, opt_state, batch)
    assert_trees_close(got, want, rtol=1e-4, atol=1e-5)
    assert len(step.get_execution_plan(params, opt_state, batch).stages) == 2
    # The markers give 4 layers; with only 1x2 submeshes the 8 devices must form 4 stages.
    method = autopar.PipeshardParallel(
        num_micro_batches=2, layer_option="manual", stage_option="auto", submesh_shapes=("1x2",)
    )
    marked = autopar.parallelize(marked_sgd_step, method=method)
    plan = marked.get_execution_plan(params, batch)
    assert [s.layers for s in plan.stages] == [(k, k + 1) for k in range(LAYERS)]
    assert_trees_close(marked(params, batch), jax.jit(sgd_step)(params, batch))


def test_lower_with_abstract_arguments_plans_without_running(data):
    params, batch = data
    method = autopar.PipeshardParallel(
        num_micro_batches=8, layer_option=autopar.AutoLayerOption(layer_num=2), stage_option="auto"
    )
    step = autopar.parallelize(sgd_step, method=method)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (params, batch))
    lowered = step.lower(*abstract)
    text = lowered.as_text()
    assert "autopar.inter_op.plan" in text and "func.func private @stage_0_forward" in text
    # The planned step is one micro-batch: 32 / 8 = 4 rows.
    assert "tensor<4x16xf32>" in text
    assert step._cache[next(iter(step._cache))].executable is None
    plan = step.get_execution_plan(*abstract)
    assert plan.estimated_latency > 0 and all(s.estimated_cost > 0 for s in plan.stages)


def test_bad_pipeshard_arguments_are_clear_errors(data):
    params, batch = data
    with pytest.raises(ValueError, match="cluster_shape \\(3, 2\\) needs 6 devices but 8 devices"):
        autopar.parallelize(sgd_step, method=autopar.PipeshardParallel(cluster_shape=(3, 2)))
    method = autopar.PipeshardParallel(num_micro_batches=3, layer_option=autopar.AutoLayerOption(2))
    with pytest.raises(ValueError, match="batch dim 32, which 3 micro-batches do not divide"):
        autopar.parallelize(sgd_step, method=method)(params, batch)
    with pytest.raises(ValueError, match="layer_option must be"):
        autopar.PipeshardParallel(layer_option="auto")
    # No batch to split: said in the API's names (it was "no @main argument is marked autopar.batch").
    four = autopar.PipeshardParallel(num_micro_batches=4, layer_option=autopar.AutoLayerOption(2))
    with pytest.raises(
        ArgumentError, match=r"num_micro_batches=4\) splits a batch, but no argument of sgd_step is"
    ):
        autopar.parallelize(sgd_step, method=four, batch_argnums=())(params, batch)


# ---- the micro-batched step equals jax.jit's full-batch step (ir/micro_batch.py labels) --------------------

TWO_STAGES = dict(
    num_micro_batches=4,
    layer_option=autopar.AutoLayerOption(layer_num=2),
    stage_option=autopar.UniformStageOption(num_stages=2),
)


def sum_loss_step(params, batch):
    """A sum loss (not a mean), per-example predictions, and a PRNG key and a step counter in the batch
    that must not be cut into micro-batches."""
    x, y, key, count = batch
    noise = 0.0 * jax.random.normal(key, ())  # reads the key without changing the result
    loss, grads = jax.value_and_grad(lambda p: jnp.sum((jnp.tanh(x @ p[0]) @ p[1] - y) ** 2) + noise)(params)
    preds = jnp.tanh(x @ params[0]) @ params[1]
    new = [p - 1e-3 * g for p, g in zip(params, grads, strict=True)]
    return new, loss, preds, jax.random.fold_in(key, count), count + 1


def test_sum_losses_per_example_outputs_and_keys_match_jit_over_three_steps(data):
    params, (x, y) = data
    params = params[:2]
    key, count = jax.random.key(7), jnp.int32(0)
    step = autopar.parallelize(sum_loss_step, method=autopar.PipeshardParallel(**TWO_STAGES))
    want_params, got_params = params, params
    for _ in range(3):
        got = step(got_params, (x, y, key, count))
        want = jax.jit(sum_loss_step)(want_params, (x, y, key, count))
        assert got[2].shape == (BATCH, WIDTH)  # concatenated, not averaged
        assert_trees_close(got[:3], want[:3], rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(jax.random.key_data(got[3]), jax.random.key_data(want[3]))
        assert int(got[4]) == int(want[4])
        got_params, want_params = got[0], want[0]


@pytest.mark.parametrize("executor", ["processes", "in-process"])
def test_donated_arguments_are_deleted_and_their_buffers_reused(data, executor):
    params, batch = data
    method = autopar.PipeshardParallel(**TWO_STAGES, executor=executor)
    step = autopar.parallelize(sgd_step, method=method, donate_argnums=(0,))
    got, want = [jnp.array(p) for p in params], params
    for _ in range(3):
        first = got
        got, loss = step(got, batch)
        want, want_loss = jax.jit(sgd_step)(want, batch)
        assert all(p.is_deleted() for p in first)  # as jax.jit deletes them
        assert not any(p.is_deleted() for p in got)
    assert_trees_close((got, loss), (want, want_loss))
    # A donated array passed again is named (jax said "Array has been deleted with shape=float32[...]").
    with pytest.raises(ArgumentError, match=r"^params\[0\] was deleted: an array donated to an earlier call"):
        step(first, batch)
    # Each apply part writes the new parameters into the donated buffers of the old ones.
    hlo = step.lower(params, batch).compile().as_text()
    applies = [part for part in hlo.split("// @")[1:] if part.startswith("stage_") and "_apply" in part[:20]]
    assert applies and all("input_output_alias" in part for part in applies)


@pytest.mark.parametrize("executor", ["in-process", "processes"])
def test_arrays_on_a_mesh_of_explicit_axes_run_pipelined_inside_and_outside_that_mesh(data, executor):
    # jax.make_mesh's axes are Explicit: such an array's layout is part of its type, and slicing the batch
    # into micro-batches raised jax's ShardingTypeError ("Use `.at[...].get(out_sharding=)`"), inside
    # `jax.set_mesh(mesh)` a context-mesh mismatch. The step itself is traced inside the user's mesh.
    params, batch = data
    mesh = jax.make_mesh((8,), ("d",))
    assert mesh.axis_types == (jax.sharding.AxisType.Explicit,)
    on_mesh = lambda tree, spec: jax.device_put(tree, jax.sharding.NamedSharding(mesh, spec))  # noqa: E731
    params, batch = (
        on_mesh(params, jax.sharding.PartitionSpec()),
        on_mesh(batch, jax.sharding.PartitionSpec("d")),
    )
    method = autopar.PipeshardParallel(**TWO_STAGES, executor=executor)
    want = jax.jit(sgd_step)(params, batch)
    assert_trees_close(autopar.parallelize(sgd_step, method=method)(params, batch), want)
    with jax.set_mesh(mesh):
        assert_trees_close(autopar.parallelize(sgd_step, method=method)(params, batch), want)


def test_data_parallel_stages_split_the_examples_they_read(data):
    # A stage function planned alone had no `autopar.batch` argument, so force_data_parallel found no
    # batch to split and left every stage replicated: each device ran the whole micro-batch.
    params, batch = data
    option = autopar.AutoShardingOption(force_data_parallel=True)
    step = autopar.parallelize(
        sgd_step, method=autopar.PipeshardParallel(**TWO_STAGES, auto_sharding_option=option)
    )
    assert_trees_close(step(params, batch), jax.jit(sgd_step)(params, batch))
    plan = step.get_execution_plan(params, batch)
    examples = [t for t in plan.tensors if t.path.startswith("batch")]
    assert {t.stage for t in examples} == {0, 1} and all(t.spec == "P('x',)" for t in examples), examples
    module = step.lower(params, batch).module
    stage_1_forward = find_function(module.operation, "stage_1_forward")
    marked = [i for i, m in enumerate(attrs.get_argument_marks(stage_1_forward)) if m.is_batch]
    specs = sh.arg_attrs(stage_1_forward)
    # x from the batch and the activation stage 0 sends: both split over the data axis.
    assert len(marked) == 2 and all('[{"x"}' in str(specs[i]) for i in marked), [str(a) for a in specs]


@pytest.mark.parametrize(
    "option",
    [
        autopar.Zero3Parallel().auto_sharding_option,
        autopar.AutoShardingOption(allow_replicated_parameters=False),
    ],
)
def test_parameter_options_shard_the_parameters_every_part_reads(data, option):
    # A stage's forward and backward parts had no `autopar.parameter` argument: under ZeRO-3 or
    # allow_replicated_parameters=False only the apply part sharded them, and the others read them whole.
    params, batch = data
    step = autopar.parallelize(
        sgd_step, method=autopar.PipeshardParallel(**TWO_STAGES, auto_sharding_option=option)
    )
    assert_trees_close(step(params, batch), jax.jit(sgd_step)(params, batch))
    reads = [t for t in step.get_execution_plan(params, batch).tensors if t.path.startswith("params")]
    assert {t.part for t in reads} >= {"forward", "apply"} and all(t.spec != "replicated" for t in reads), (
        reads
    )


def test_an_output_that_does_not_combine_is_named_and_can_be_declared(data):
    params, batch = data

    def step(params, batch):
        x, y = batch
        new, loss = sgd_step(params, batch)
        return new, loss, jnp.var(x @ params[0])  # each example's distance from the batch's mean

    method = autopar.PipeshardParallel(**TWO_STAGES)
    with pytest.raises(
        autopar.AutoparError, match=r"output \[2\] .*does not combine exactly.*output_combine"
    ):
        autopar.parallelize(step, method=method)(params, batch)
    declared = autopar.PipeshardParallel(**TWO_STAGES, output_combine={"[2]": "last"})
    got = autopar.parallelize(step, method=declared)(params, batch)
    assert_trees_close(got[:2], jax.jit(step)(params, batch)[:2])
    with pytest.raises(ValueError, match=r"output_combine names output '\[5\]'.*outputs are"):
        bad = autopar.PipeshardParallel(**TWO_STAGES, output_combine={"[5]": "sum"})
        autopar.parallelize(step, method=bad)(params, batch)
    with pytest.raises(ValueError, match="must be one of"):
        autopar.PipeshardParallel(output_combine={"[0]": "median"})


def test_the_one_output_of_a_step_is_named_with_its_output_combine_key(data):
    # A step returning one array has the path '': the message read "output  (computed at ...)".
    params, (x, y) = data

    def step(params, batch):
        x, y = batch
        return jax.grad(lambda w: jnp.var(jnp.tanh(x @ w) @ params[1]))(params[0])

    method = autopar.PipeshardParallel(**TWO_STAGES)
    with pytest.raises(
        autopar.AutoparError, match=r"^the step's output \(output_combine key ''\) \(computed at"
    ):
        autopar.parallelize(step, method=method)(params, (x, y))


def test_outputs_computed_from_means_run_once_from_the_combined_means(data):
    """A returned value that is a nonlinear function of means (the log of a mean, the best loss so far,
    optax.contrib.reduce_on_plateau's test of the loss) has no combination over micro-batches; it runs in
    the apply part, once per step from the combined means, and equals the full batch's. Such steps were
    refused ("does not combine exactly ... declare how it combines")."""
    params, (x, y) = data
    plateau = optax.chain(optax.sgd(0.5), optax.contrib.reduce_on_plateau(patience=1, accumulation_size=1))

    def step(params, opt_state, best, x, y):
        loss, grads = jax.value_and_grad(mlp_loss)(params, x, y)
        updates, opt_state = plateau.update(grads, opt_state, params, value=loss)
        improved = loss < best
        metrics = {"log_mean": jnp.log(jnp.mean((x @ params[0]) ** 2)), "improved": improved}
        return optax.apply_updates(params, updates), opt_state, jnp.where(improved, loss, best), metrics

    method = autopar.PipeshardParallel(**TWO_STAGES)
    f = autopar.parallelize(step, method=method, batch_argnums=(3, 4))
    state = (params, plateau.init(params), jnp.float32(1e9))
    want = jax.jit(step)
    for _ in range(3):  # the plateau's count and scale move from step to step
        got, expected = f(*state, x, y), want(*state, x, y)
        assert_trees_close(got, expected)
        state = got[:3]


@pytest.mark.parametrize("executor", ["processes", "in-process"])
def test_maxima_and_any_over_the_batch_combine_and_a_scaled_maximum_follows(data, executor):
    """Metrics that take the largest or smallest over the batch (the worst example's loss, whether any
    input is out of range) combine as the largest or smallest over the micro-batches. They were refused,
    and no declarable combination was right for them. A scaled maximum is computed from the combined one
    (it had to be declared before)."""
    params, batch = data

    def step(params, batch):
        x, y = batch
        new, loss = sgd_step(params, batch)
        per_example = jnp.mean((mlp_outputs(params, x) - y) ** 2, axis=1)
        metrics = {
            "worst": jnp.max(per_example),
            "best": jnp.min(per_example),
            "any_large": jnp.any(jnp.abs(x) > 2.5),
            "all_small": jnp.all(jnp.abs(x) < 2.5),
            "worst_scaled": 2.0 * jnp.max(per_example),  # from the combined maximum, in the apply part
        }
        return new, loss, metrics

    undeclared = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    assert_trees_close(undeclared(params, batch)[1:], jax.jit(step)(params, batch)[1:])
    declared = {"[2]['worst_scaled']": "max"}  # a declaration still holds where it is not needed
    method = autopar.PipeshardParallel(**TWO_STAGES, output_combine=declared, executor=executor)
    f = autopar.parallelize(step, method=method)
    mine = theirs = params
    for _ in range(2):
        (mine, my_loss, got), (theirs, their_loss, want) = f(mine, batch), jax.jit(step)(theirs, batch)
        assert_trees_close((my_loss, got), (their_loss, want))
    assert bool(got["any_large"]) != bool(got["all_small"])  # the data has a value above 2.5


def test_a_step_written_for_alpa_runs_with_its_gradient_and_metrics(data):
    """Code written for Alpa computes gradients with `alpa.value_and_grad` (its micro-batch marker) and
    returns metrics beside the loss: autopar's names are JAX's functions, and the metrics combine exactly
    over the micro-batches (the loss and the error rate as means, the count of examples as a sum, a
    constant as itself). Constants among the outputs used to fail: no stage computed them, and one that
    scales with the micro-batch (`x.shape[0]`) was refused as not combining."""
    assert autopar.grad is jax.grad and autopar.value_and_grad is jax.value_and_grad
    params, batch = data

    def alpa_step(params, batch):
        x, y = batch

        def loss_fn(p):
            out = mlp_outputs(p, x)
            metrics = {
                "error": jnp.mean(jnp.abs(out - y) > 0.5),
                "examples": jnp.float32(x.shape[0]),  # a constant of the micro-batch's size
                "learning_rate": jnp.float32(0.5),  # a constant: computed by no stage before the fix
            }
            return jnp.mean((out - y) ** 2), metrics

        (loss, metrics), grads = autopar.value_and_grad(loss_fn, has_aux=True)(params)
        return [p - 0.5 * g for p, g in zip(params, grads, strict=True)], loss, metrics

    got = autopar.parallelize(alpa_step, method=autopar.PipeshardParallel(**TWO_STAGES))(params, batch)
    assert_trees_close(got, jax.jit(alpa_step)(params, batch))


def _sum_loss(params, x, y):
    return jnp.sum((mlp_outputs(params, x) - y) ** 2)


def gradients_divided_after_grad(params, batch):
    """The mean gradient written after jax.grad: the division by the batch size is not in the backward
    pass. It ran in the apply part, once per step, with one micro-batch's size: the update was B times
    too large, silently (0.13 off after one step at B = 2)."""
    x, y = batch
    loss, grads = jax.value_and_grad(_sum_loss)(params, x, y)
    return [w - 0.1 * g / x.shape[0] for w, g in zip(params, grads, strict=True)], loss / x.shape[0]


def clipped_per_example_gradients(params, batch):
    """DP-SGD: per-example gradients, each clipped to norm 1, then averaged. The clipping and the mean
    work on per-example values and were put in the apply part, which sees one micro-batch of them."""
    x, y = batch
    grads = jax.vmap(jax.grad(_sum_loss), in_axes=(None, 0, 0))(params, x, y)
    norms = jnp.sqrt(sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in grads))
    scale = jnp.minimum(1.0, 1.0 / (norms + 1e-6))
    means = [jnp.mean(g * scale[:, None, None], axis=0) for g in grads]
    return [w - 0.1 * g for w, g in zip(params, means, strict=True)], _sum_loss(params, x, y)


def linearly_scaled_learning_rate(params, batch):
    """The linear scaling rule, lr from the batch size: a constant of the micro-batch's size in the apply
    part, so each step used a B-times smaller learning rate, silently."""
    x, y = batch
    loss, grads = jax.value_and_grad(mlp_loss)(params, x, y)
    lr = 4.0 * x.shape[0] / 256
    return [w - lr * g for w, g in zip(params, grads, strict=True)], loss


@pytest.mark.parametrize(
    "step", [gradients_divided_after_grad, clipped_per_example_gradients, linearly_scaled_learning_rate]
)
@pytest.mark.parametrize("micro_batches", [2, 4])
def test_work_after_grad_on_the_batch_runs_per_micro_batch(data, step, micro_batches):
    params, batch = data
    method = autopar.PipeshardParallel(
        num_micro_batches=micro_batches, layer_option=autopar.AutoLayerOption(layer_num=2)
    )
    got = autopar.parallelize(step, method=method)(params, batch)
    assert_trees_close(got, jax.jit(step)(params, batch), rtol=1e-5, atol=1e-5)


def test_a_step_that_takes_its_batch_first_is_told_to_give_batch_argnums(data):
    """With the default batch_argnums=(1,), a step written `step(batch, params)` has its parameters split
    into micro-batches: JAX's shape error is now said in the API's terms."""
    params, batch = data

    def batch_first(batch, params):
        return sgd_step(params, batch)

    method = autopar.PipeshardParallel(**TWO_STAGES)
    with pytest.raises(
        autopar.AutoparError,
        match=r"batch_first fails on one micro-batch .*params: batch_argnums=\(1,\).*give batch_argnums",
    ):
        autopar.parallelize(batch_first, method=method)(batch, params)
    got = autopar.parallelize(batch_first, method=method, batch_argnums=(0,))(batch, params)
    assert_trees_close(got, jax.jit(batch_first)(batch, params))

    def broken(params, batch):  # fails on the whole batch too: its own error, not batch_argnums advice
        return sgd_step(params, batch)[1] + jnp.ones((3, 5)) @ jnp.ones((4, 2))

    with pytest.raises(TypeError, match="dot_general"):
        jax.jit(broken)(params, batch)
    with pytest.raises(TypeError, match="dot_general") as raised:
        autopar.parallelize(broken, method=method)(params, batch)
    assert "batch_argnums" not in str(raised.value)


def test_state_where_the_default_batch_argnums_points_gets_the_same_error_as_unpipelined(data):
    """`step(params, opt_state, batch)` with the default (1,): the optimizer state would be split into
    micro-batches. Pipelined, the step fails on one micro-batch first; the error still says what
    ShardParallel's does (the state comes back updated) rather than relaying JAX's shape error."""
    params, batch = data
    opt_state = OPTIMIZER.init(params)
    message = r"opt_state at position 1 is state the step returns updated.*batch_argnums=\(2,\) \(batch\)"
    for method in (autopar.ShardParallel(mesh_shape=(8,)), autopar.PipeshardParallel(**TWO_STAGES)):
        with pytest.raises(autopar.AutoparError, match=message):
            autopar.parallelize(adam_step, method=method)(params, opt_state, batch)


def test_state_at_the_default_batch_position_that_micro_batches_do_not_divide_gets_the_same_error(data):
    """`step(w, opt_state, batch)` with three layers stacked in one array: 4 micro-batches do not divide
    the optimizer state's dim 0, so splitting it fails before any lowering; the error is still
    ShardParallel's (the state comes back updated), not that a batch of 3 does not divide."""
    params, batch = data
    stacked = jnp.stack(params[:3])

    def step(w, opt_state, batch):
        loss, grads = jax.value_and_grad(lambda w: mlp_loss(list(w), *batch))(w)
        updates, opt_state = OPTIMIZER.update(grads, opt_state, w)
        return optax.apply_updates(w, updates), opt_state, loss

    message = r"opt_state at position 1 is state the step returns updated.*batch_argnums=\(2,\) \(batch\)"
    with pytest.raises(ArgumentError, match=message):
        autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))(
            stacked, OPTIMIZER.init(stacked), batch
        )


def test_labels_left_out_of_batch_argnums_are_named_with_the_positions_to_give(data):
    """`step(params, x, y)` with the default (1,) splits x into micro-batches and leaves y whole: the error
    names y as leading with the batch's size and gives batch_argnums=(1, 2), which then runs."""
    params, (x, y) = data

    def step(params, x, y):
        return sgd_step(params, (x, y))

    method = autopar.PipeshardParallel(**TWO_STAGES)
    with pytest.raises(
        autopar.AutoparError,
        match=rf"y at position 2 also leads with the batch's size {BATCH}.*batch_argnums=\(1, 2\)",
    ):
        autopar.parallelize(step, method=method)(params, x, y)
    got = autopar.parallelize(step, method=method, batch_argnums=(1, 2))(params, x, y)
    assert_trees_close(got, jax.jit(step)(params, x, y))


def test_a_count_of_examples_kept_in_the_state_is_refused_without_false_remedies(data):
    """`seen + x.shape[0]` is neither a mean nor a sum of the micro-batches' values: no declaration and no
    average gives the full batch's, so the message offers neither (it used to say "it is
    'const:irregular'" and suggest both)."""
    params, batch = data

    def counting_step(params, seen, batch):
        new, loss = sgd_step(params, batch)
        return new, seen + batch[0].shape[0], loss

    method = autopar.PipeshardParallel(**TWO_STAGES)
    with pytest.raises(autopar.AutoparError, match=r"output \[1\] .*not in proportion to it") as info:
        autopar.parallelize(counting_step, method=method, batch_argnums=(2,))(params, jnp.float32(0), batch)
    assert "output_combine" not in str(info.value) and "approximate_combine" not in str(info.value)


def test_bits_drawn_time_major_in_a_loop_are_refused_at_the_line_that_draws_them(data):
    """Random bits are drawn from each element's index in the array. Along a leading batch dim the
    runtime hands each micro-batch its examples' indices in the whole batch, in loops too
    (ir/example_index.py, tests/api/test_example_index.py), and bits drawn time-major from the key alone
    are taken from the whole batch (ir/whole_batch.py). Drawn time-major inside a loop over layers, whose
    carry the parameters compute, they are neither: refused, and the message names the line that draws
    them (the output it reaches, the loss, is far from it)."""
    params, batch = data

    def dropout_step(params, batch, key):
        x, y = batch

        def loss(p):
            def layer(h, k):
                h = jnp.tanh(h @ p[0])
                keep = jax.random.bernoulli(k, 0.9, h.T.shape).T  # the line the message names
                return jnp.where(keep, h / 0.9, 0.0), None

            h, _ = jax.lax.scan(layer, x, jax.random.split(key, 2))
            return jnp.mean((h @ p[1] - y) ** 2)

        loss_value, grads = jax.value_and_grad(loss)(params)
        return [p - 0.1 * g for p, g in zip(params, grads, strict=True)], loss_value

    line = dropout_step.__code__.co_firstlineno + 6
    with pytest.raises(
        autopar.AutoparError, match=rf"iota over the batch dim at .*test_pipeshard.py:{line}:.*inside a loop"
    ):
        method = autopar.PipeshardParallel(**TWO_STAGES)
        autopar.parallelize(dropout_step, method=method)(params[:2], batch, jax.random.key(0))


def test_bits_drawn_time_major_are_taken_from_the_whole_batch(data):
    """Bits drawn with the batch dim second count the batch's size in their strides, so no micro-batch can
    draw them; they read only the key, so the whole batch's mask is computed first (ir/whole_batch.py)."""
    params, batch = data

    def dropout_step(params, batch, key):
        x, y = batch

        def loss(p):
            h = jnp.tanh(x @ p[0])
            keep = jax.random.bernoulli(key, 0.9, h.T.shape).T
            return jnp.mean((jnp.where(keep, h / 0.9, 0.0) @ p[1] - y) ** 2)

        loss_value, grads = jax.value_and_grad(loss)(params)
        return [p - 0.1 * g for p, g in zip(params, grads, strict=True)], loss_value

    method = autopar.PipeshardParallel(**TWO_STAGES)
    got = autopar.parallelize(dropout_step, method=method)(params[:2], batch, jax.random.key(0))
    assert_trees_close(got, jax.jit(dropout_step)(params[:2], batch, jax.random.key(0)))


def test_a_batch_statistic_in_the_gradients_is_refused_or_approximated(data):
    params, (x, y) = data

    def centred_step(params, batch):
        x, y = batch

        def loss(p):
            h = jnp.tanh(x @ p[0])
            return jnp.mean(((h - h.mean(0)) @ p[1] - y) ** 2)

        loss_value, grads = jax.value_and_grad(loss)(params)
        return [p - 0.1 * g for p, g in zip(params, grads, strict=True)], loss_value

    params = params[:2]
    with pytest.raises(autopar.AutoparError, match="does not combine exactly.*batch statistic"):
        autopar.parallelize(centred_step, method=autopar.PipeshardParallel(**TWO_STAGES))(params, (x, y))
    approx = autopar.PipeshardParallel(**TWO_STAGES, approximate_combine=True)
    got_params, _ = autopar.parallelize(centred_step, method=approx)(params, (x, y))
    want_params, _ = jax.jit(centred_step)(params, (x, y))
    # Alpa's average of per-micro-batch gradients: close to, not equal to, the full-batch step.
    np.testing.assert_allclose(np.asarray(got_params[0]), np.asarray(want_params[0]), atol=0.05)


def bytes_per_device(tree) -> dict[int, int]:
    """What each device holds of the arrays in `tree` (a replicated array counts on every device)."""
    out: dict[int, int] = {}
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, RemoteArray):  # held by a mesh worker process
            for device, n in leaf.bytes_by_device().items():
                out[device] = out.get(device, 0) + n
            continue
        for shard in leaf.addressable_shards:
            out[shard.device.id] = out.get(shard.device.id, 0) + shard.data.nbytes
    return out


@pytest.mark.parametrize("steps", [6, 200], ids=["written-out", "left-whole"])
def test_a_flax_lstm_trained_over_micro_batches_equals_the_full_batch_step(steps):
    """flax's nn.RNN over an OptimizedLSTMCell (a scan over time from a zero carry) in a TrainState step.
    It used to be refused: the zero initial state times a weight, and the zero residuals the scan stacks
    for its backward loop, read as values with a batch dim made from constants. Over 200 steps the loops
    stay whole (past autopar-unroll-loops' max-unrolled-ops), and Adam's update of the gradients the
    backward loop sums, read beside its per-example results, ran per micro-batch (refused)."""
    import flax.linen as nn
    from flax.training import train_state

    class Classifier(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(5)(nn.RNN(nn.OptimizedLSTMCell(16))(x)[:, -1])

    def step(state, batch):
        x, y = batch

        def loss_fn(p):
            logits = state.apply_fn({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    x = jax.random.normal(jax.random.key(0), (BATCH, steps, 8))
    y = jax.random.randint(jax.random.key(1), (BATCH,), 0, 5)
    model = Classifier()
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(jax.random.key(2), x)["params"], tx=optax.adam(1e-2)
    )
    f = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    mine, theirs = state, state
    for _ in range(2):
        (mine, my_loss), (theirs, their_loss) = f(mine, (x, y)), jax.jit(step)(theirs, (x, y))
        assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    assert_trees_close(mine.params, theirs.params, rtol=1e-4, atol=1e-5)


def test_a_fourier_layer_trained_over_micro_batches_equals_the_full_batch_step():
    """A Fourier neural operator's spectral layer (rfft over each example's positions, complex weights,
    irfft): its gradient holds complex zero constants, which jaxlib's MLIR bindings cannot read as an
    attribute (a TypeError from deep inside planning, before), and stablehlo.complex, which combines like a
    sum."""

    def step(w, x):
        def loss(w):
            spectrum = jnp.fft.rfft(x, axis=1) * jax.lax.complex(w[0], w[1])[None]
            return jnp.mean(jnp.fft.irfft(spectrum, n=x.shape[1], axis=1) ** 2)

        loss, grads = jax.value_and_grad(loss)(w)
        return w - 0.1 * grads, loss

    w = 0.2 * jax.random.normal(jax.random.key(0), (2, 9, 4))
    x = jax.random.normal(jax.random.key(1), (BATCH, 16, 4))
    f = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    (mine, my_loss), (theirs, their_loss) = f(w, x), jax.jit(step)(w, x)
    assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    assert_trees_close(mine, theirs, rtol=1e-4, atol=1e-6)


def test_a_step_whose_ops_change_with_the_batch_size_is_refused_at_its_line():
    """JAX's gradient of a triangular solve orders its product and its solve by the operands' shapes, so
    the step at the micro-batch and at twice it do not pair op by op. The error names the line and says
    that a JAX rule may be the cause (before: "does it branch on the batch size?", and no line)."""

    def step(w, x):
        def loss(w):
            chol = jnp.linalg.cholesky(w @ w.T + 16 * jnp.eye(16))
            return jnp.mean(jax.scipy.linalg.solve_triangular(chol, x.T, lower=True) ** 2)

        return w - 0.1 * jax.grad(loss)(w)

    w, x = 0.1 * jnp.ones((16, 16)), jnp.ones((BATCH, 16))
    f = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    with pytest.raises(
        autopar.AutoparError,
        match=r"at one batch size and stablehlo\.\w+ at another at \S*test_pipeshard\.py:\d+:\d+ \(the step, "
        r"or a JAX rule it calls, picks its ops by the batch size\); use num_micro_batches=1$",
    ):
        f(w, x)


def test_time_major_data_is_refused_with_a_hint_to_put_the_batch_first():
    """A (time, batch, features) input: micro-batches would cut the time axis, which the step's cumulative
    sum mixes; the refusal says which dim micro-batches split."""

    def step(w, x):
        def loss(w):
            return jnp.mean(jnp.cumsum(jnp.tanh(x @ w), axis=0) ** 2)

        loss_value, grad = jax.value_and_grad(loss)(w)
        return w - 0.1 * grad, loss_value

    w, x = 0.1 * jnp.ones((16, 16)), jnp.ones((8, BATCH, 16))
    f = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    with pytest.raises(
        autopar.AutoparError,
        match=r"windows span examples at \S*test_pipeshard\.py:\d+:\d+ \(micro-batches split dim 0 of every "
        r"batch argument: time-major data needs its batch first\)",
    ):
        f(w, x)


def _apply_if_finite_step(state, batch):
    """optax's guard against a non-finite update: a lax.cond on the gradients' finiteness."""
    params, opt_state = state
    loss, grads = jax.value_and_grad(_mse)(params, batch)
    updates, opt_state = _GUARDED.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss


def _finite_loss_step(params, batch):
    """A step that keeps its parameters when the loss is not finite."""
    loss, grads = jax.value_and_grad(_mse)(params, batch)
    new = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    return jax.tree.map(lambda n, p: jnp.where(jnp.isfinite(loss), n, p), new, params), loss


def _mse(params, batch):
    x, y = batch
    for w in params:
        x = jnp.tanh(x @ w)
    return jnp.mean((x - y) ** 2)


_GUARDED = optax.apply_if_finite(optax.adam(1e-2), max_consecutive_errors=3)


@pytest.mark.parametrize("guarded", ["apply_if_finite", "finite_loss"])
def test_steps_guarded_against_non_finite_values_equal_the_full_batch_step(data, guarded):
    """Before, both were refused. optax.apply_if_finite's cond, written out as selects, left constants
    labelled with its reason, read as sizes of the micro-batch: the whole update went to the backward part.
    `jnp.where(jnp.isfinite(loss), ...)` pulled the loss's per-example terms into the apply part."""
    params, (x, y) = data
    if guarded == "apply_if_finite":
        step, state = _apply_if_finite_step, (params, _GUARDED.init(params))
    else:
        step, state = _finite_loss_step, params
    f = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    mine, theirs = state, state
    for _ in range(2):
        (mine, my_loss), (theirs, their_loss) = f(mine, (x, y)), jax.jit(step)(theirs, (x, y))
        assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    assert_trees_close(mine, theirs, rtol=1e-4, atol=1e-6)


def test_a_micro_batch_size_inside_a_guard_is_refused_not_divided_wrongly(data):
    """`g / x.shape[0]` inside a lax.cond whose predicate reads the gradients: the constant is the
    micro-batch's size, and an update in the apply part would divide by it (B times too large: a first
    version of the fix above ran it so, 0.096 off). It must be refused, as any size read there is."""
    params, (x, y) = data

    def step(params, batch):
        loss, grads = jax.value_and_grad(lambda p: _mse(p, batch) * batch[0].shape[0])(params)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in grads]))
        update = lambda: [p - 0.1 * g / batch[0].shape[0] for p, g in zip(params, grads, strict=True)]  # noqa: E731
        return jax.lax.cond(finite, update, lambda: list(params)), loss

    f = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES))
    with pytest.raises(autopar.AutoparError, match="does not combine exactly"):
        f(params, (x, y))


def test_each_stage_holds_its_own_parameters_and_adam_state():
    rng = np.random.default_rng(1)
    width, layers = 64, 4
    params = [jnp.asarray(rng.standard_normal((width, width)) * 0.1, jnp.float32) for _ in range(layers)]
    x = jnp.asarray(rng.standard_normal((BATCH, width)), jnp.float32)
    opt_state = OPTIMIZER.init(params)
    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=layers),
        stage_option=autopar.UniformStageOption(num_stages=2),
    )
    step = autopar.parallelize(adam_step, method=method, batch_argnums=(2,))
    want = (params, opt_state)
    got = (params, opt_state)
    for _ in range(2):
        got = step(*got, (x, x))[:2]
        want = jax.jit(adam_step)(*want, (x, x))[:2]
    assert_trees_close(got, want, rtol=1e-4, atol=1e-5)
    plan = step.get_execution_plan(params, opt_state, (x, x))
    held = bytes_per_device(got)
    for stage in plan.stages:
        assert stage.state_memory > 0
        for device in stage.device_ids:
            assert abs(held[device] - stage.state_memory) <= 0.1 * stage.state_memory, (stage, held)
    # Together the stages hold the state once per replica, not every stage all of it.
    total = sum(leaf.nbytes for leaf in jax.tree.leaves(got))
    assert max(held.values()) < 0.75 * total


def test_a_tied_parameter_is_owned_by_one_stage():
    rng = np.random.default_rng(2)
    width = 32
    embed = jnp.asarray(rng.standard_normal((width, width)) * 0.1, jnp.float32)
    hidden = [jnp.asarray(rng.standard_normal((width, width)) * 0.1, jnp.float32) for _ in range(3)]
    x = jnp.asarray(rng.standard_normal((BATCH, width)), jnp.float32)

    params = {"embed": embed, "hidden": hidden}
    opt_state = OPTIMIZER.init(params)
    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=4),
        stage_option=autopar.UniformStageOption(num_stages=2),
    )
    step = autopar.parallelize(tied_adam_step, method=method, batch_argnums=(2,))
    got, want = (params, opt_state), (params, opt_state)
    for _ in range(2):
        got = step(*got, (x, x))[:2]
        want = jax.jit(tied_adam_step)(*want, (x, x))[:2]
    assert_trees_close(got, want, rtol=1e-4, atol=1e-5)
    plan = step.get_execution_plan(params, opt_state, (x, x))
    first = set(plan.stages[0].device_ids)
    assert {d.id for d in got[0]["embed"].devices()} <= first  # owned by the first stage that reads it


def in_flight_per_stage(order) -> dict[int, int]:
    """The most micro-batches each stage holds (forward run, its last backward part not yet) in a
    dispatch order."""
    last_part = {}
    for ins in order:
        if ins.part != "forward":
            last_part[ins.stage] = ins.part  # the stage's backward parts end with the same one every time
    held: dict[int, int] = {}
    most: dict[int, int] = {}
    for ins in order:
        if ins.part == "forward":
            held[ins.stage] = held.get(ins.stage, 0) + 1
        elif ins.part == last_part[ins.stage]:
            held[ins.stage] -= 1
        most[ins.stage] = max(most.get(ins.stage, 0), held.get(ins.stage, 0))
    return most


@pytest.mark.parametrize("schedule", ["1f1b", "gpipe", "zb-h1", "interleaved-1f1b"])
@pytest.mark.parametrize("stages", [2, 4])
def test_pipelined_schedules_equal_the_full_batch_step_over_three_steps(schedule, stages):
    rng = np.random.default_rng(4)
    layers = 8  # interleaved-1f1b on 4 meshes x 2 chunks needs 8 layers
    params = [jnp.asarray(rng.standard_normal((WIDTH, WIDTH)) * 0.4, jnp.float32) for _ in range(layers)]
    batch = tuple(jnp.asarray(rng.standard_normal((BATCH, WIDTH)), jnp.float32) for _ in range(2))
    opt_state = OPTIMIZER.init(params)
    method = autopar.PipeshardParallel(
        num_micro_batches=4,
        layer_option=autopar.AutoLayerOption(layer_num=layers),
        stage_option=autopar.UniformStageOption(num_stages=stages),
        pipeline_schedule=schedule,
    )
    step = autopar.parallelize(adam_step, method=method, batch_argnums=(2,))
    got, want = (params, opt_state), (params, opt_state)
    for _ in range(3):
        *got, got_loss = step(*got, batch)
        *want, want_loss = jax.jit(adam_step)(*want, batch)
        assert_trees_close(got_loss, want_loss, rtol=1e-4, atol=1e-5)
    assert_trees_close(got, want, rtol=1e-4, atol=1e-5)
    exe = step._cache[next(iter(step._cache))].executable
    held = in_flight_per_stage(exe.program.order)
    chunks = 2 if schedule == "interleaved-1f1b" else 1
    assert len(held) == stages * chunks
    assert len({s.device_ids for s in step.get_execution_plan(params, opt_state, batch).stages}) == stages
    if schedule == "1f1b":  # stage i holds at most (stages - i) micro-batches
        assert all(held[i] <= stages - i for i in range(stages)), held
    elif schedule == "zb-h1":  # no stage holds more than there are stages
        assert max(held.values()) <= stages, held
        parts = {ins.part for ins in exe.program.order}
        assert {"backward_input", "backward_weight"} <= parts and "backward" not in parts
    elif schedule == "gpipe":
        assert set(held.values()) == {4}
    # 1F1B and ZB-H1 start backwards before the first stage's last forward; GPipe never does (nor does
    # interleaved 1F1B when B equals the meshes: Megatron's schedule is then all warm-up).
    first_backward = next(i for i, ins in enumerate(exe.program.order) if ins.part != "forward")
    last_forward = max(
        i for i, ins in enumerate(exe.program.order) if ins.part == "forward" and ins.stage == 0
    )
    interleaves = schedule in ("1f1b", "zb-h1") or (schedule == "interleaved-1f1b" and stages < 4)
    assert (first_backward < last_forward) == interleaves


@pytest.mark.parametrize("schedule", ["1f1b", "gpipe", "zb-h1", "interleaved-1f1b"])
def test_an_evaluation_step_runs_pipelined_under_every_schedule(schedule):
    # A forward-only step has no backward to split into halves: ZB-H1 ran into "needs each backward
    # split" from the schedule pass, in pass options.
    rng = np.random.default_rng(5)
    params = [jnp.asarray(rng.standard_normal((WIDTH, WIDTH)) * 0.4, jnp.float32) for _ in range(4)]
    x = jnp.asarray(rng.standard_normal((BATCH, WIDTH)), jnp.float32)
    method = autopar.PipeshardParallel(
        num_micro_batches=4,
        layer_option=autopar.AutoLayerOption(layer_num=4),
        stage_option=autopar.UniformStageOption(num_stages=2),
        pipeline_schedule=schedule,
        executor="in-process",
    )
    evaluate = autopar.parallelize(mlp_outputs, method=method, batch_argnums=(1,))
    assert_trees_close(evaluate(params, x), jax.jit(mlp_outputs)(params, x), rtol=1e-5, atol=1e-6)
    exe = evaluate._cache[next(iter(evaluate._cache))].executable
    assert {ins.part for ins in exe.program.order} == {"forward"}
    chunks = 2 if schedule == "interleaved-1f1b" else 1
    assert len({ins.stage for ins in exe.program.order}) == 2 * chunks


def test_gpipe_plans_memory_for_every_micro_batch_in_flight():
    from autopar.cost import ClusterModel, DeviceModel
    from autopar.passes.inter_op.stage_costs import LayerProfile, stage_cost_table

    n = 4
    profile = LayerProfile(
        compute_flops=np.ones(n) * 1e9,
        forward_flops=np.ones(n) * 3e8,
        apply_flops=np.ones(n) * 1e6,
        param_bytes=np.ones(n) * 1e6,
        optimizer_bytes=np.ones(n) * 2e6,
        activation_bytes=np.ones(n) * 1e7,
        input_bytes=np.ones(n) * 1e6,
        tensor_parallel_bytes=np.zeros(n),
    )
    cluster = ClusterModel(1, 4, DeviceModel(memory_bytes=int(2e8)))
    one_f = stage_cost_table(profile, [(1, 1)], cluster, 8, max_stages=4)
    gpipe = stage_cost_table(profile, [(1, 1)], cluster, 8, max_stages=4, schedule="gpipe")
    # One layer: 4 MB fixed + 10 MB per micro-batch fits 8 in flight in 200 MB; four layers (40 MB per
    # micro-batch) fit 4 under 1F1B (3 stages after it) but not GPipe's 8.
    assert one_f.max_succeeding_stages[0, 0, 0, 0] == gpipe.max_succeeding_stages[0, 0, 0, 0] == 4
    assert one_f.max_succeeding_stages[0, 3, 0, 0] == 3
    assert gpipe.max_succeeding_stages[0, 3, 0, 0] == -1


def test_the_executor_outlives_the_planner_and_1f1b_holds_fewer_micro_batches_than_gpipe():
    import gc

    from autopar.runtime.sequential import SequentialExecutor

    rng = np.random.default_rng(3)
    width, batch = 64, 256
    params = [jnp.asarray(rng.standard_normal((width, width)) * 0.1, jnp.float32) for _ in range(4)]
    x = jnp.asarray(rng.standard_normal((batch, width)), jnp.float32)
    peaks = {}
    for schedule in ("1f1b", "gpipe"):
        method = autopar.PipeshardParallel(
            num_micro_batches=8,
            layer_option=autopar.AutoLayerOption(layer_num=4),
            submesh_shapes=("1x1",),
            cluster_shape=(1, 2),
            pipeline_schedule=schedule,
        )
        f = autopar.parallelize(sgd_step, method=method, devices=jax.devices()[:2])
        exe = SequentialExecutor(f.lower(params, (x, x)).module, jax.devices()[:2])
        del f
        gc.collect()  # the planner and its module are gone; the executor's IR must not be
        profile = exe.profile(*params, x, x)
        assert [e[0].part for e in profile.events].count("forward") == 2 * 8
        peaks[schedule] = profile.peak_bytes
        assert_trees_close(exe(*params, x, x), jax.jit(sgd_step)(params, (x, x)))
    # The last stage holds one micro-batch's activations under 1F1B, all eight under GPipe.
    assert peaks["gpipe"][1] > 3 * peaks["1f1b"][1], peaks


def test_manual_stage_option_places_the_stages_by_hand(data, monkeypatch):
    from autopar.passes import registry

    params, batch = data
    seen = []
    real_lookup = registry.lookup

    class Recording:  # autopar-intra-op, recording the options each stage is planned with
        def __init__(self, info):
            self._info = info

        def __getattr__(self, name):
            return getattr(self._info, name)

        def parse_options(self, assignments):
            seen.append(dict(assignments))
            return self._info.parse_options(assignments)

    def lookup(name):
        info = real_lookup(name)
        return Recording(info) if name == "autopar-intra-op" and info is not None else info

    monkeypatch.setattr(registry, "lookup", lookup)
    manual = autopar.ManualStageOption(
        forward_stage_layer_ids=[[0, 1], [2, 3]],
        submesh_physical_shapes=[(1, 4), (1, 2)],
        submesh_logical_shapes=[(2, 2), (1, 2)],
        submesh_autosharding_option_dicts=[{}, {"allow_replicated_parameters": False}],
    )
    method = autopar.PipeshardParallel(
        num_micro_batches=2, layer_option=autopar.AutoLayerOption(layer_num=LAYERS), stage_option=manual
    )
    assert "manual-stages=0-2:1x4:2x2,2-4:1x2:1x2" in method.pipeline((1, 8))
    assert "stage-options='1:allow-replicated-parameters=false'" in method.pipeline((1, 8))
    step = autopar.parallelize(sgd_step, method=method)
    assert_trees_close(step(params, batch), jax.jit(sgd_step)(params, batch))
    plan = step.get_execution_plan(params, batch)
    assert [(s.layers, s.submesh, s.logical_mesh) for s in plan.stages] == [
        ((0, 2), (1, 4), (2, 2)),
        ((2, 4), (1, 2), (1, 2)),
    ]
    assert plan.stages[0].device_ids == (0, 1, 2, 3) and plan.stages[1].device_ids == (4, 5)
    # Stage 1's parts were sharded with its own option, stage 0's with the method's.
    planned = {
        (a["mesh"], a["allow-replicated-parameters"]) for a in seen if "allow-replicated-parameters" in a
    }
    assert planned == {("2x2", "true"), ("1x2", "false")}, planned
    with pytest.raises(ValueError, match="stage 0's layer ids \\[0, 2\\] are not consecutive"):
        autopar.ManualStageOption([[0, 2], [3]], [(1, 4), (1, 4)], [(4, 1), (4, 1)])
    with pytest.raises(ValueError, match="submesh_logical_shapes has 1 entries for 2 stages"):
        autopar.ManualStageOption([[0], [1]], [(1, 4), (1, 4)], [(4, 1)])
    # These reached the pass, which named its own encoding ("manual-stages entry '0-2:1x4:2x4': ...").
    with pytest.raises(ValueError, match="stage 1's layer ids start at 3, not 2: the stages run every layer"):
        autopar.ManualStageOption([[0, 1], [3]], [(1, 4), (1, 4)], [(4, 1), (4, 1)])
    with pytest.raises(ValueError, match="stage 0's layer ids start at 1, not 0"):
        autopar.ManualStageOption([[1]], [(1, 4)], [(4, 1)])
    with pytest.raises(
        ValueError, match=r"stage 0's logical mesh \(2, 4\) has 8 devices, its submesh \(1, 4\) 4"
    ):
        autopar.ManualStageOption([[0]], [(1, 4)], [(2, 4)])
    with pytest.raises(ValueError, match=r"stage 0's shapes \(0, 4\) and \(1, 4\) must be two positive ints"):
        autopar.ManualStageOption([[0]], [(0, 4)], [(1, 4)])
    # What only the step can tell is said with ManualStageOption's fields too.
    short = autopar.ManualStageOption([[0, 1], [2]], [(1, 4), (1, 4)], [(2, 2), (1, 4)])
    wide = autopar.ManualStageOption([[0, 1], [2, 3]], [(1, 8), (1, 8)], [(2, 4), (1, 8)])
    for stages, message in (
        (
            short,
            f"ManualStageOption's forward_stage_layer_ids end before layer 3, but the step has {LAYERS} "
            "layers",
        ),
        (wide, "ManualStageOption's submesh_physical_shapes use 16 devices, more than the 8 given"),
    ):
        method = autopar.PipeshardParallel(
            num_micro_batches=2, layer_option=autopar.AutoLayerOption(layer_num=LAYERS), stage_option=stages
        )
        with pytest.raises(autopar.AutoparError, match=f"^PipeshardParallel: {message}$"):
            autopar.parallelize(sgd_step, method=method)(params, batch)
