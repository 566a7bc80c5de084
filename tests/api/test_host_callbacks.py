"""Steps that call back into Python (`jax.debug.print`, `jax.pure_callback`, `io_callback`): they run
under every method as under `jax.jit`, once per run of the part that holds them, and a process that exits
right after a step waits for its callbacks as JAX's own dispatch makes it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import io_callback

import autopar
from autopar.errors import AutoparError
from autopar.runtime.sequential import SequentialExecutor
from autopar.runtime.step import MicroBatchCombineError

PYTHON_DIR = Path(autopar.__file__).resolve().parents[1]
BATCH, MICRO_BATCHES = 16, 2
TWO_STAGES = dict(
    num_micro_batches=MICRO_BATCHES,
    layer_option=autopar.AutoLayerOption(layer_num=2),
    stage_option=autopar.UniformStageOption(num_stages=2),
)


def _data():
    rng = np.random.default_rng(0)
    w = [jnp.asarray(rng.standard_normal((16, 16)) * 0.3, jnp.float32) for _ in range(2)]
    x = jnp.asarray(rng.standard_normal((BATCH, 16)), jnp.float32)
    return w, x, jnp.tanh(x)


def _loss(w, x, y):
    return jnp.mean((jnp.tanh(jnp.tanh(x @ w[0]) @ w[1]) - y) ** 2)


def printing_step(w, x, y):
    loss, grads = jax.value_and_grad(_loss)(w, x, y)
    jax.debug.print("loss is {l}", l=loss)
    # A callback whose result the update reads: it runs once per step, in the part after the micro-batches.
    scale = jax.pure_callback(lambda: np.float32(0.5), jax.ShapeDtypeStruct((), jnp.float32))
    return [p - scale * g for p, g in zip(w, grads, strict=True)], loss


def _printed_losses(out: str) -> list[float]:
    return [float(line.split()[-1]) for line in out.splitlines() if line.startswith("loss is ")]


def test_pipelined_step_prints_each_micro_batch_loss_and_trains_like_jit(capfd):
    w, x, y = _data()
    f = autopar.parallelize(
        printing_step, method=autopar.PipeshardParallel(**TWO_STAGES), batch_argnums=(1, 2)
    )
    got = jax.block_until_ready(f(w, x, y))
    jax.effects_barrier()
    printed = _printed_losses(capfd.readouterr().out)
    want = jax.jit(printing_step)(w, x, y)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # The print sits in the forward part, which runs once per micro-batch on its half of the batch.
    half = BATCH // MICRO_BATCHES
    expected = [float(_loss(w, x[i : i + half], y[i : i + half])) for i in range(0, BATCH, half)]
    np.testing.assert_allclose(sorted(printed), sorted(expected), rtol=1e-5)
    # "auto" would run the two meshes in processes of their own; the callbacks live in this one.
    assert isinstance(f._last_executor, SequentialExecutor)


def test_prints_in_a_loop_and_in_a_branch_not_taken_print_as_under_jit(capfd):
    # The loop is unrolled: its prints read only constants, and outlining once dropped them.
    def step(w, x, y):
        loss, grads = jax.value_and_grad(_loss)(w, x, y)
        jax.lax.cond(loss > 100.0, lambda: jax.debug.print("never"), lambda: None)

        def body(carry, i):
            jax.debug.print("iteration {i}", i=i)
            return carry, None

        jax.lax.scan(body, 0.0, jnp.arange(3))
        return [p - 0.1 * g for p, g in zip(w, grads, strict=True)], loss

    w, x, y = _data()
    f = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES), batch_argnums=(1, 2))
    jax.block_until_ready(f(w, x, y))
    jax.effects_barrier()
    lines = capfd.readouterr().out.splitlines()
    # In the forward part: once per micro-batch, as each micro-batch's step would print.
    assert sorted(lines) == sorted([f"iteration {i}" for i in range(3)] * MICRO_BATCHES), lines


@pytest.mark.parametrize("callback", ["pure_callback", "io_callback"])
def test_a_host_value_read_in_the_forward_part_scales_every_micro_batch(callback):
    # A callback that reads nothing was taken for the constant 0: `scale * loss` was then labelled "the
    # same in every micro-batch", and the loss and every gradient came out wrong, silently.
    call = jax.pure_callback if callback == "pure_callback" else io_callback

    def step(w, x, y):
        scale = call(lambda: np.float32(2.0), jax.ShapeDtypeStruct((), jnp.float32))
        loss, grads = jax.value_and_grad(lambda w: scale * _loss(w, x, y))(w)
        return [p - 0.1 * g for p, g in zip(w, grads, strict=True)], loss

    w, x, y = _data()
    f = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES), batch_argnums=(1, 2))
    got, want = f(w, x, y), jax.jit(step)(w, x, y)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_io_callback_runs_per_micro_batch_in_the_forward_part():
    seen: list[float] = []

    def step(w, x, y):
        loss, grads = jax.value_and_grad(_loss)(w, x, y)
        io_callback(lambda v: seen.append(float(v)), None, loss)
        return [p - 0.1 * g for p, g in zip(w, grads, strict=True)], loss

    w, x, y = _data()
    f = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES), batch_argnums=(1, 2))
    jax.block_until_ready(f(w, x, y))
    jax.effects_barrier()
    assert len(seen) == MICRO_BATCHES
    np.testing.assert_allclose(np.mean(seen), float(jax.jit(step)(w, x, y)[1]), rtol=1e-5)


def test_callbacks_in_worker_processes_are_refused_by_name():
    w, x, y = _data()
    method = autopar.PipeshardParallel(**TWO_STAGES, executor="processes")
    f = autopar.parallelize(printing_step, method=method, batch_argnums=(1, 2))
    with pytest.raises(AutoparError, match=r"^printing_step calls back into Python, .*executor='in-process'"):
        f(w, x, y)


def test_a_callback_on_each_micro_batch_s_examples_is_not_combined_silently():
    # autopar cannot know what the Python function does with the examples (a mean over them would differ
    # per micro-batch), so an output computed from its result must be declared.
    def step(w, x, y):
        centred = x - jax.pure_callback(
            lambda a: a.mean(0).astype(np.float32), jax.ShapeDtypeStruct((16,), jnp.float32), x
        )
        loss, grads = jax.value_and_grad(_loss)(w, centred, y)
        return [p - 0.1 * g for p, g in zip(w, grads, strict=True)], loss

    w, x, y = _data()
    f = autopar.parallelize(step, method=autopar.PipeshardParallel(**TWO_STAGES), batch_argnums=(1, 2))
    with pytest.raises(MicroBatchCombineError, match=r"custom_call @xla_ffi_python_cpu_callback on example"):
        f(w, x, y)


@pytest.mark.parametrize(
    "method",
    [
        "autopar.ShardParallel(mesh_shape=(2, 4))",
        "autopar.PipeshardParallel(num_micro_batches=2, layer_option=autopar.AutoLayerOption(layer_num=2))",
    ],
)
def test_a_script_that_exits_right_after_its_step_still_prints(method):
    # The step's outputs are never read: before the run's token went to JAX's dispatch, the process
    # aborted at exit ("terminate called without an active exception", code 134) and printed nothing.
    script = textwrap.dedent(f"""
        import jax, jax.numpy as jnp
        import autopar

        def step(w, x):
            loss = jnp.mean(jnp.tanh(x @ w) ** 2)
            jax.debug.print("loss is {{l}}", l=loss)
            return w * 0.5, loss

        autopar.parallelize(step, method={method})(jnp.ones((16, 8)) * 0.1, jnp.ones((32, 16)))
    """)
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))  # the conftest's 8 virtual CPU devices too
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("loss is ") >= 1, r.stdout


def test_compiling_a_module_that_calls_back_without_its_callbacks_is_an_error_not_a_crash():
    w, x, y = _data()
    module = autopar.parallelize(printing_step, method=autopar.ShardParallel(mesh_shape=(2, 4))).lower(
        w, x, y
    )
    with pytest.raises(ValueError, match=r"calls back into Python .*\(host_callbacks="):
        autopar.runtime.compile(module.module)


def test_a_plan_that_prints_is_explained_diffed_and_reported(tmp_path):
    # The explanation re-solves the plan on a stripped copy of the module, which lost the maximal mesh a
    # print is placed on: "unknown mesh: @maximal_mesh_0", raised raw from MLIR.
    w, x, y = _data()
    f = autopar.parallelize(printing_step, method=autopar.ShardParallel(mesh_shape=(2, 4)))
    plan = f.get_execution_plan(w, x, y)
    e = plan.explain("w[0]")
    assert e.target == "w[0]" and str(e).startswith("w[0]: argument w[0]")
    assert plan.diff(plan).layouts == ()
    plan.report(tmp_path / "plan.html")
    assert (tmp_path / "plan.html").stat().st_size > 0


@pytest.mark.parametrize(
    "method",
    [autopar.ShardParallel(mesh_shape=(2, 4)), autopar.PipeshardParallel(**TWO_STAGES)],
    ids=["shard", "pipeshard"],
)
def test_ordered_effects_are_refused_by_name(method):
    def step(w, x, y):
        loss, grads = jax.value_and_grad(_loss)(w, x, y)
        jax.debug.print("loss is {l}", l=loss, ordered=True)
        return [p - 0.1 * g for p, g in zip(w, grads, strict=True)], loss

    w, x, y = _data()
    f = autopar.parallelize(step, method=method, batch_argnums=(1, 2))
    with pytest.raises(AutoparError, match=r"^step has ordered side effects .* drop ordered=True"):
        f(w, x, y)
