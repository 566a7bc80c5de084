"""Pipelined execution of a PipeshardParallel step: each schedule against the sequential order, per runtime.

    python benchmarks/pipeline.py [--layers 8] [--width 512] [--batch 512] [--micro-batches 8] [--steps 5]
                                  [--executors processes,in-process]

An MLP training step (Adam) planned on two stages of one device each (8 virtual CPU devices, the first
two used), B micro-batches. Prints one table per runtime (`processes`: a worker process per mesh, each on
its own core, runtime/processes.py; `in-process`: runtime/sequential.py), each step fed the previous step's
parameters and Adam state (which stay where they are):
  - step seconds (median of --steps; the orders take turns step by step, so the machine's drift weighs
    on all alike) of the sequential order (the same plan, micro-batches one after another), 1F1B, GPipe,
    ZB-H1 and interleaved 1F1B (2 chunks per mesh), and each one's throughput against the sequential order;
  - the bubble: measured, the step's seconds against the busiest mesh's (every part timed alone in a
    profiled step), minus 1; and the theory, the schedule simulated with the measured part times (1 would
    mean the meshes never overlap; 0, no bubble at all);
  - the host overhead per stage call: a width-8 copy of the step, where compute is negligible; for
    `processes` the seconds the workers spend dispatching a part (Python and XLA's enqueue), for
    `in-process` the tiny step's seconds divided by its stage calls;
  - the most bytes each mesh's device held during the profiled step.
One CPU process does not run two meshes side by side (XLA spreads one computation over all its cores), so
in-process the schedules change the order more than the overlap; see docs/pipeline.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

import autopar  # noqa: E402
from autopar import _core  # noqa: E402
from autopar.ir import attrs  # noqa: E402
from autopar.runtime.processes import ProcessExecutor  # noqa: E402
from autopar.runtime.sequential import SequentialExecutor  # noqa: E402

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # benchmarks.models; autopar as installed
from benchmarks.models.small import tanh_mlp_adam  # noqa: E402

MESHES = 2  # two single-device stage meshes


ORDERS = ("sequential", "1f1b", "gpipe", "zb-h1", "interleaved-1f1b")


def executors(kind: str, width: int, layers: int, batch: int, micro_batches: int):
    """({order name: executor}, flat args, state leaves) on one plan: two single-device stages."""
    step, args = tanh_mlp_adam(width, layers, batch)
    runtime = ProcessExecutor if kind == "processes" else SequentialExecutor
    out = {}
    for schedule in ORDERS[1:]:
        method = autopar.PipeshardParallel(
            num_micro_batches=micro_batches,
            layer_option=autopar.AutoLayerOption(layer_num=layers),
            stage_option=autopar.UniformStageOption(num_stages=2),
            cluster_shape=(1, 2),
            pipeline_schedule=schedule,
        )
        f = autopar.parallelize(step, method=method, devices=jax.devices()[:2], batch_argnums=(2,))
        module = f.lower(*args).module
        if schedule == "1f1b":
            sequential = ir_copy(module)
            del sequential.operation.attributes[attrs.SCHEDULE]
            out["sequential"] = runtime(sequential, jax.devices()[:2])
        out[schedule] = runtime(module, jax.devices()[:2])
    return out, jax.tree.leaves(args), len(jax.tree.leaves(args[:2]))


def ir_copy(module):
    from jaxlib.mlir import ir

    return ir.Module.parse(str(module), module.context)


def timed(exes: dict, flat, state: int, steps: int) -> dict[str, tuple[float, list]]:
    """Per executor: (median step seconds, its last state), each step fed the last one's parameters and
    optimizer state. The executors take turns step by step, so a machine that slows down or speeds up
    during the run weighs on every order alike (the ratios are what this benchmark reports)."""
    current = {name: list(flat) for name in exes}

    def run(name: str) -> None:
        out = list(exes[name](*current[name][:state], *flat[state:]))
        jax.block_until_ready([x for x in out if isinstance(x, jax.Array)])
        current[name] = out

    for name in exes:
        run(name)  # compile and warm up
    times: dict[str, list[float]] = {name: [] for name in exes}
    for _ in range(steps):
        for name in exes:
            started = time.perf_counter()
            run(name)
            times[name].append(time.perf_counter() - started)
    return {name: (statistics.median(times[name]), current[name]) for name in exes}


def part_times(exe, args) -> tuple[list[tuple[str, int, float]], dict[int, int]]:
    """One profiled step: (part, stage, seconds) of every forward/backward part, peak bytes per mesh."""
    if isinstance(exe, ProcessExecutor):
        reports = exe.profile(*args)
        functions = exe.program.functions
        events = [
            (attrs.get_part(functions[callee]), attrs.get_stage(functions[callee]), end - start)
            for report in reports
            for callee, m, start, end in report.events
            if m >= 0
        ]
        return events, {w: r.peak_bytes for w, r in enumerate(reports)}
    profile = exe.profile(*args)
    events = [(ins.part, ins.stage, end - start) for ins, start, end in profile.events]
    return events, profile.peak_bytes


def bubbles(exe, args, schedule: str, micro_batches: int, seconds: float):
    """(measured, theory, peak bytes per mesh) from one profiled step and the step's `seconds`."""
    events, peak = part_times(exe, args)
    busy: dict[int, float] = {}
    parts: dict[str, list[float]] = {}
    for part, stage, spent in events:
        busy[stage % MESHES] = busy.get(stage % MESHES, 0.0) + spent
        parts.setdefault(part, []).append(spent)
    measured = seconds / max(busy.values()) - 1
    mean = {part: statistics.mean(times) for part, times in parts.items()}
    backward = mean.get("backward", mean.get("backward_input", 0.0))
    chunks = len({stage for _, stage, _ in events}) // MESHES
    sim = _core.simulate_schedule(
        _core.build_schedule(schedule, MESHES, micro_batches, chunks),
        forward=mean["forward"],
        backward=backward,
        backward_weight=mean.get("backward_weight", 0.0),
        apply=0,
    )
    return measured, sim.bubble_fraction, peak


def overhead_per_call(exe, flat, state: int, steps: int) -> float:
    seconds, _ = timed({"tiny": exe}, flat, state, steps)["tiny"]
    if isinstance(exe, ProcessExecutor):
        reports = exe.last_reports
        return sum(r.dispatch_seconds for r in reports) / sum(r.calls for r in reports)
    return seconds / (len(exe.program.order) + 2)


def table(kind: str, a: argparse.Namespace) -> None:
    exes, flat, state = executors(kind, a.width, a.layers, a.batch, a.micro_batches)
    tiny, tiny_flat, _ = executors(kind, 8, a.layers, a.batch, a.micro_batches)
    print(f"\n{kind}: MLP {a.layers}x{a.width}, batch {a.batch}, B={a.micro_batches}, two 1-device stages")
    print(
        f"{'order':<17}{'step s':>9}{'x seq':>7}{'bubble':>8}{'theory':>8}{'us/call':>9}  peak MiB per mesh"
    )
    steady = timed(exes, flat, state, a.steps)
    base = steady["sequential"][0]
    for name in ORDERS:
        seconds, current = steady[name]
        schedule = "1f1b" if name == "sequential" else name
        args = [*current[:state], *flat[state:]]
        measured, theory, peak = bubbles(exes[name], args, schedule, a.micro_batches, seconds)
        overhead = overhead_per_call(tiny[name], tiny_flat, state, a.steps)
        peaks = " ".join(f"{peak[k] / 2**20:.2f}" for k in sorted(peak))
        theory_text = "-" if name == "sequential" else f"{theory:.3f}"
        print(
            f"{name:<17}{seconds:>9.4f}{base / seconds:>7.2f}{measured:>8.3f}{theory_text:>8}"
            f"{overhead * 1e6:>9.0f}  {peaks}"
        )
    for exe in [*exes.values(), *tiny.values()]:
        if isinstance(exe, ProcessExecutor):
            exe.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--micro-batches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--executors", default="processes,in-process")
    a = parser.parse_args()
    for kind in a.executors.split(","):
        if kind not in ("processes", "in-process"):
            parser.error(f"--executors: unknown runtime {kind!r} (processes, in-process)")
        table(kind, a)


if __name__ == "__main__":
    main()
