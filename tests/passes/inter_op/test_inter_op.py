"""autopar-cluster-layers, autopar-inter-op and the sequential executor on small training steps, checked
against the unsharded step on 8 virtual CPU devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jaxlib.mlir import ir

from autopar import ir as air
from autopar import passes
from autopar.errors import PassError, PipelineError
from autopar.ir import attrs
from autopar.ir.stages import find_function
from autopar.pipeline_marker import mark_pipeline_boundary
from autopar.runtime.sequential import SequentialExecutor

WIDTH, BATCH, LAYERS = 16, 8, 4


def mlp_loss(params, x, marked=False):
    for i, w in enumerate(params):
        x = jnp.tanh(x @ w)
        if marked and i < len(params) - 1:
            x = mark_pipeline_boundary(x)
    return jnp.sum(x**2)


def sgd_step(params, x):
    loss, grads = jax.value_and_grad(mlp_loss)(params, x)
    return loss, [p - 0.1 * g for p, g in zip(params, grads, strict=True)]


def marked_sgd_step(params, x):
    loss, grads = jax.value_and_grad(lambda p, x: mlp_loss(p, x, marked=True))(params, x)
    return loss, [p - 0.1 * g for p, g in zip(params, grads, strict=True)]


OPTIMIZER = optax.adam(1e-2)


def adam_step(params, opt_state, x):
    loss, grads = jax.value_and_grad(mlp_loss)(params, x)
    updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
    return loss, optax.apply_updates(params, updates), opt_state


@pytest.fixture(scope="module")
def data():
    keys = jax.random.split(jax.random.key(0), LAYERS + 1)
    params = [jax.random.normal(keys[i], (WIDTH, WIDTH)) * 0.3 for i in range(LAYERS)]
    return params, jax.random.normal(keys[-1], (BATCH, WIDTH))


def top_ops(module: ir.Module, name: str = "main") -> list[ir.Operation]:
    for fn in module.body.operations:
        if ir.StringAttr(fn.attributes["sym_name"]).value == name:
            return [op.operation for op in fn.regions[0].blocks[0].operations if op.name != "func.return"]
    raise KeyError(name)


def layers_and_parts(module: ir.Module) -> list[tuple[str, int, str]]:
    return [
        (
            op.name,
            ir.IntegerAttr(op.attributes["autopar.layer"]).value,
            ir.StringAttr(op.attributes["autopar.part"]).value,
        )
        for op in top_ops(module)
    ]


def clustered(step, *args, layers: int = LAYERS) -> ir.Module:
    module = air.lower(step, *args)
    return passes.run(module, f"builtin.module(autopar-inline,autopar-cluster-layers{{num-layers={layers}}})")


def test_every_op_gets_a_layer_and_each_parameter_stays_in_one_layer(data):
    params, x = data
    module = clustered(sgd_step, params, x)
    ops = top_ops(module)
    assert all("autopar.layer" in op.attributes for op in ops)
    forward_layers = {lay for _, lay, part in layers_and_parts(module) if part == "forward"}
    assert forward_layers == set(range(LAYERS))
    # Parameter i (argument i) is read by a forward dot, a backward dot and the update: same layer.
    block_args = list(module.body.operations[0].regions[0].blocks[0].arguments)
    for i in range(LAYERS):
        readers = [op for op in ops if any(v == block_args[i] for v in op.operands)]
        parts = {ir.StringAttr(op.attributes["autopar.part"]).value for op in readers}
        # Layer 0's backward needs no input cotangent, so nothing in it reads parameter 0.
        assert parts == ({"forward", "backward", "apply"} if i else {"forward", "apply"})
        assert {ir.IntegerAttr(op.attributes["autopar.layer"]).value for op in readers} == {i}


def test_clustering_is_deterministic(data):
    params, x = data
    first = str(clustered(sgd_step, params, x))
    assert str(clustered(sgd_step, params, x)) == first


def test_marker_is_an_identity_under_grad(data):
    params, x = data
    plain = jax.jit(sgd_step)(params, x)
    marked = jax.jit(marked_sgd_step)(params, x)
    np.testing.assert_allclose(plain[0], marked[0], rtol=1e-6)
    for a, b in zip(plain[1], marked[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_markers_define_the_layers(data):
    params, x = data
    module = air.lower(marked_sgd_step, params, x)
    text = str(module)
    assert text.count('autopar.pipeline_boundary = "forward"') == LAYERS - 1
    assert text.count('autopar.pipeline_boundary = "backward"') == LAYERS - 1
    passes.run(module, "builtin.module(autopar-inline,autopar-cluster-layers)")
    ops = layers_and_parts(module)
    forward = [lay for name, lay, part in ops if part == "forward" and name == "stablehlo.dot_general"]
    assert forward == list(range(LAYERS))
    markers = [lay for name, lay, part in ops if name == "stablehlo.optimization_barrier"]
    assert markers == [
        0,
        1,
        2,
        3,
        2,
        1,
    ]  # forward boundaries after layers 0..2, backward ones from layer 3 down


def test_markers_disagreeing_with_num_layers_is_an_error(data):
    params, x = data
    module = air.lower(marked_sgd_step, params, x)
    with pytest.raises(PassError, match="num-layers=2 disagrees with the 3 pipeline boundaries"):
        passes.run(module, "builtin.module(autopar-inline,autopar-cluster-layers{num-layers=2})")


def test_unpaired_markers_are_an_error(data):
    params, x = data

    def loss(params, x):
        unused = mark_pipeline_boundary(x * 2.0)  # never reaches the loss: no backward marker
        del unused
        return mlp_loss(params, mark_pipeline_boundary(x))

    def step(params, x):
        return jax.grad(loss)(params, x)

    module = air.lower(step, params, x)
    with pytest.raises(PassError, match="markers do not pair"):
        passes.run(module, "builtin.module(autopar-inline,autopar-cluster-layers)")


def run_pipeline(step, args, options: str, layers: int = LAYERS) -> ir.Module:
    module = air.lower(step, *args)
    return passes.run(
        module,
        f"builtin.module(autopar-inline,autopar-cluster-layers{{num-layers={layers}}},autopar-inter-op{{{options}}})",
    )


def stage_meshes(module: ir.Module) -> dict[str, list[int]]:
    meshes = {}
    for fn in module.body.operations:
        if "autopar.mesh" in fn.attributes:
            mesh = ir.DictAttr(fn.attributes["autopar.mesh"])
            meshes[ir.StringAttr(fn.attributes["sym_name"]).value] = list(
                ir.DenseI64ArrayAttr(mesh["device_ids"])
            )
    return meshes


def test_four_stages_on_disjoint_submeshes_match_the_unsharded_step(data):
    params, x = data
    module = run_pipeline(sgd_step, (params, x), "cluster=2x4 micro-batches=4 submesh-shapes=1x2")
    meshes = stage_meshes(module)
    forward = [meshes[f"stage_{k}_forward"] for k in range(4)]
    assert sorted(d for ids in forward for d in ids) == list(range(8))
    for k in range(4):
        assert meshes[f"stage_{k}_backward"] == forward[k] == meshes[f"stage_{k}_apply"]
    plan = ir.ArrayAttr(module.operation.attributes["autopar.inter_op.plan"])
    assert [list(ir.DenseI64ArrayAttr(ir.DictAttr(s)["layers"])) for s in plan] == [
        [k, k + 1] for k in range(4)
    ]
    out = SequentialExecutor(module, num_micro_batches=1)(*params, x)
    loss, new_params = jax.jit(sgd_step)(params, x)
    np.testing.assert_allclose(out[0], loss, rtol=1e-5)
    for got, want in zip(out[1:], new_params, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_adam_step_with_optimizer_state_matches(data):
    params, x = data
    opt_state = OPTIMIZER.init(params)
    module = run_pipeline(
        adam_step, (params, opt_state, x), "cluster=1x4 micro-batches=2 submesh-shapes=1x2", 2
    )
    assert len({tuple(v) for v in stage_meshes(module).values()}) == 2
    flat_args = jax.tree.leaves((params, opt_state, x))
    out = SequentialExecutor(module, num_micro_batches=1)(*flat_args)
    want = jax.tree.leaves(jax.jit(adam_step)(params, opt_state, x))
    assert len(out) == len(want)
    for got, ref in zip(out, want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_each_apply_part_recomputes_the_step_count_instead_of_waiting_for_its_owner(data):
    """Adam's bias corrections come from the step count alone: each stage's apply derives them from the
    count argument itself, so no apply part reads another's results (under 1F1B the count's owner, the
    first stage, applies last); the new count is still returned once, by one stage."""
    params, x = data
    opt_state = OPTIMIZER.init(params)
    module = run_pipeline(
        adam_step, (params, opt_state, x), "cluster=1x4 micro-batches=2 submesh-shapes=1x2", 2
    )
    count_arg = len(params)  # the flat arguments: params, then opt_state's count, mu, nu
    assert jax.tree.leaves(opt_state)[0].dtype == jnp.int32
    calls = {ir.FlatSymbolRefAttr(op.attributes["callee"]).value: op for op in top_ops(module)}
    applies = [calls[f"stage_{k}_apply"] for k in range(2)]
    for call in applies:
        assert not any(
            isinstance(v, ir.OpResult) and v.owner.name == "func.call" and v.owner in applies
            for v in call.operands
        )
        read = [v for v in call.operands if isinstance(v, ir.BlockArgument)]
        assert count_arg in [v.arg_number for v in read]
    flat_args = jax.tree.leaves((params, opt_state, x))
    out = SequentialExecutor(module, num_micro_batches=1)(*flat_args)
    want = jax.tree.leaves(jax.jit(adam_step)(params, opt_state, x))
    for got, ref in zip(out, want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def stage_layer_counts(module: ir.Module) -> list[int]:
    plan = ir.ArrayAttr(module.operation.attributes["autopar.inter_op.plan"])
    return [int(np.diff(list(ir.DenseI64ArrayAttr(ir.DictAttr(s)["layers"])))[0]) for s in plan]


def wide_mlp_step(params, x):
    loss, grads = jax.value_and_grad(lambda p, x: jnp.mean(mlp_loss(p, x)))(params, x)
    return loss, [p - 0.1 * g for p, g in zip(params, grads, strict=True)]


def test_intra_op_stage_costs_solve_each_distinct_layer_and_mesh_once(data):
    from autopar import cost
    from autopar.passes.inter_op import cluster as cluster_lib
    from autopar.passes.inter_op import intra_op_costs
    from autopar.passes.inter_op.inter_op import read_layers

    params, x = data
    module = clustered(sgd_step, params, x)
    cluster = cost.inter_op_cluster(1, 4)
    meshes = sorted(
        (h, d, p, q)
        for h, d in cluster_lib.default_submeshes(cluster)
        for p, q in cluster_lib.logical_meshes((h, d))
    )
    assert len(meshes) == 6  # 1x1; 2x1, 1x2; 4x1, 2x2, 1x4
    with module.context:
        layered = read_layers(module.operation)
        num_layers = layered.num_layers
        modules = intra_op_costs.layer_modules(layered)
        intra_op_costs.clear_cache()
        times, stats = intra_op_costs.layer_times(modules, meshes, cluster, 1.0, 30.0)
        again, stats_again = intra_op_costs.layer_times(modules, meshes, cluster, 1.0, 30.0)
    # (n, 1) and (1, n) are one problem: 4 distinct meshes per distinct layer; the middle layers are equal.
    assert 2 <= stats["distinct_layers"] < num_layers
    assert stats["solves"] == 4 * stats["distinct_layers"]
    assert stats_again["solves"] == 0 and np.array_equal(times, again)
    column = {m: k for k, m in enumerate(meshes)}
    for n in (2, 4):
        assert np.array_equal(times[:, column[(1, n, n, 1)]], times[:, column[(1, n, 1, n)]])
    assert np.all(np.isfinite(times)) and np.all(times > 0)


def test_data_parallel_stage_costs_split_the_examples():
    # Under force-data-parallel the layer modules had no `autopar.batch` argument: every layer was priced
    # replicated, as slow on four devices as on one.
    import types

    from autopar import cost
    from autopar.passes.inter_op import intra_op_costs
    from autopar.passes.inter_op.inter_op import read_layers

    params, x = [jnp.zeros((512, 512))] * LAYERS, jnp.zeros((16384, 512))  # compute-bound layers
    module = clustered(sgd_step, params, x)
    main = module.body.operations[0]
    marks = [attrs.ArgumentMarks(i == len(params), i < len(params), None) for i in range(len(params) + 1)]
    attrs.set_argument_marks(main, marks)  # x is the batch, the rest parameters, as parallelize marks them
    forced = types.SimpleNamespace(intra_op_options="force-data-parallel")
    meshes = [(1, 1, 1, 1), (1, 4, 4, 1)]
    with module.context:
        layered = read_layers(module.operation)
        free = intra_op_costs.layer_modules(layered)
        marked = intra_op_costs.layer_modules(layered, forced)
        first = find_function(marked[0].operation)
        assert [m.is_batch for m in attrs.get_argument_marks(first)].count(True) == 1
        assert not any(m.is_batch for m in attrs.get_argument_marks(find_function(free[0].operation)))
        # Options on parameters mark them too, and the layer then updates nothing (no pairing of its
        # activations with the parameters as their updates).
        zero3 = intra_op_costs.layer_modules(layered, types.SimpleNamespace(intra_op_options="zero-stage=3"))
        layer_0 = find_function(zero3[0].operation)
        assert [m.is_parameter for m in attrs.get_argument_marks(layer_0)].count(True) == 1
        assert attrs.NO_UPDATES in layer_0.attributes
        assert attrs.NO_UPDATES not in find_function(marked[0].operation).attributes
        intra_op_costs.clear_cache()
        strategy = {"force_data_parallel": True}
        times, _ = intra_op_costs.layer_times(
            marked, meshes, cost.inter_op_cluster(1, 4), 1.0, 30.0, "auto", strategy
        )
    # Layer 0 reads the batch: split over 4 devices it takes under half the time of one device.
    assert times[0, 1] < 0.5 * times[0, 0], times[0]


# The three plan properties of the issue, with stage times from autopar.passes.intra_op.estimate.
@pytest.mark.parametrize("stage_cost", ["intra-op", "analytic"])
def test_one_stage_when_one_mesh_is_best(stage_cost):
    # Large batch, cheap links: data parallelism over all 4 devices scales, and any pipeline only adds
    # its fill/drain bubble, so the DP must keep one stage on the whole cluster.
    params = [jnp.zeros((512, 512))] * 4
    module = run_pipeline(
        wide_mlp_step,
        (params, jnp.zeros((4096, 512))),
        f"cluster=1x4 micro-batches=4 device-flops=1e12 stage-cost={stage_cost}",
    )
    assert stage_layer_counts(module) == [4]


@pytest.mark.parametrize("stage_cost", ["intra-op", "analytic"])
def test_uniform_layers_give_balanced_stages(stage_cost):
    big = [jnp.zeros((1024, 1024))] * 8
    module = run_pipeline(
        sgd_step,
        (big, jnp.zeros((4096, 1024))),
        f"cluster=1x4 micro-batches=16 submesh-shapes=1x1 device-flops=1e10 stage-cost={stage_cost}",
        layers=8,
    )
    assert stage_layer_counts(module) == [2, 2, 2, 2]


@pytest.mark.parametrize("stage_cost", ["intra-op", "analytic"])
def test_unequal_layers_give_unequal_stages(stage_cost):
    # Forward + backward matmuls per layer 2 : 3 : 9 : 9 (layer 0 needs no input cotangent) on two single
    # devices: the balanced cut is [0, 1, 2] | [3] (14 vs 9), not the halves (5 vs 18).
    params = [
        jnp.zeros((1024, 1024)),
        jnp.zeros((1024, 1024)),
        jnp.zeros((1024, 3072)),
        jnp.zeros((3072, 1024)),
    ]
    module = run_pipeline(
        sgd_step,
        (params, jnp.zeros((2048, 1024))),
        f"cluster=1x2 micro-batches=16 submesh-shapes=1x1 device-flops=1e10 stage-cost={stage_cost}",
    )
    assert stage_layer_counts(module) == [3, 1]


@pytest.mark.parametrize(
    ("options", "layers", "message"),
    [
        ("cluster=1x8 num-stages=8", LAYERS, "num-stages=8 is more than the 4 layers"),
        ("cluster=1x8 submesh-shapes=1x3", LAYERS, "submesh shape 1x3 does not tile the 1x8 cluster"),
        ("cluster=2x4 submesh-shapes=3x4", LAYERS, "submesh shape 3x4 does not tile the 2x4 cluster"),
        (
            "cluster=1x2 device-memory=1000",
            LAYERS,
            r"cannot hold the model: it needs at least [\d.]+ KiB per device .* but devices have 1000 B",
        ),
        ("cluster=8", LAYERS, "cluster '8' is not of the form HxD"),
        ("cluster=1x4 micro-batches=0", LAYERS, "micro-batches must be >= 1"),
        ("cluster=1x4 device-memory=0", LAYERS, r"device-memory \(bytes\) .* must be > 0"),
        # The options in other units that SI ones replaced name their replacement.
        ("cluster=1x4 device-tflops=100", LAYERS, r"'device-tflops' .* removed: give device-flops in FLOP/s"),
        ("cluster=1x4 memory-per-device=16", LAYERS, r"was removed: give device-memory in bytes"),
    ],
)
def test_bad_options_are_clear_errors(data, options, layers, message):
    # Options alone are checked when the pipeline is parsed (PipelineError), the rest when the pass runs.
    params, x = data
    with pytest.raises((PassError, PipelineError), match=message):
        run_pipeline(sgd_step, (params, x), options, layers)


def test_inter_op_without_layers_is_an_error(data):
    params, x = data
    module = air.lower(sgd_step, params, x)
    with pytest.raises(PassError, match="run autopar-cluster-layers before autopar-inter-op"):
        passes.run(module, "builtin.module(autopar-inline,autopar-inter-op{cluster=1x2})")


def test_more_layers_than_ops_is_an_error(data):
    params, x = data
    with pytest.raises(PassError, match=r"cannot cluster into 50 layers: the forward pass has only 15 ops"):
        clustered(sgd_step, params, x, layers=50)
    # Blocks end at the 4 dots; the last also holds the loss. 3 layers within eps=0 of the mean cannot be
    # cut (one layer gets two dots), and the error says which eps would do.
    module = air.lower(sgd_step, params, x)
    with pytest.raises(
        PassError, match=r"cannot cut 4 blocks into 3 layers within eps=0 .* needs eps >= 0\.\d"
    ):
        passes.run(module, "builtin.module(autopar-inline,autopar-cluster-layers{num-layers=3 eps=0})")


def head_step(params, head, x):
    """An MLP whose last matmul (an LM head over a wide vocabulary) outweighs the rest together."""

    def loss(params, head, x):
        for w in params:
            x = jnp.tanh(x @ w)
        return jnp.sum((x @ head) ** 2)

    value, (grads, head_grad) = jax.value_and_grad(loss, argnums=(0, 1))(params, head, x)
    return value, [p - 0.1 * g for p, g in zip(params, grads, strict=True)], head - 0.1 * head_grad


def test_a_block_heavier_than_the_bound_is_a_layer_of_its_own(data):
    # Regression (moe-380m --layers 16 failed: its 16x1024x32000 LM-head matmul is 2.15x the mean of 16
    # layers, over the (1 + eps) = 1.6x bound). Here the head is 32x one hidden matmul, 3.6x the mean of
    # 5 layers: clustering must cut around it instead of failing, the head alone in the last layer.
    params, x = data
    head = jnp.ones((WIDTH, 32 * WIDTH)) * 0.01
    module = clustered(head_step, params, head, x, layers=5)
    dots = [
        (layer, part) for name, layer, part in layers_and_parts(module) if name == "stablehlo.dot_general"
    ]
    forward_layers = [layer for layer, part in dots if part == "forward"]
    assert forward_layers == [0, 1, 2, 3, 4]
    passes.run(module, "builtin.module(autopar-inter-op{cluster=1x2 micro-batches=2 stage-cost=analytic})")
    assert "autopar.inter_op.plan" in module.operation.attributes


def test_pipeshard_method_plans_through_the_passes(data):
    from autopar.api.pipeshard import AutoLayerOption, PipeshardParallel, UniformStageOption

    params, x = data
    method = PipeshardParallel(
        num_micro_batches=2, layer_option=AutoLayerOption(layer_num=4), stage_option=UniformStageOption(2)
    )
    module = passes.run(air.lower(sgd_step, params, x), method.pipeline((1, 4)))
    assert sorted(map(tuple, stage_meshes(module).values()))[0] == (0, 1)
    assert len(ir.ArrayAttr(module.operation.attributes["autopar.inter_op.plan"])) == 2
    out = SequentialExecutor(module, num_micro_batches=1)(*params, x)
    np.testing.assert_allclose(out[0], jax.jit(sgd_step)(params, x)[0], rtol=1e-5)
    with pytest.raises(ValueError, match="layer_option must be"):
        PipeshardParallel(layer_option="auto")
