"""Where a plan's step goes on the host, beside what the cost model prices: for the plans of
benchmarks/cost_model.py, the CPU time per step by kind of work, sampled with Linux `perf`.

Eight virtual CPU devices share the host's cores, so a step's wall time is about its CPU time over the
cores, and every kind of host work counts: fused and unfused dots, the compiled elementwise loops,
transposes, copies, memory allocation, the collectives' own code, and the scheduler's context switches
when device threads wait for each other. The cost model prices dots and memory traffic per device and
collectives from the calibrated tables; this table shows, per plan, which kinds of work differ from what
the model says (docs/cost_model.md, "Where the transformer's time goes").

    python benchmarks/cost_model_cpu.py [--profile p8.json --profile p2x4.json] [--programs transformer]
                                        [--plans "solver 8,model x data 2x4"] [--seconds 6]

Without --profile the devices are calibrated first, as in cost_model.py. Needs `perf` (Debian:
linux-perf) with permission to sample this process (root, or kernel.perf_event_paranoid <= 1).
Run it alone on the machine (benchmarks/isolated.sh); it times under the same pooled malloc as
cost_model.py.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))

if __name__ == "__main__":
    from benchmarks import allocator

    allocator.reexec_pooled()

from benchmarks import cost_model  # noqa: E402
from benchmarks import cost_model_dots as dots_lib  # noqa: E402

from autopar.runtime import hlo as hlo_text  # noqa: E402

SAMPLE_HZ = 499
# (kind of work, pattern over perf's "[k] symbol" / "[.] symbol"), first match wins. The compiled
# elementwise loops are XLA's JIT code, which perf cannot name: its addresses print as 0x...
KINDS = (
    ("fused dots", r"ynn::dot"),
    ("unfused dots", r"Eigen::internal|TensorContraction|gebp|gemm"),
    ("transposes", r"transpose"),
    ("compiled loops", r"^\[\.\] 0x"),
    ("other kernels", r"ynn::|slinky::"),
    ("collectives", r"AllReduce|AllGather|ReduceScatter|AllToAll|Collective|Rendezvous|InProcess"),
    ("copies", r"memmove|memcpy|memset"),
    ("allocation", r"malloc|_int_free|\bfree\b|cfree|unlink_chunk|sysmalloc"),
    (
        "scheduling",
        r"finish_task_switch|_raw_spin_unlock_irqrestore|schedule|futex|syscall|Futex|CondVar|Mutex|"
        r"lll_lock|try_to_wake|pick_next|enqueue|dequeue",
    ),
    ("kernel, other", r"^\[k\]"),
)


def categorize(report_text: str) -> dict[str, int]:
    """Samples per kind of work from `perf report --sort sym -n -q -g none --stdio`."""
    samples = dict.fromkeys([k for k, _ in KINDS] + ["other"], 0)
    for line in report_text.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\[.\])\s+(.*)", line)
        if not m:
            continue
        symbol = f"{m.group(2)} {m.group(3).strip()}"
        kind = next((k for k, pattern in KINDS if re.search(pattern, symbol)), "other")
        samples[kind] += int(m.group(1))
    return samples


def _computations(hlo: str) -> dict[str, str]:
    """A compiled module's computations by name (the entry one also under "ENTRY")."""
    out = {}
    for block in re.split(r"\n(?=\S)", hlo):
        m = re.match(r"(ENTRY )?%?(\S+)", block)
        if m:
            out[m.group(2)] = block
            if m.group(1):
                out["ENTRY"] = block
    return out


def unfused_dots(hlo: str) -> int:
    """Dots XLA runs on their own (outside its fused kernels) in a compiled module's entry computation."""
    return len(re.findall(r" dot\(", _computations(hlo)["ENTRY"]))


FREE_OPS = {"parameter", "get-tuple-element", "bitcast", "constant", "tuple", "partition-id", "after-all"}


def _collective(op: str) -> bool:
    return re.sub(r"-(start|done)$", "", op) in hlo_text.COLLECTIVE_KINDS


def compiled_compute(hlo: str, flops: float, bandwidth: float) -> dict[str, float]:
    """XLA's compiled program priced per device with the cost model's roofline (max(FLOPs / flops, bytes /
    bandwidth) per top-level instruction: a fusion reads its operands and writes its result once), in
    seconds: "dots" (fusions holding dots and unfused dots) and "loops" (every other fusion, copy and
    transpose; convolutions count here, by their bytes only). Collectives are left out (cost_model.py
    --breakdown prices them)."""
    comps = _computations(hlo)
    shapes = dict(re.findall(r"%([\w.\-]+) = (\(.*?\)|\w+\[[\d,]*\])", hlo))
    entry_shapes = dots_lib.line_shapes(comps["ENTRY"])
    priced = {"dots": 0.0, "loops": 0.0}
    for line in comps["ENTRY"].splitlines():
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\(.*?\)|\S+) ([a-z\-]+)\((.*)", line)
        if not m or m.group(3) in FREE_OPS or _collective(m.group(3)):
            continue
        _, shape, op, rest = m.groups()
        operands = re.findall(r"%([\w.\-]+)", rest.split("), ")[0])
        moved = hlo_text.array_bytes(shape) + sum(hlo_text.array_bytes(shapes.get(o, "")) for o in operands)
        dot_flops = dots_lib.dot_in(line, entry_shapes).flops if op == "dot" else 0.0
        if op == "fusion":
            called = comps.get(re.search(r"calls=%([\w.\-]+)", line).group(1), "")
            dot_flops = sum(dot.flops for dot in dots_lib.program_dots(called))
        priced["dots" if dot_flops else "loops"] += max(dot_flops / flops, moved / bandwidth)
    return priced


def sample(run, seconds: float, folder: str) -> tuple[float, dict[str, float]]:
    """(wall s per step, CPU s per step per kind) over `seconds` of back-to-back steps under perf."""
    data = os.path.join(folder, "perf.data")
    record = ["perf", "record", "-F", str(SAMPLE_HZ), "-p", str(os.getpid()), "-o", data]
    perf = subprocess.Popen(
        [*record, "--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.3)  # perf attaches before the timed steps
    steps, start = 0, time.perf_counter()
    while steps == 0 or perf.poll() is None:
        run()
        steps += 1
    perf.wait()
    wall = time.perf_counter() - start
    if perf.returncode != 0:
        why = perf.stderr.read().decode().strip().splitlines()[-1:]
        raise SystemExit(f"error: perf record failed ({' '.join(why)}): is sampling this process allowed?")
    text = subprocess.run(
        ["perf", "report", "-i", data, "--sort", "sym", "-n", "-q", "-g", "none", "--stdio"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    per_step = {k: n / SAMPLE_HZ / steps for k, n in categorize(text).items()}
    return wall / steps, per_step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cost_model.add_plan_arguments(parser, "transformer")
    parser.add_argument("--seconds", type=float, default=6.0, help="sampled seconds per plan")
    a = parser.parse_args()
    if shutil.which("perf") is None:
        print("error: this benchmark samples the host with Linux perf, not installed here", file=sys.stderr)
        return 1
    plans, programs = cost_model.plans_named(a.plans), cost_model.programs_named(a.programs)
    profiles = cost_model.profiles_of(a)
    device = dots_lib.devices_of(profiles)  # each mesh's device figures, read once
    kinds = [k for k, _ in KINDS] + ["other"]
    with tempfile.TemporaryDirectory(prefix="autopar-perf-") as folder:
        for program in programs:
            splits: dict = {}
            texts: dict = {}
            prepared = cost_model.prepare(program, profiles, splits, plans, texts)
            print(f"\n### {program}: ms per step (model: per device; host: CPU summed over threads)\n")
            print(
                "| plan | model compute | model communication | XLA's dots, priced | XLA's loops, priced "
                "| measured | host CPU | dots XLA left unfused | " + " | ".join(kinds) + " |"
            )
            print("|---" * (8 + len(kinds)) + "|")
            for (name, _, run), (_, mesh, _) in zip(prepared, plans, strict=True):
                compute, communication, _ = splits[name]
                for _ in range(3):
                    run()
                wall, cpu = sample(run, a.seconds, folder)
                text = texts[name]
                xla = compiled_compute(text, device[len(mesh)].flops, device[len(mesh)].memory_bandwidth)
                cells = " | ".join(f"{cpu[k] * 1e3:.1f}" for k in kinds)
                print(
                    f"| {name} | {compute * 1e3:.1f} | {communication * 1e3:.1f} | {xla['dots'] * 1e3:.1f} | "
                    f"{xla['loops'] * 1e3:.1f} | {wall * 1e3:.1f} | {sum(cpu.values()) * 1e3:.1f} | "
                    f"{unfused_dots(text)} | {cells} |",
                    flush=True,
                )
    print(f"\n{os.cpu_count()} cores; load average over the last minute: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
