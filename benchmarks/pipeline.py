"""Pipelined execution of a PipeshardParallel step: each schedule against the sequential order.

    python benchmarks/pipeline.py [--layers 8] [--width 512] [--batch 512] [--micro-batches 8] [--steps 5]

An MLP training step (Adam) planned on two stages of one device each (8 virtual CPU devices, the first
two used), B micro-batches. Prints one table:
  - step seconds (median of --steps) of the sequential order (the same plan, micro-batches one after
    another), 1F1B, GPipe, ZB-H1 and interleaved 1F1B (2 chunks per mesh), and each one's throughput
    against the sequential order;
  - the bubble: measured, the step's seconds against the busiest mesh's (every instruction timed alone by
    `SequentialExecutor.profile`), minus 1; and the theory, the schedule simulated with the measured part
    times (1 would mean the meshes never overlap; 0, no bubble at all);
  - the host overhead per stage call: a width-8 copy of the step, where compute is negligible, divided
    by its stage calls;
  - the most bytes each device held during the profiled step.
On one CPU process the meshes share the cores (XLA spreads one computation over both), so the
schedules change the order, not the overlap; see docs/pipeline.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import autopar  # noqa: E402
from autopar import _core  # noqa: E402
from autopar.ir import attrs  # noqa: E402
from autopar.runtime.sequential import SequentialExecutor  # noqa: E402

MESHES = 2  # two single-device stage meshes


def make_step(width: int, layers: int, batch: int):
    opt = optax.adam(1e-3)
    rng = np.random.default_rng(0)
    params = [
        jnp.asarray(rng.standard_normal((width, width)) / np.sqrt(width), jnp.float32) for _ in range(layers)
    ]
    x = jnp.asarray(rng.standard_normal((batch, width)), jnp.float32)

    def step(params, state, batch):
        x, y = batch

        def loss(p):
            h = x
            for w in p:
                h = jnp.tanh(h @ w)
            return jnp.mean((h - y) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    return step, (params, opt.init(params), (x, x))


def executors(width: int, layers: int, batch: int, micro_batches: int):
    """{order name: (executor, flat args)} on one plan: two single-device stages."""
    step, args = make_step(width, layers, batch)
    out = {}
    for schedule in ("1f1b", "gpipe", "zb-h1", "interleaved-1f1b"):
        method = autopar.PipeshardParallel(
            num_micro_batches=micro_batches,
            layer_option=autopar.AutoLayerOption(layer_num=layers),
            stage_option=autopar.UniformStageOption(num_stages=2),
            cluster_shape=(1, 2),
            pipeline_schedule=schedule,
        )
        f = autopar.parallelize(step, method=method, devices=jax.devices()[:2], batch_argnums=(2,))
        module = f.lower(*args).module
        flat = jax.tree.leaves(args)
        if schedule == "1f1b":
            sequential = ir_copy(module)
            del sequential.operation.attributes[attrs.SCHEDULE]
            out["sequential"] = SequentialExecutor(sequential, jax.devices()[:2])
        out[schedule] = SequentialExecutor(module, jax.devices()[:2])
    return out, flat


def ir_copy(module):
    from jaxlib.mlir import ir

    return ir.Module.parse(str(module), module.context)


def timed(exe, flat, steps: int) -> float:
    jax.block_until_ready(exe(*flat))  # compile and warm up
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        jax.block_until_ready(exe(*flat))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bubbles(
    exe, flat, schedule: str, micro_batches: int, seconds: float
) -> tuple[float, float, dict[int, int]]:
    """(measured, theory, peak bytes per stage) from one profiled step and the step's `seconds`."""
    profile = exe.profile(*flat)
    busy: dict[int, float] = {}
    parts: dict[str, list[float]] = {}
    for ins, start, end in profile.events:
        busy[ins.stage % MESHES] = busy.get(ins.stage % MESHES, 0.0) + end - start
        parts.setdefault(ins.part, []).append(end - start)
    measured = seconds / max(busy.values()) - 1
    mean = {part: statistics.mean(times) for part, times in parts.items()}
    backward = mean.get("backward", mean.get("backward_input", 0.0))
    chunks = len({ins.stage for ins, _, _ in profile.events}) // MESHES
    sim = _core.simulate_schedule(
        _core.build_schedule(schedule, MESHES, micro_batches, chunks),
        forward=mean["forward"],
        backward=backward,
        backward_weight=mean.get("backward_weight", 0.0),
        apply=0,
    )
    return measured, sim.bubble_fraction, profile.peak_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--micro-batches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    a = parser.parse_args()
    exes, flat = executors(a.width, a.layers, a.batch, a.micro_batches)
    tiny, tiny_flat = executors(8, a.layers, a.batch, a.micro_batches)
    base = timed(exes["sequential"], flat, a.steps)
    print(f"MLP {a.layers}x{a.width}, batch {a.batch}, B={a.micro_batches}, two 1-device stages")
    print(
        f"{'order':<17}{'step s':>9}{'x seq':>7}{'bubble':>8}{'theory':>8}{'us/call':>9}  peak MiB per device"
    )
    for name in ("sequential", "1f1b", "gpipe", "zb-h1", "interleaved-1f1b"):
        seconds = base if name == "sequential" else timed(exes[name], flat, a.steps)
        schedule = "1f1b" if name == "sequential" else name
        measured, theory, peak = bubbles(exes[name], flat, schedule, a.micro_batches, seconds)
        calls = len(tiny[name].program.order) + 2
        overhead = timed(tiny[name], tiny_flat, a.steps) / calls
        peaks = " ".join(f"{peak[k] / 2**20:.2f}" for k in sorted(peak))
        theory_text = "-" if name == "sequential" else f"{theory:.3f}"
        print(
            f"{name:<17}{seconds:>9.4f}{base / seconds:>7.2f}{measured:>8.3f}{theory_text:>8}"
            f"{overhead * 1e6:>9.0f}  {peaks}"
        )


if __name__ == "__main__":
    main()
