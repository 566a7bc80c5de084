"""The process-per-mesh executor (runtime/processes.py): the same results as the in-process executor, values
that stay on their worker, workers confined to their cores, and failures that end in a clear error."""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from benchmarks.models.small import tanh_mlp_adam

import autopar
from autopar.runtime.processes import ProcessExecutor
from autopar.runtime.remote_array import RemoteArray
from autopar.runtime.sequential import SequentialExecutor
from autopar.runtime.step import ExecutionError
from numeric import assert_trees_close

WIDTH, LAYERS, BATCH, MICRO_BATCHES = 32, 4, 16, 4


@pytest.fixture(scope="module")
def planned():
    return planned_module()


def planned_module():
    """(module, flat arguments, number of parameter and state leaves) of a 2-stage 1F1B plan, one device
    per stage."""
    adam_step, args = tanh_mlp_adam(WIDTH, LAYERS, BATCH, lr=1e-2)
    method = autopar.PipeshardParallel(
        num_micro_batches=MICRO_BATCHES,
        layer_option=autopar.AutoLayerOption(layer_num=LAYERS),
        stage_option=autopar.UniformStageOption(num_stages=2),
        cluster_shape=(1, 2),
    )
    f = autopar.parallelize(adam_step, method=method, devices=jax.devices()[:2], batch_argnums=(2,))
    module = f.lower(*args).module
    flat = jax.tree.leaves(args)
    return module, flat, len(jax.tree.leaves(args[:2]))


@pytest.fixture(scope="module")
def executor(planned):
    module, _, _ = planned
    exe = ProcessExecutor(module, jax.devices()[:2])
    yield exe
    exe.close()


def test_three_steps_equal_the_in_process_executor_and_state_stays_on_its_worker(planned, executor):
    module, flat, state_leaves = planned
    reference = SequentialExecutor(module, jax.devices()[:2])
    got, want = list(flat), list(flat)
    for step in range(3):
        got = executor(*got[:state_leaves], *flat[state_leaves:])
        want = reference(*want[:state_leaves], *flat[state_leaves:])
        assert_trees_close([np.asarray(x) for x in got], want, rtol=1e-5, atol=1e-6)
        assert all(isinstance(x, RemoteArray) for x in got)
        batch_bytes = sum(x.nbytes for x in flat[state_leaves:])
        if step > 0:  # parameters and Adam state stayed where they were: only the batch moved
            assert executor.last_host_bytes == batch_bytes
    # Each parameter lives on one worker only, the one whose stage owns it.
    owners = {x.worker for x in got[: len(flat) // 3]}
    assert owners == {0, 1}


def test_workers_are_confined_to_their_cores_and_run_their_own_devices(planned):
    module, _, _ = planned
    cores = sorted(os.sched_getaffinity(0))
    exe = ProcessExecutor(module, jax.devices()[:2])
    try:
        allowed = [_allowed_cores(pid) for pid in exe.pids]
        if len(cores) >= 2:
            assert allowed[0].isdisjoint(allowed[1]) and allowed[0] | allowed[1] <= set(cores)
        assert exe.meshes == [(0,), (1,)]
        text = exe.as_text()
        assert text.count("// @stage_") == len(exe.stage_names) and "HloModule" in text
    finally:
        exe.close()


def _allowed_cores(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


def test_remote_arrays_behave_as_arrays(planned, executor):
    _, flat, state_leaves = planned
    out = executor(*flat)
    loss, w0 = out[-1], out[0]
    assert isinstance(loss, RemoteArray) and loss.shape == () and loss.dtype == np.float32
    value = float(loss)
    assert np.asarray(loss) == pytest.approx(value)
    assert float(jnp.add(loss, 1.0)) == pytest.approx(value + 1)
    assert float(jax.jit(lambda a: a * 2)(loss)) == pytest.approx(2 * value)
    assert (
        float(loss + 1) == pytest.approx(value + 1)
        and (w0 @ np.eye(WIDTH, dtype=np.float32)).shape == w0.shape
    )
    assert w0.nbytes == WIDTH * WIDTH * 4 and sum(w0.bytes_by_device().values()) == w0.nbytes
    assert {d.id for d in w0.devices()} <= {0, 1}
    # Everyday uses of a loss and a weight: formatting, item, methods, iteration (`list(w0)` never
    # returned: jax's indexing clamps, so the __getitem__ protocol never ended), pickling as the value.
    assert f"{loss:.3f}" == f"{value:.3f}" and loss.item() == pytest.approx(value)
    assert round(loss, 3) == pytest.approx(round(value, 3)) and divmod(loss, 1.0)[0] == value // 1
    assert w0.astype(jnp.bfloat16).dtype == jnp.bfloat16 and float(w0.mean()) == pytest.approx(np.mean(w0))
    assert len(list(itertools.islice(w0, WIDTH + 1))) == WIDTH and len(w0.tolist()) == WIDTH
    with pytest.raises(TypeError, match="0-d"):
        iter(loss)
    with pytest.raises(TypeError, match="unsized"):
        len(loss)
    assert float(pickle.loads(pickle.dumps(loss))) == pytest.approx(value)
    with pytest.raises(AttributeError, match="lives on mesh worker"):
        w0.sharding  # noqa: B018 (the fetched copy's sharding is not where it lives)
    w0.delete()
    assert w0.is_deleted()
    with pytest.raises(ExecutionError, match="was deleted"):
        np.asarray(w0)


def test_a_failing_part_names_its_worker_and_the_next_step_runs(planned, executor):
    _, flat, _ = planned
    bad = list(flat)
    bad[0] = np.zeros((WIDTH + 1, WIDTH), np.float32)  # the first layer's weight, wrong shape
    began = time.perf_counter()
    failed = r"mesh worker 0 \(devices \[0\]\) during step \d+: TypeError: argument \d+: expected shape"
    with pytest.raises(ExecutionError, match=failed):
        executor(*bad)
    assert time.perf_counter() - began < 30
    out = executor(*flat)  # the other worker was told to abandon the step; both serve the next one
    assert np.isfinite(float(out[-1]))


def test_a_killed_worker_is_named_and_the_executor_closes(planned):
    module, flat, _ = planned
    exe = ProcessExecutor(module, jax.devices()[:2])
    exe(*flat)
    os.kill(exe.pids[1], signal.SIGKILL)
    began = time.perf_counter()
    died = r"mesh worker 1 \(devices \[1\]\) during step 2 exited with code -9"
    with pytest.raises(ExecutionError, match=died):
        exe(*flat)
    assert time.perf_counter() - began < 30
    with pytest.raises(ExecutionError, match="the executor is closed"):
        exe(*flat)


def test_a_worker_dead_before_the_next_step_is_named_at_its_send(planned):
    # Killed and gone before the step starts, the worker's socket is closed: the driver's first send to
    # it fails (it was a bare BrokenPipeError, seen in a full-suite run) and must name the worker instead.
    module, flat, _ = planned
    exe = ProcessExecutor(module, jax.devices()[:2])
    exe(*flat)
    os.kill(exe.pids[1], signal.SIGKILL)
    _wait_until_dead([exe.pids[1]], seconds=30)
    died = r"mesh worker 1 \(devices \[1\]\) during step 2 exited with code -9"
    with pytest.raises(ExecutionError, match=died):
        exe(*flat)
    with pytest.raises(ExecutionError, match="the executor is closed"):
        exe(*flat)


def test_the_executor_option_picks_the_runtime(planned):
    _, flat, _ = planned
    adam_step, (params, state, batch) = tanh_mlp_adam(WIDTH, LAYERS, BATCH, lr=1e-2)
    several_cores = len(os.sched_getaffinity(0)) > 1
    results = {}
    for choice, kind in (
        ("in-process", SequentialExecutor),
        ("processes", ProcessExecutor),
        ("auto", ProcessExecutor if several_cores else SequentialExecutor),
    ):
        method = autopar.PipeshardParallel(
            num_micro_batches=MICRO_BATCHES,
            layer_option=autopar.AutoLayerOption(layer_num=LAYERS),
            stage_option=autopar.UniformStageOption(num_stages=2),
            cluster_shape=(1, 2),
            executor=choice,
        )
        f = autopar.parallelize(adam_step, method=method, devices=jax.devices()[:2], batch_argnums=(2,))
        results[choice] = f(params, state, batch)
        assert isinstance(f._cache[next(iter(f._cache))].executable, kind)
    assert_trees_close(results["processes"], results["in-process"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="executor must be 'auto', 'processes' or 'in-process'"):
        autopar.PipeshardParallel(executor="threads")


DRIVER = """
import os, sys, time
sys.path[:0] = sys.argv[1:]
import conftest  # 8 virtual CPU devices
import jax
from test_processes import planned_module
from autopar.runtime.processes import ProcessExecutor
module, flat, _ = planned_module()
exe = ProcessExecutor(module, jax.devices()[:2])
exe(*flat)
print(*exe.pids, flush=True)
time.sleep(600)
"""


def test_workers_exit_when_their_driver_is_killed():
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tests), str(tests / "runtime")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pids = [int(p) for p in driver.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        driver.kill()
        driver.wait()
    _wait_until_dead(pids, seconds=20)
    assert not any(_alive(pid) for pid in pids)


def _wait_until_dead(pids: list[int], seconds: float) -> None:
    """Until every one of `pids` has exited (a zombie counts: its sockets are closed) or `seconds` pass."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_values_cross_meshes_as_their_transfer_plans_say():
    """Two 4-device stages: every value crossing goes as the slices its autopar.transfer plan lists, each
    once (a replicated destination all-gathers inside its mesh), so the bytes the workers send are the plans'
    sends; the results equal the in-process executor's, which moves the same plans."""
    from jaxlib.mlir import ir

    from autopar.runtime.executable import element_dtype

    adam_step, args = tanh_mlp_adam(WIDTH, LAYERS, BATCH, lr=1e-2, seed=3)
    method = autopar.PipeshardParallel(
        num_micro_batches=MICRO_BATCHES,
        layer_option=autopar.AutoLayerOption(layer_num=LAYERS),
        stage_option=autopar.UniformStageOption(num_stages=2),
        submesh_shapes=("1x4",),
    )
    module = autopar.parallelize(adam_step, method=method, batch_argnums=(2,)).lower(*args).module
    flat = jax.tree.leaves(args)
    exe = ProcessExecutor(module, jax.devices())
    try:
        got = exe(*flat)
        sent = sum(n for r in exe.last_reports for n in r.bytes_sent.values())
        assert_trees_close([np.asarray(v) for v in got], SequentialExecutor(module, jax.devices())(*flat))
        planned, seen = 0, set()
        for call in exe.program.calls:
            for t in call.transfers:
                if t is None or t.result in seen:
                    continue
                seen.add(t.result)
                itemsize = element_dtype(ir.RankedTensorType(t.source.type).element_type).itemsize
                per_copy = sum(int(np.prod(np.subtract(s.limit, s.start))) * itemsize for s in t.plan.sends)
                planned += per_copy * (1 if call.part == "apply" else MICRO_BATCHES)
        assert exe.meshes == [(0, 1, 2, 3), (4, 5, 6, 7)] and planned > 0 and sent == planned
    finally:
        exe.close()
