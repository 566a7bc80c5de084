"""The same pipelined training step on this machine's processes and on a two-host Ray cluster.

    python benchmarks/ray_pipeline.py [--layers 8] [--width 256] [--batch 256] [--micro-batches 8] [--steps 5]

An MLP training step (Adam), PipeshardParallel with two stages of 1x4 devices on a (2 hosts, 4 devices)
cluster, 1F1B, B micro-batches. It runs with autopar.init(cluster="local") (a worker process per mesh on
this machine) and then on a Ray cluster of two nodes started here on this machine
(ray.cluster_utils.Cluster: each node its own raylet, the workers of a host started by that node's agent,
talking over TCP). Prints per cluster: the step's seconds (median of --steps, each step fed the last one's
state), this process's own seconds per step (building and sending the orders, reading the replies: not
its waits), and the array bytes the workers sent between hosts per step against what the transfer plans
(autopar-reshard) send between hosts: each plan's slices once per micro-batch (once per step for values
the apply parts read).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


import autopar  # noqa: E402

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # benchmarks.models; autopar as installed
from benchmarks.models.small import tanh_mlp_adam  # noqa: E402


def measure(a: argparse.Namespace) -> tuple[float, float, int, int]:
    """(step seconds, driver seconds per step, bytes between hosts per step, the plans' figure)."""
    step_fn, (params, state, batch) = tanh_mlp_adam(a.width, a.layers, a.batch)
    method = autopar.PipeshardParallel(
        num_micro_batches=a.micro_batches,
        layer_option=autopar.AutoLayerOption(layer_num=a.layers),
        stage_option=autopar.UniformStageOption(num_stages=2),
        cluster_shape=(2, 4),
        executor="processes",
    )
    step = autopar.parallelize(step_fn, method=method, batch_argnums=(2,))
    carry = step(params, state, batch)[:2]  # compile, start the workers
    exe = step._cache[next(iter(step._cache))].executable
    times, driver, between = [], [], []
    for _ in range(a.steps):
        began = time.perf_counter()
        *carry, loss = step(*carry, batch)
        float(loss)
        times.append(time.perf_counter() - began)
        driver.append(exe.last_driver_seconds)
        between.append(exe.bytes_between_hosts())
    planned = exe.planned_bytes_between_hosts()
    exe.close()
    return statistics.median(times), statistics.median(driver), int(statistics.median(between)), planned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--micro-batches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    a = parser.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    print(f"MLP {a.layers}x{a.width}, batch {a.batch}, B={a.micro_batches}, two 1x4 stages on (2, 4), 1F1B")
    print(f"{'cluster':<22}{'step s':>9}{'driver ms/step':>16}{'KiB between hosts':>19}{'plan KiB':>10}")
    autopar.init(cluster="local")
    rows = [("local processes", *measure(a))]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node = cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False, include_dashboard=False)
        head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != node.node_id)
        autopar.init(cluster="ray", node_ids=[head, node.node_id])
        rows.append(("ray, 2 hosts", *measure(a)))
    finally:
        autopar.shutdown()
        ray.shutdown()
        cluster.shutdown()
    for name, seconds, driver, between, planned in rows:
        print(
            f"{name:<22}{seconds:>9.4f}{driver * 1e3:>16.2f}{between / 2**10:>19.1f}{planned / 2**10:>10.1f}"
        )


if __name__ == "__main__":
    main()
