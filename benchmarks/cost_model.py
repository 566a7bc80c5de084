"""Cost model accuracy, measured: does the intra-op pass's estimate rank plans as they run?

For each program (an MLP, a 2-layer GPT, a small Wide-ResNet training step: benchmarks/models/small.py) a
set of plans on 8 devices: the solver's own plans on the meshes 8 and 2x4, and fixed plans of the family
grid (autopar-intra-op's `plan-family`: data parallel, tensor parallel, ZeRO-3 on 8; data x model and
model x data on 2x4), every one planned and priced under one cluster profile. Each plan's predicted step
time (the pass's objective, `autopar.objective`) is set beside its measured one (median of repeats, each
the mean of --steps consecutive steps, with its arguments already in place; the plans take turns,
round-robin, so drift in the machine's load touches them alike). Per program: the Spearman rank
correlation, the median relative error, and whether the plan the model ranks first runs within 10 % of
the fastest. The last line gives the machine's load: run it where no other job runs (docs/cost_model.md).
It runs under glibc malloc settings that keep freed memory, as an accelerator's allocator does
(benchmarks/allocator.py); --system-malloc times the steps under the defaults instead.

    python benchmarks/cost_model.py [--profile profile.json] [--programs mlp,transformer,convnet]
                                    [--repeats 9] [--steps 5] [--default-model] [--breakdown]
                                    [--system-malloc] [--compare NAME=P8.json[,P2X4.json]]
                                    [--plan MESH:FAMILY] [--dots-alone]

Without --profile the devices are calibrated first (`python -m autopar.calibrate` in a child process at
normal priority, the meshes 8 and 2x4, full sizes; --quick-calibration for fewer). --default-model plans and
prices with the built-in defaults instead (what the pass does without a profile), for comparison.
--breakdown also prints, per plan, the prediction split into compute and communication (the ops' own
collectives and the reshards) beside the collectives XLA compiled, each priced with the same profile: where
the model's communication is not what the program runs. --compare NAME=P8[,P2X4] (repeatable) also plans
under other profiles (a model change written as a profile key, say) and times those plans in the same
round-robin window as the first set's: two runs in a row differ by more than most model changes do
(docs/cost_model.md, "Fused elementwise prices"). --plan MESH:FAMILY (repeatable) adds a plan of the family
grid to the seven, e.g. `--plan 2x4:data,data` (data parallel over both axes of the mesh 2x4), named "FAMILY
MESH"; the figures then cover it too. --dots-alone (without --compare) also ranks the plans with each
one's compiled dots at their time alone on the devices instead of the model's price of them
(benchmarks/cost_model_dots.py): how far a dot price by per-device shape and layout could move the ranking.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))

if __name__ == "__main__" and "--system-malloc" not in sys.argv:
    from benchmarks import allocator

    allocator.reexec_pooled()  # steps without page faults, as on an accelerator's pool (allocator.py)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from benchmarks.models import small  # noqa: E402

import autopar  # noqa: E402
from autopar.ir import attrs  # noqa: E402

PROGRAMS = {"mlp": small.mlp_sgd, "transformer": small.gpt_2layer, "convnet": small.wide_resnet_small}
# (name, mesh, plan-family or "" for the solver's own plan)
PLANS = [
    ("solver 8", (8,), ""),
    ("solver 2x4", (2, 4), ""),
    ("data 8", (8,), "data"),
    ("model 8", (8,), "model"),
    ("zero3 8", (8,), "zero3"),
    ("data x model 2x4", (2, 4), "data,model"),
    ("model x data 2x4", (2, 4), "model,data"),
]


@dataclasses.dataclass(frozen=True)
class FamilyParallel(autopar.ShardParallel):
    """ShardParallel planning one family of the grid (autopar-intra-op's plan-family option)."""

    family: str = ""

    def pipeline(self, mesh_shape: tuple[int, ...], axis_names: tuple[str, ...]) -> str:
        text = super().pipeline(mesh_shape, axis_names)
        return text[: -len("})")] + f" plan-family={self.family}}})" if self.family else text


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties)."""

    def ranks(x):
        x = np.asarray(x, dtype=np.float64)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=np.float64)
        for value in np.unique(x):  # ties share their mean rank
            r[x == value] = r[x == value].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def concrete(tree, seed: int = 0):
    """Random arrays for abstract arguments (small integers for int inputs: tokens, labels)."""
    rng = np.random.default_rng(seed)

    def make(s):
        if np.issubdtype(s.dtype, np.integer):
            return np.asarray(rng.integers(0, 10, s.shape), s.dtype)
        return np.asarray(rng.standard_normal(s.shape) * 0.02, s.dtype)

    return jax.tree.map(make, tree)


def breakdown(f, args) -> tuple[float, float, float]:
    """(compute s, communication s, the compiled collectives priced s) of a plan, in its own cost model."""
    from autopar.api import explain_problem

    plan = f.get_execution_plan(*args)
    rebuilt = explain_problem.rebuild(plan.source)
    compute = sum(explain_problem.cost_split(rebuilt, v, k).compute for v, k in enumerate(rebuilt.chosen))
    mesh = rebuilt.config.mesh
    compiled = 0.0
    everything = list(range(len(mesh.shape)))
    for c in plan.collectives:  # groups XLA did not print as mesh axes: priced over the whole mesh
        axes = [mesh.axis_names.index(a) for a in c.axes if a in mesh.axis_names] or everything
        compiled += compiled_price(mesh, c.kind, c.bytes, axes, len(c.shapes))
    return compute, rebuilt.objective - compute, compiled


def compiled_price(mesh, kind: str, num_bytes: float, axes: list[int], operands: int) -> float:
    """Seconds of one compiled collective (`kind` as XLA names it) priced as the model prices its parts:
    an all-reduce or reduce-scatter XLA merged from `operands` gradients pays one latency and each
    further operand's measured cost (`merged_operand`), not one collective's price."""
    price = getattr(mesh, kind.replace("-", "_"))  # MeshModel.all_reduce, .all_gather, ...
    if operands > 1 and kind in ("all-reduce", "reduce-scatter"):
        return operands * price(num_bytes / operands, axes, 1.0 / operands, num_bytes)
    return price(num_bytes, axes)


def prepare(
    program,
    profiles: dict[int, str] | None,
    splits: dict | None = None,
    plans=PLANS,
    texts: dict | None = None,
):
    """[(plan name, predicted s, callable running one step on placed arguments)] for `plans` ((name, mesh,
    family) as in PLANS); with `splits`, each plan's `breakdown` under its name; with `texts`, its
    compiled HLO text."""
    step, abstract_args, batch_argnums = PROGRAMS[program]()
    args = concrete(abstract_args)
    out = []
    for name, mesh, family in plans:
        option = autopar.AutoShardingOption(cluster_profile=profiles[len(mesh)] if profiles else None)
        method = FamilyParallel(mesh_shape=mesh, auto_sharding_option=option, family=family)
        f = autopar.parallelize(step, method=method, batch_argnums=batch_argnums)
        lowered = f.lower(*args)
        predicted = attrs.get_intra_op_result(lowered.module.operation).objective
        if splits is not None:
            splits[name] = breakdown(f, args)
        compiled = lowered.compile()
        if texts is not None:
            texts[name] = compiled.as_text()
        exe = compiled.executable
        placed = exe.place_arguments(jax.tree.leaves(args))
        out.append((name, predicted, lambda exe=exe, placed=placed: jax.block_until_ready(exe(placed))))
    return out


@dataclasses.dataclass
class Timed:
    """A plan's repeats: step times, and per step what the host spent (getrusage over the whole process:
    page faults, voluntary context switches, user and system CPU seconds)."""

    seconds: list[float] = dataclasses.field(default_factory=list)
    faults: list[float] = dataclasses.field(default_factory=list)
    switches: list[float] = dataclasses.field(default_factory=list)
    system: list[float] = dataclasses.field(default_factory=list)
    user: list[float] = dataclasses.field(default_factory=list)

    def idle_core_seconds(self, cores: int) -> float:
        """Median per step of the core time nobody used: cores x wall - user - system CPU. Eight device
        threads share the host's cores, so a step is its CPU work over the cores plus this idle time: near
        0, the step is bound by work (what the model must price); large, by threads waiting for each
        other at collectives (docs/cost_model.md, "Work or waiting")."""
        return statistics.median(
            cores * w - u - s for w, u, s in zip(self.seconds, self.user, self.system, strict=True)
        )


def measure(plans, repeats: int, steps: int) -> list[Timed]:
    """Every repeat of each plan: the mean of `steps` consecutive steps (one step of 8 virtual devices on 2
    cores swings by tens of percent with the scheduler; 5 steps in a row cut the repeats' spread about
    3x). The plans take turns, so drift in the machine's load touches them alike."""
    for _, _, run in plans:  # warm-up
        run()
        run()
    timed = [Timed() for _ in plans]
    for _ in range(repeats):
        for t, (_, _, run) in zip(timed, plans, strict=True):
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for _ in range(steps):
                run()
            t.seconds.append((time.perf_counter() - start) / steps)
            after = resource.getrusage(resource.RUSAGE_SELF)
            t.faults.append((after.ru_minflt + after.ru_majflt - before.ru_minflt - before.ru_majflt) / steps)
            t.switches.append((after.ru_nvcsw - before.ru_nvcsw) / steps)
            t.system.append((after.ru_stime - before.ru_stime) / steps)
            t.user.append((after.ru_utime - before.ru_utime) / steps)
    return timed


def split_half(timed: list[Timed]) -> float | None:
    """Spearman between the plans' medians over the odd and over the even repeats: how well the
    measurement agrees with itself, the most a model's ranking can be expected to reach (None with fewer
    than two repeats): when it is high and the model's Spearman low, the misranking is the model's."""
    if min(len(t.seconds) for t in timed) < 2:
        return None
    odd = [statistics.median(t.seconds[0::2]) for t in timed]
    even = [statistics.median(t.seconds[1::2]) for t in timed]
    return spearman(odd, even)


def report(program: str, plans, timed: list[Timed]) -> dict:
    predicted = [p for _, p, _ in plans]
    measured = [statistics.median(t.seconds) for t in timed]
    print(f"\n### {program}\n")
    print(
        "| plan | predicted s | measured s | measured / predicted | repeats' spread (max - min) / median "
        "| per step: page faults | context switches | system s | user s | idle core s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for (name, p, _), m, t in zip(plans, measured, timed, strict=True):
        host = [statistics.median(x) for x in (t.faults, t.switches, t.system, t.user)]
        print(
            f"| {name} | {p:.4g} | {m:.4g} | {m / p:.2f} | {(max(t.seconds) - min(t.seconds)) / m:.0%} "
            f"| {host[0]:.0f} | {host[1]:.0f} | {host[2]:.3g} | {host[3]:.3g} "
            f"| {t.idle_core_seconds(cores):.2g} |"
        )
    rho = spearman(predicted, measured)
    errors = [abs(p - m) / m for p, m in zip(predicted, measured, strict=True)]
    top, best = int(np.argmin(predicted)), int(np.argmin(measured))
    fastest = measured[best]
    within = measured[top] <= 1.10 * fastest
    print(
        f"\nSpearman {rho:.2f}; median relative error {statistics.median(errors):.0%}; model's top plan "
        f"'{plans[top][0]}' runs {measured[top] / fastest:.2f}x the fastest ('{plans[best][0]}')"
        f" -> {'within' if within else 'NOT within'} 10 %",
        flush=True,
    )
    halves = split_half(timed)
    agreement = "n/a (one repeat)" if halves is None else f"{halves:.2f}"
    print(f"the measurement's own agreement (odd against even repeats, Spearman): {agreement}")
    return {"rho": rho, "within": within}


def plans_named(text: str) -> list[tuple[str, tuple[int, ...], str]]:
    """The PLANS a comma list names (--plans of the scripts beside this one), every one for an empty list;
    one `error:` line (SystemExit) naming any unknown."""
    wanted = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(wanted - {name for name, _, _ in PLANS})
    if unknown:
        raise SystemExit(f"error: --plans: unknown plans {unknown}")
    return [plan for plan in PLANS if not wanted or plan[0] in wanted]


def add_plan_arguments(parser: argparse.ArgumentParser, programs: str) -> None:
    """--profile, --programs (default `programs`) and --plans, as the diagnostic scripts beside this one
    (cost_model_cpu.py, cost_model_trace.py, cost_model_dots.py) take them: read them with plans_named,
    programs_named and profiles_of."""
    parser.add_argument("--profile", action="append", help="as in cost_model.py")
    parser.add_argument("--programs", default=programs)
    parser.add_argument("--plans", default="", help="comma list of plan names; default all")


def profiles_of(a: argparse.Namespace) -> dict[int, str]:
    """The profiles --profile names (profiles_from), or both meshes calibrated now when it names none."""
    return profiles_from(a.profile) if a.profile else calibrate_meshes(False)


def programs_named(text: str) -> list[str]:
    """The PROGRAMS a comma list names (--programs); one `error:` line (SystemExit) for any other."""
    programs = [name.strip() for name in text.split(",") if name.strip()]
    if not programs or set(programs) - set(PROGRAMS):
        raise SystemExit(f"error: --programs {text!r}: choose from {sorted(PROGRAMS)}")
    return programs


def dots_alone(program: str, plans, grid, timed: list[Timed], texts: dict, profiles: dict[int, str]) -> float:
    """Each plan's prediction with its compiled dots priced as they run alone on the devices instead of
    the model's price of them (benchmarks/cost_model_dots.py), against the measured times: how far a dot
    price by per-device shape and layout could move the ranking. `grid`: the plans' (name, mesh, family).
    Prints a table; returns the Spearman."""
    from benchmarks import cost_model_dots as dots_lib

    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("d",))
    devices = dots_lib.devices_of(profiles)
    meshes = {name: shape for name, shape, _ in grid}
    alone: dict = {}
    adjusted, measured = [], [statistics.median(t.seconds) for t in timed]
    print(f"\n{program}: each plan's dots at their time alone instead of the model's price of them\n")
    print("| plan | predicted s | dots priced s | dots alone s | adjusted s | measured s |")
    print("|---|---|---|---|---|---|")
    for (name, predicted, _), seconds in zip(plans, measured, strict=True):
        _, price, took = dots_lib.plan_dots(texts[name], devices[len(meshes[name])], alone, mesh)
        adjusted.append(predicted - price + took)
        print(f"| {name} | {predicted:.4g} | {price:.4g} | {took:.4g} | {adjusted[-1]:.4g} | {seconds:.4g} |")
    rho = spearman(adjusted, measured)
    print(f"\n{program}: Spearman with the dots at their time alone {rho:.2f}")
    return rho


def parse_plan(text: str) -> tuple[str, tuple[int, ...], str]:
    """`MESH:FAMILY` from --plan (`2x4:data,data`): (name, mesh shape, plan-family); the pass itself checks
    the family's roles."""
    mesh, sep, family = text.partition(":")
    try:
        shape = tuple(int(s) for s in mesh.split("x"))
    except ValueError:
        shape = ()
    if not sep or not family or not shape or len(family.split(",")) != len(shape):
        raise SystemExit(
            f"error: --plan {text!r}: expected MESH:FAMILY with one role per mesh axis, e.g. 2x4:data,data"
        )
    devices = len(jax.devices())
    if len(shape) not in (1, 2) or int(np.prod(shape)) != devices:  # the profiles cover the meshes 8 and 2x4
        raise SystemExit(f"error: --plan {text!r}: the mesh must have 1 or 2 axes over all {devices} devices")
    return f"{family} {mesh}", shape, family


def parse_variant(text: str) -> tuple[str, dict[int, str]]:
    """`NAME=P8[,P2X4]` from --compare: a name and its profiles (checked to exist)."""
    name, sep, paths = text.partition("=")
    files = [p for p in paths.split(",") if p]
    if not sep or not name or not files:
        raise SystemExit(f"error: --compare {text!r}: expected NAME=P8.json[,P2X4.json]")
    missing = [p for p in files if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"error: --compare {name}: no profile file {missing[0]!r}")
    return name, profiles_from(files)


def compare(program: str, plans, variants, a) -> dict:
    """The plans and each variant's plans, timed together round-robin; each reported against its own
    timing, then every set's predictions against the timing pooled over the sets (per plan name). Returns
    the first set's report."""
    sets = [("profile", plans), *variants]
    timed = measure([p for _, ps in sets for p in ps], a.repeats, a.steps)
    n = len(plans)
    results = [
        report(f"{program} [{name}]", ps, timed[k * n : (k + 1) * n]) for k, (name, ps) in enumerate(sets)
    ]
    medians = [statistics.median(t.seconds) for t in timed]
    pooled = [statistics.mean(medians[i::n]) for i in range(n)]
    for name, ps in sets:
        rho = spearman([p for _, p, _ in ps], pooled)
        print(f"{program} [{name}]: Spearman against the pooled timing {rho:.2f}")
    return results[0]


def calibrate_meshes(quick: bool) -> dict[int, str]:
    """Profiles of the meshes 8 and 2x4 (collectives cost differently in groups of 2, 4 and 8), sharing
    one measurement of the devices (--device-figures); {number of axes: path}.

    Each is `python -m autopar.calibrate` as a user runs it: a child process at normal scheduling, though
    this benchmark runs at real-time priority (isolated.sh). Under real-time round-robin a device's thread
    keeps a core until it blocks, and the calibration's chains (matmuls alone, collectives alone) run
    faster than the steps: in one window, calibrated under real-time priority the devices measured 4.1e10
    FLOP/s and all-gathers of 1 MiB over 8 devices 0.45 ms, at normal priority 3.4e10 and 0.68 ms, and
    the transformer's plans, timed at real-time priority in both cases, ran 1.15-1.44x the first profile's
    predictions and 0.89-1.03x the second's (docs/cost_model.md, "Calibrate at normal priority")."""
    start = time.perf_counter()
    count = len(jax.devices())
    folder = tempfile.mkdtemp(prefix="autopar-")
    paths = {1: os.path.join(folder, "profile-8.json"), 2: os.path.join(folder, "profile-2x4.json")}
    quick_flag = ["--quick"] if quick else []
    run_calibration(["--mesh", str(count), "-o", paths[1], *quick_flag])
    run_calibration(["--mesh", f"2x{count // 2}", "--device-figures", paths[1], "-o", paths[2], *quick_flag])
    print(f"calibrated 8 and 2x4 in {time.perf_counter() - start:.1f} s: {paths}", file=sys.stderr)
    return paths


# `python -m autopar.calibrate` in a child that first drops a real-time policy inherited from isolated.sh:
# before it imports jax, so that XLA's threads, which take the policy of the thread that creates them,
# start at normal scheduling too. (A preexec_fn would do it in a fork of this multithreaded process.)
CALIBRATE_AT_NORMAL_PRIORITY = """
import os, runpy
if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) != os.SCHED_OTHER:
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
runpy.run_module("autopar.calibrate", run_name="__main__", alter_sys=True)
"""


def run_calibration(args: list[str]) -> str:
    """`python -m autopar.calibrate ARGS` at normal scheduling; returns its summary (stderr), which is
    shown only if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", CALIBRATE_AT_NORMAL_PRIORITY, *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"error: calibration failed (python -m autopar.calibrate {' '.join(args)})")
    return done.stderr


def profiles_from(paths: list[str]) -> dict[int, str]:
    """{number of mesh axes: profile path} from --profile arguments (one profile of 8 serves both)."""
    loaded = {len(json.loads(Path(p).read_text())["mesh"].get("shape", [8])): p for p in paths}
    return {1: loaded.get(1, paths[0]), 2: loaded.get(2, loaded.get(1, paths[0]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile",
        action="append",
        help="a cluster profile (python -m autopar.calibrate), once per mesh: --profile p8.json "
        "--profile p2x4.json (one profile of 8 serves both); default: calibrate both meshes now",
    )
    parser.add_argument("--quick-calibration", action="store_true")
    parser.add_argument("--default-model", action="store_true", help="plan with the built-in figures")
    parser.add_argument("--programs", default=",".join(PROGRAMS))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=5, help="consecutive steps timed as one repeat")
    parser.add_argument("--breakdown", action="store_true", help="compute / communication / compiled")
    parser.add_argument(
        "--dots-alone",
        action="store_true",
        help="also rank the plans with their compiled dots at their time alone (cost_model_dots.py)",
    )
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="time under glibc's default malloc (freed memory goes back to the kernel; allocator.py)",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=P8[,P2X4]",
        help="also plan under these profiles (a changed model's, say) and time both sets of plans in one "
        "round-robin window, so that the comparison shares the machine's state",
    )
    parser.add_argument(
        "--plan",
        action="append",
        default=[],
        metavar="MESH:FAMILY",
        help="also time this plan of the family grid (e.g. 2x4:data,data), named 'FAMILY MESH'",
    )
    a = parser.parse_args()
    variants = [parse_variant(text) for text in a.compare]  # bad input fails before any work
    programs = programs_named(a.programs)
    plan_grid = PLANS + [parse_plan(text) for text in a.plan]
    profiles = None
    if a.profile:
        profiles = profiles_from(a.profile)
    elif not a.default_model:
        profiles = calibrate_meshes(a.quick_calibration)
    summary = []
    for program in programs:
        splits = {} if a.breakdown else None
        texts = {} if a.dots_alone else None
        plans = prepare(program, None if a.default_model else profiles, splits, plan_grid, texts)
        if variants:
            compared = [(name, prepare(program, p, plans=plan_grid)) for name, p in variants]
            result = compare(program, plans, compared, a)
        else:
            timed = measure(plans, a.repeats, a.steps)
            result = report(program, plans, timed)
            if texts is not None and profiles:
                dots_alone(program, plans, plan_grid, timed, texts, profiles)
        summary.append((program, result))
        if splits:
            print("\n| plan | compute s | communication s (model) | compiled collectives, priced s |")
            print("|---|---|---|---|")
            for name, (compute, communication, compiled) in splits.items():
                print(f"| {name} | {compute:.4g} | {communication:.4g} | {compiled:.4g} |")
    print(
        "\nrank correlation >= 0.8 in "
        f"{sum(s['rho'] >= 0.8 for _, s in summary)}/{len(summary)} programs; model's top plan within 10 % "
        f"of the fastest in {sum(s['within'] for _, s in summary)}/{len(summary)}"
    )
    # Other jobs on the host change what a collective costs inside a program (a group waits for its
    # slowest device's turn on the cores), which no calibration of this run can promise to hold.
    load = os.getloadavg()[0]
    print(f"load average over the last minute: {load:.1f} on {os.cpu_count()} cores (the run's own included)")


if __name__ == "__main__":
    main()
