"""Every error a parallelize user meets, in the API's own terms: pytree paths, the API's option names, what
to do, and no traceback through autopar's passes."""

import os
import subprocess
import sys
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import autopar
from autopar.errors import ArgumentError, PassError

PYTHON_DIR = Path(autopar.__file__).resolve().parents[1]


def step(params, batch):
    loss = jnp.mean(batch["image"] @ params["w"])
    return jax.tree.map(lambda p: p - 0.1, params), loss


PARAMS = {"w": jnp.ones((32, 8))}


def two_layers(params, batch):
    """A two-layer SGD step with a backward pass (what PipeshardParallel cuts into stages)."""

    def loss(p):
        return jnp.mean(jnp.tanh(jnp.tanh(batch["image"] @ p["w"]) @ p["v"]) ** 2)

    value, g = jax.value_and_grad(loss)(params)
    return jax.tree.map(lambda a, b: a - 0.1 * b, params, g), value


def test_a_batch_that_does_not_divide_names_its_path_and_the_method() -> None:
    f = autopar.parallelize(step, method=autopar.DataParallel())
    with pytest.raises(PassError) as info:
        f(PARAMS, {"image": jnp.ones((12, 32))})
    assert str(info.value) == (
        "DataParallel: batch['image'] (12x32): batch dim 0 of size 12 does not divide over the 8 devices "
        "DataParallel (force_data_parallel) splits it over; use a batch size that is a multiple of 8"
    )
    # Raised from the user's call: no frame of the passes (or of autopar at all but its entry point).
    frames = traceback.extract_tb(info.value.__traceback__)
    package = str(Path(autopar.__file__).resolve().parent) + os.sep  # wherever the checkout is named
    assert not any(f.filename.startswith(package + "passes" + os.sep) for f in frames)
    assert len([f for f in frames if f.filename.startswith(package)]) == 1
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_zero_options_are_named_as_the_api_names_them() -> None:
    f = autopar.parallelize(step, method=autopar.Zero2Parallel(mesh_shape=(2, 4)))
    with pytest.raises(PassError, match=r"8 devices Zero2Parallel \(force_data_parallel\) splits it over"):
        f(PARAMS, {"image": jnp.ones((12, 32))})


def test_pipeshard_without_layers_names_layer_option() -> None:
    f = autopar.parallelize(step, method=autopar.PipeshardParallel(num_micro_batches=2))
    with pytest.raises(PassError) as info:
        f(PARAMS, {"image": jnp.ones((16, 32))})
    assert str(info.value) == (
        "PipeshardParallel needs the step cut into layers: pass layer_option=AutoLayerOption(layer_num=N), "
        "or mark the boundaries yourself with autopar.mark_pipeline_boundary() and layer_option='manual'"
    )


def test_pipeshard_layer_counts_are_named_as_the_api_names_them() -> None:
    # The pass's "use num-layers <= 7" named an option PipeshardParallel's users never set.
    method = autopar.PipeshardParallel(
        num_micro_batches=2, layer_option=autopar.AutoLayerOption(layer_num=50)
    )
    f = autopar.parallelize(step, method=method)
    expected = (
        r"into 50 layers: the forward pass has only \d+ ops; use layer_option=AutoLayerOption\(layer_num="
    )
    with pytest.raises(PassError, match=expected):
        f(PARAMS, {"image": jnp.ones((16, 32))})
    nothing = autopar.parallelize(lambda params, batch: params, method=method)
    with pytest.raises(PassError, match=r"^PipeshardParallel: the step computes nothing from its arguments"):
        nothing(PARAMS, {"image": jnp.ones((16, 32))})


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: autopar.AutoLayerOption(layer_num=-1),
            ValueError,
            "AutoLayerOption: layer_num must be >= 1, got -1",
        ),
        (lambda: autopar.AutoLayerOption(layer_num=0), ValueError, "layer_num must be >= 1, got 0"),
        (lambda: autopar.AutoLayerOption(layer_num=2.5), TypeError, "layer_num must be an int >= 1, got 2.5"),
        (lambda: autopar.AutoLayerOption(layer_num="2"), TypeError, "layer_num must be an int >= 1, got '2'"),
        (
            lambda: autopar.AutoLayerOption(2, eps=-1),
            ValueError,
            "AutoLayerOption: eps must be a number >= 0",
        ),
        (lambda: autopar.UniformStageOption(num_stages=0), ValueError, "num_stages must be >= 1, got 0"),
    ],
)
def test_stage_and_layer_options_are_checked_when_made(make, error, message) -> None:
    # They reached the passes, which named their own options ("num-layers must be >= 0"), or ran:
    # UniformStageOption(num_stages=0) silently let the stage DP choose.
    with pytest.raises(error, match=message):
        make()
    assert autopar.AutoLayerOption(layer_num=np.int64(2)).layer_num == 2  # numpy ints are ints


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"solver": "gurobi"}, "solver='gurobi': use one of 'auto', 'ilp', 'heuristic'"),
        ({"device_flops": -1.0}, r"device_flops=-1.0: give a positive number \(FLOP/s, bytes/s\)"),
        ({"device_memory_bandwidth": "fast"}, "device_memory_bandwidth='fast': give a positive number"),
    ],
)
def test_auto_sharding_options_are_checked_when_made(fields, message) -> None:
    # They reached the pipeline: "option 'solver' of pass 'autopar-shard' must be one of ...", or a bare
    # "could not convert string to float: 'fast'".
    with pytest.raises(ValueError, match=message):
        autopar.AutoShardingOption(**fields)
    from autopar.api import methods
    from autopar.passes.intra_op import config

    assert methods.SOLVERS == config.SOLVERS  # the API's copy names the pass's solvers


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # The pass said "device_flops (FLOP/s), device-memory (bytes) and ... must be > 0".
        ({"memory_per_device_gib": -1}, "memory_per_device_gib must be a positive number of GiB, got -1"),
        # "cluster_shape (-1, 8) needs -8 devices".
        ({"cluster_shape": (-1, 8)}, r"cluster_shape must be \(hosts, devices per host\), positive ints"),
        ({"cluster_shape": (8,)}, "cluster_shape must be"),
        ({"virtual_stages_per_mesh": 0}, "virtual_stages_per_mesh must be an int >= 1, got 0"),
        # The pass said it on the first call: "... needs at least 8 layers, got 4: cut more layers
        # (autopar-cluster-layers num-layers) or use fewer chunks", names a PipeshardParallel user never set.
        (
            {
                "pipeline_schedule": "interleaved-1f1b",
                "stage_option": autopar.UniformStageOption(num_stages=4),
                "layer_option": autopar.AutoLayerOption(layer_num=4),
            },
            r"virtual_stages_per_mesh=2 stages on each of num_stages=4 meshes, so it needs "
            r"AutoLayerOption\(layer_num=...\) >= 8, got 4",
        ),
    ],
)
def test_pipeshard_fields_are_checked_when_made(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        autopar.PipeshardParallel(num_micro_batches=2, **fields)
    assert autopar.PipeshardParallel(cluster_shape=(np.int64(1), 8)).cluster_shape == (1, 8)
    listed = autopar.PipeshardParallel(cluster_shape=[1, 8], submesh_shapes=["1x4"])
    assert hash(listed) == hash(autopar.PipeshardParallel(cluster_shape=(1, 8), submesh_shapes=("1x4",)))


def test_a_model_the_cluster_cannot_hold_names_memory_per_device_gib_in_readable_units() -> None:
    # It said "needs at least 0.00 GiB per device ... devices have 0.00 GiB; ... remat=true or a larger
    # device-memory (bytes)": a fixed unit and two options PipeshardParallel users cannot set.
    method = autopar.PipeshardParallel(
        num_micro_batches=2, layer_option=autopar.AutoLayerOption(layer_num=2), memory_per_device_gib=1e-6
    )

    params = {"w": jnp.ones((32, 32)), "v": jnp.ones((32, 8))}
    with pytest.raises(PassError) as info:
        autopar.parallelize(two_layers, method=method)(params, {"image": jnp.ones((16, 32))})
    text = str(info.value)
    assert text.startswith("PipeshardParallel: the 1x8 cluster cannot hold the model: it needs at least ")
    assert "devices have 1.0 KiB; " in text and " in all) " in text and "GiB" not in text
    assert text.endswith("use more devices, smaller (more) micro-batches or a larger memory_per_device_gib")


def test_pass_names_and_options_do_not_reach_parallelize_users() -> None:
    # "pass 'the planner': cluster profile ... does not exist" and "num-stages=3 is more than the 2 layers:
    # ... cluster into more layers" named passes and options these users never see.
    method = autopar.ShardParallel(
        auto_sharding_option=autopar.AutoShardingOption(cluster_profile="/no.json")
    )
    with pytest.raises(autopar.AutoparError) as info:
        autopar.parallelize(step, method=method)(PARAMS, {"image": jnp.ones((16, 32))})
    assert str(info.value) == "ShardParallel: cluster profile '/no.json' does not exist"
    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=2),
        stage_option=autopar.UniformStageOption(num_stages=3),
    )

    with pytest.raises(PassError) as info:
        autopar.parallelize(two_layers, method=method)(
            {"w": jnp.ones((32, 32)), "v": jnp.ones((32, 8))}, {"image": jnp.ones((16, 32))}
        )
    assert str(info.value) == (
        "PipeshardParallel: UniformStageOption(num_stages=3) asks for more stages than the 2 layers: use "
        "num_stages <= 2, or more layers (AutoLayerOption(layer_num=...))"
    )


@pytest.mark.parametrize(
    ("devices", "submesh_shapes", "message"),
    [
        (
            3,
            (),
            "UniformStageOption(num_stages=2) does not divide the 3 devices of the cluster: use num_stages 1",
        ),
        (
            6,
            (),
            "UniformStageOption(num_stages=2) needs submeshes of 3 devices, which the submesh shapes "
            "(1x1, 1x2, 1x6) do not offer: use num_stages 1",
        ),
        (
            8,
            ("1x1", "1x2"),
            "UniformStageOption(num_stages=2) needs submeshes of 4 devices, which the submesh shapes "
            "(1x1, 1x2) do not offer: leave stage_option out (the stage DP chooses), or add 1x4 to "
            "PipeshardParallel's submesh_shapes",
        ),
    ],
)
def test_a_stage_count_the_devices_cannot_hold_says_which_would_run(devices, submesh_shapes, message) -> None:
    # They said "num-stages=2 does not divide the 3 devices of the cluster" and nothing to do.
    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=2),
        stage_option=autopar.UniformStageOption(num_stages=2),
        submesh_shapes=submesh_shapes,
    )
    step = autopar.parallelize(two_layers, method=method, devices=jax.devices()[:devices])
    with pytest.raises(PassError) as info:
        step({"w": jnp.ones((32, 32)), "v": jnp.ones((32, 8))}, {"image": jnp.ones((16, 32))})
    assert str(info.value) == f"PipeshardParallel: {message}"


def test_a_layer_count_that_disagrees_with_marked_boundaries_names_the_layer_option() -> None:
    # It said "num-layers=2 disagrees ...: drop num-layers or set it to 3".
    def three_layers(params, batch):
        def loss(p):
            h = autopar.mark_pipeline_boundary(jnp.tanh(batch["image"] @ p["w"]))
            h = autopar.mark_pipeline_boundary(jnp.tanh(h @ p["u"]))
            return jnp.mean(h @ p["v"])

        value, g = autopar.value_and_grad(loss)(params)
        return jax.tree.map(lambda a, b: a - 0.1 * b, params, g), value

    method = autopar.PipeshardParallel(num_micro_batches=2, layer_option=autopar.AutoLayerOption(layer_num=2))
    params = {"w": jnp.ones((32, 32)), "u": jnp.ones((32, 32)), "v": jnp.ones((32, 8))}
    with pytest.raises(PassError) as info:
        autopar.parallelize(three_layers, method=method)(params, {"image": jnp.ones((16, 32))})
    assert "AutoLayerOption(layer_num=2) disagrees with the 2 pipeline boundaries marked by hand" in str(
        info.value
    )
    assert str(info.value).endswith("(3 layers): use layer_option='manual', or AutoLayerOption(layer_num=3)")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: autopar.ShardParallel(num_micro_batches=4),
            r"^ShardParallel\(num_micro_batches=...\): .*run under PipeshardParallel",
        ),
        (lambda: autopar.Zero2Parallel(num_micro_batches=2), r"^Zero2Parallel\(num_micro_batches=...\)"),
        (
            lambda: autopar.DataParallel(devices=None),
            r"^DataParallel\(devices=...\): the devices go to autopar.parallelize",
        ),
        (lambda: autopar.PipeshardParallel(devices=None), r"^PipeshardParallel\(devices=...\)"),
        (
            lambda: autopar.PipeshardParallel(default_auto_sharding_option=None),
            "it is auto_sharding_option here",
        ),
        (
            lambda: autopar.PipeshardParallel(stage_input_shardings=None),
            "not supported: the stages' input layouts",
        ),
    ],
)
def test_alpa_arguments_autopar_takes_elsewhere_say_where(make, message) -> None:
    # Alpa's methods took them; here they were "__init__() got an unexpected keyword argument".
    with pytest.raises(TypeError, match=message):
        make()


def test_the_suggested_gradient_accumulation_runs_as_the_full_batch() -> None:
    method = autopar.PipeshardParallel(
        num_micro_batches=4,
        layer_option=autopar.AutoLayerOption(layer_num=1),
        stage_option=autopar.UniformStageOption(num_stages=1),
        auto_sharding_option=autopar.AutoShardingOption(force_data_parallel=True),
    )
    params = {"w": jnp.ones((32, 32)) * 0.1, "v": jnp.ones((32, 8)) * 0.1}
    batch = {"image": jnp.linspace(-1, 1, 64 * 32).reshape(64, 32)}
    got = autopar.parallelize(two_layers, method=method)(params, batch)
    want = jax.jit(two_layers)(params, batch)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_devices_that_are_not_devices_are_refused_by_name() -> None:
    with pytest.raises(
        TypeError, match=r"devices must be jax devices \(e.g. jax.devices\(\)\[:4\]\), got 'cpu'"
    ):
        autopar.parallelize(step, devices="cpu")
    for bad in (4, jax.devices()[0], [None]):  # a count, one device, not a device
        with pytest.raises(TypeError, match="devices must be jax devices"):
            autopar.parallelize(step, devices=bad)
    # A generator is read once: the devices it gives are the ones the plan runs on.
    f = autopar.parallelize(
        lambda x: x * 2, devices=(d for d in jax.devices()[:4]), method=autopar.DataParallel()
    )
    assert f(jnp.ones(8)).sharding.mesh.devices.size == 4


def test_micro_batches_that_do_not_divide_name_the_path() -> None:
    method = autopar.PipeshardParallel(num_micro_batches=3, layer_option=autopar.AutoLayerOption(layer_num=2))
    f = autopar.parallelize(step, method=method)
    with pytest.raises(ArgumentError) as info:
        f(PARAMS, {"image": jnp.ones((16, 32))})
    assert str(info.value) == (
        "batch['image'] has batch dim 16, which 3 micro-batches do not divide: use a batch size divisible "
        "by num_micro_batches=3"
    )


def test_an_int_mesh_shape_is_a_one_axis_mesh() -> None:
    assert autopar.ShardParallel(mesh_shape=8).mesh_shape == (8,)
    assert autopar.DataParallel(mesh_shape=8).mesh_shape == (8,)
    with pytest.raises(ValueError, match=r"mesh_shape must be positive ints like 8 or \(2, 4\), got '8'"):
        autopar.ShardParallel(mesh_shape="8")
    with pytest.raises(ValueError, match=r"got \(2, 0\)"):
        autopar.ShardParallel(mesh_shape=(2, 0))
    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=8))
    f(PARAMS, {"image": jnp.ones((16, 32))})


def test_one_visible_cpu_device_names_xla_flags() -> None:
    code = (
        "import jax.numpy as jnp, autopar\n"
        "try:\n"
        "    autopar.parallelize(lambda x: x, method=autopar.ShardParallel(mesh_shape=(2, 4)))\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(PYTHON_DIR), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == (
        "mesh shape 2x4 needs 8 devices but 1 devices were given: pass a mesh shape whose product is 1, or 8 "
        "devices; only one CPU device is visible: set XLA_FLAGS=--xla_force_host_platform_device_count=8 "
        "before jax is imported to get more"
    ), out.stderr
