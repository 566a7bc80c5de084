"""The pipeline on a Ray cluster (autopar.init(cluster="ray")): a local cluster of two nodes started here, a
mesh worker on the node of its devices, the step equal to jax.jit's, and a killed worker that ends the step
with an error naming its host and step."""

from __future__ import annotations

import os
import signal
import threading
import time
import types

import jax
import numpy as np
import pytest
from benchmarks.models.small import tanh_mlp_adam

import autopar
from autopar.runtime.processes import ProcessExecutor
from autopar.runtime.step import ExecutionError
from numeric import assert_trees_close

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

HOSTS, DEVICES_PER_HOST = 2, 4


@pytest.fixture(scope="module")
def two_hosts():
    """A Ray cluster of two nodes on this machine; autopar's hosts 0 and 1 are the head and the other."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, include_dashboard=False)
    head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != node.node_id)
    autopar.init(cluster="ray", node_ids=[head, node.node_id])
    yield [head, node.node_id]
    autopar.shutdown()
    ray.shutdown()
    cluster.shutdown()


def arguments(width: int = 32, layers: int = 4, batch: int = 16):
    return tanh_mlp_adam(width, layers, batch, lr=1e-2)[1]


adam_step = tanh_mlp_adam(1, 1, 1, lr=1e-2)[0]  # the step does not depend on the sizes


def pipelined(schedule: str, layers: int = 4):
    method = autopar.PipeshardParallel(
        num_micro_batches=4,
        layer_option=autopar.AutoLayerOption(layer_num=layers),
        stage_option=autopar.UniformStageOption(num_stages=2),
        cluster_shape=(HOSTS, DEVICES_PER_HOST),
        pipeline_schedule=schedule,
    )
    return autopar.parallelize(adam_step, method=method, batch_argnums=(2,))


@pytest.mark.parametrize("schedule", ["1f1b", "gpipe"])
def test_three_steps_on_two_hosts_equal_jit(two_hosts, schedule):
    params, state, batch = arguments()
    step = pipelined(schedule)
    got, want = (params, state), (params, state)
    for _ in range(3):
        *got, got_loss = step(*got, batch)
        *want, want_loss = jax.jit(adam_step)(*want, batch)
        assert_trees_close((got, got_loss), (want, want_loss), rtol=1e-5, atol=1e-6)
    exe = step._cache[next(iter(step._cache))].executable
    assert isinstance(exe, ProcessExecutor)
    # Each stage's devices are one host's: devices 0-3 on host 0 (the head node), 4-7 on host 1.
    assert exe.meshes == [(0, 1, 2, 3), (4, 5, 6, 7)]
    assert [h.split("node ")[1].rstrip(")") for h in exe.hosts] == [n[:8] for n in two_hosts]
    plan = step.get_execution_plan(params, state, batch)
    assert [sorted(s.device_ids) for s in plan.stages] == [list(exe.meshes[0]), list(exe.meshes[1])]


def test_a_worker_killed_mid_step_is_named_with_its_host_and_step(two_hosts):
    params, state, batch = arguments(width=256, layers=8, batch=256)
    step = pipelined("1f1b", layers=8)
    state_out = step(params, state, batch)[:2]  # compiles and starts the workers
    exe = step._cache[next(iter(step._cache))].executable
    victim = exe.pids[1]
    threading.Timer(0.05, os.kill, (victim, signal.SIGKILL)).start()
    began = time.perf_counter()
    with pytest.raises(
        autopar.AutoparError,
        match=r"mesh worker 1 \(devices \[4, 5, 6, 7\]\) on host .* during step \d+ exited",
    ):
        for _ in range(50):  # the kill lands in one of these steps
            state_out = step(*state_out, batch)[:2]
    assert time.perf_counter() - began < 30
    with pytest.raises(ExecutionError, match="the executor is closed"):
        step(*state_out, batch)


def test_shutdown_then_init_again_runs_steps(two_hosts):
    autopar.shutdown()
    autopar.init(cluster="ray", node_ids=two_hosts)
    params, state, batch = arguments()
    got = pipelined("1f1b")(params, state, batch)
    want = jax.jit(adam_step)(params, state, batch)
    assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


def test_training_resumes_from_the_last_checkpoint_after_a_fault(two_hosts, tmp_path):
    params, state, batch = arguments()
    uninterrupted, carry = [], (params, state)
    step = pipelined("1f1b")
    for _ in range(4):
        *carry, loss = step(*carry, batch)
        uninterrupted.append(float(loss))
    # The same run, a worker killed after step 2 (its checkpoint written): the step fails, then resumes.
    step, carry, losses = pipelined("1f1b"), (params, state), []
    for _ in range(2):
        *carry, loss = step(*carry, batch)
        losses.append(float(loss))
    autopar.save_checkpoint(tmp_path / "step2", tuple(carry))
    exe = step._cache[next(iter(step._cache))].executable
    os.kill(exe.pids[0], signal.SIGKILL)
    with pytest.raises(autopar.AutoparError, match=r"mesh worker 0 .* on host .* exited"):
        step(*carry, batch)
    autopar.shutdown()
    autopar.init(cluster="ray", node_ids=two_hosts)
    carry = autopar.restore_checkpoint(tmp_path / "step2", like=(params, state))
    step = pipelined("1f1b")
    for _ in range(2):
        *carry, loss = step(*carry, batch)
        losses.append(float(loss))
    np.testing.assert_allclose(losses, uninterrupted, rtol=1e-6)


def test_a_worker_asked_after_ray_shut_down_does_not_start_ray_again(monkeypatch):
    """An executor still alive at exit closes its workers after the user's ray.shutdown(): asking their
    agents then made ray.get start a whole new local Ray instance ("Started a local Ray instance" at
    exit, seconds late). With Ray down, the agents are gone: each question gets its default."""
    from autopar.runtime.cluster import RayWorker

    calls = []

    def ray_get(*args, **kwargs):  # the real one would start Ray; the caller swallows errors
        calls.append(args)
        raise RuntimeError("no Ray")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "get", ray_get)
    worker = RayWorker.__new__(RayWorker)
    remote = types.SimpleNamespace(remote=lambda *args: "object ref")
    agent = types.SimpleNamespace(poll=remote, wait=remote, kill=remote, log_tail=remote)
    worker._agent, worker.host, worker.pid = agent, "host 1", 1234
    assert worker.poll() == -1 and worker.wait(10) == -1 and worker.log_tail() == ""
    worker.kill()
    assert calls == []
