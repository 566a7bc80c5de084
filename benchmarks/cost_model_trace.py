"""Where a plan's step goes, thunk by thunk: for the plans of benchmarks/cost_model.py, what XLA's CPU
runtime itself records while it runs a few steps (`jax.profiler.trace`, read back with
`jax.profiler.ProfileData`), beside what the cost model prices.

Every thunk the runtime runs on a device thread is an event: each fusion, dot, convolution and collective,
and inside a collective each meeting of the device threads (`Rendezvous`). Per plan, per device and step:
the wall time inside collective thunks, how many collective thunks ran and how many times the device
threads met (an all-reduce that XLA merged from 55 gradients meets 55 times on this runtime: the reason
for the profile's `merged_operand`, docs/cost_model.md, "Merged gradient collectives"), and the other
thunk kinds that took the most time. Unlike benchmarks/cost_model_cpu.py it needs no `perf`.

    python benchmarks/cost_model_trace.py [--profile p8.json --profile p2x4.json] [--programs convnet]
                                          [--plans "data 8,solver 8"] [--steps 5]

Without --profile the devices are calibrated first, as in cost_model.py. Times are wall times on device
threads that share the host's cores: a thunk waiting for its core counts, and tracing slows the steps
(read shares and counts, not absolute times). Run it alone on the machine (benchmarks/isolated.sh).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))

if __name__ == "__main__":
    from benchmarks import allocator

    allocator.reexec_pooled()

import jax  # noqa: E402
from benchmarks import cost_model  # noqa: E402

from autopar.runtime import hlo as hlo_text  # noqa: E402

MEETING = "Rendezvous"
TOP_OTHERS = 4


def kind_of(name: str) -> str:
    """A thunk's kind from its event name: the HLO instruction name without its `.N` suffix
    (`all-reduce.55` -> `all-reduce`, `ynn_fusion.5` -> `ynn_fusion`)."""
    return re.sub(r"(\.\d+)+$", "", name)


def is_collective(kind: str) -> bool:
    """An XLA collective instruction (autopar.runtime.hlo's kinds), its async -start and -done too."""
    return re.sub(r"-(start|done)$", "", kind) in hlo_text.COLLECTIVE_KINDS


def summarize(events: Iterable[tuple[str, int]], steps: int, devices: int) -> dict:
    """Per device and step, from device-thread events (name, duration in ns): collective seconds and
    thunks, meetings, and the other kinds' seconds (the executor's own spans left out: they hold the
    thunks)."""
    seconds: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    for name, duration_ns in events:
        if name.startswith("ThunkExecutor"):
            continue
        kind = kind_of(name)
        seconds[kind] += duration_ns * 1e-9
        counts[kind] += 1
    per = steps * devices
    collective = [k for k in seconds if is_collective(k)]
    others = [(k, s / per) for k, s in seconds.most_common() if not is_collective(k) and k != MEETING]
    return {
        "collective_s": sum(seconds[k] for k in collective) / per,
        "collective_thunks": sum(counts[k] for k in collective) / per,
        "meetings": counts[MEETING] / per,
        # Waits ("Wait: pending_threads=3/8", "Wait for rendezvous callback") and names with a colon
        # ("end: fusion") annotate a thunk, not run one.
        "others": [(k, s) for k, s in others if ":" not in k and not k.startswith("Wait")][:TOP_OTHERS],
    }


def device_thread_events(xspace: str) -> Iterable[tuple[str, int]]:
    """(name, ns) of the events on the host's XLA threads (not Python's, not the client's)."""
    data = jax.profiler.ProfileData.from_file(xspace)
    for plane in data.planes:
        for line in plane.lines:
            if line.name == "python" or "PjRtCpuClient" in line.name:
                continue
            for event in line.events:
                yield event.name, event.duration_ns


def traced(run, steps: int) -> tuple[float, dict]:
    """(seconds per traced step, summarize(...)) of `steps` calls of `run` under the profiler."""
    with tempfile.TemporaryDirectory(prefix="autopar-trace-") as folder:
        with jax.profiler.trace(folder):
            start = time.perf_counter()  # the steps only: starting and stopping the trace takes longer
            for _ in range(steps):
                run()
            wall = (time.perf_counter() - start) / steps
        (xspace,) = Path(folder).rglob("*.xplane.pb")
        return wall, summarize(device_thread_events(str(xspace)), steps, len(jax.devices()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cost_model.add_plan_arguments(parser, "convnet")
    parser.add_argument("--steps", type=int, default=5, help="traced steps per plan")
    a = parser.parse_args()
    plans, programs = cost_model.plans_named(a.plans), cost_model.programs_named(a.programs)
    if a.steps < 1:
        print(f"error: --steps {a.steps}: must be at least 1", file=sys.stderr)
        return 1
    profiles = cost_model.profiles_of(a)
    for program in programs:
        print(f"\n### {program}: ms per device and step (traced; thunks' wall time)\n")
        print(
            "| plan | model compute | model communication | traced step | in collectives | collective "
            "thunks | meetings | other thunks, most time first |"
        )
        print("|---|---|---|---|---|---|---|---|")
        splits: dict = {}
        for name, _, run in cost_model.prepare(program, profiles, splits, plans):
            for _ in range(3):  # warm-up, as cost_model.py's timing has
                run()
            wall, where = traced(run, a.steps)
            compute, communication, _ = splits[name]
            others = ", ".join(f"{k} {s * 1e3:.1f}" for k, s in where["others"])
            print(
                f"| {name} | {compute * 1e3:.1f} | {communication * 1e3:.1f} | {wall * 1e3:.1f} | "
                f"{where['collective_s'] * 1e3:.1f} | {where['collective_thunks']:.1f} | "
                f"{where['meetings']:.1f} | {others} |",
                flush=True,
            )
    print(f"\n{os.cpu_count()} cores; load average over the last minute: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
