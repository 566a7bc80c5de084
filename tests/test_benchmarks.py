"""The benchmark scripts run against whatever autopar this test imports (the installed package, or python/
in-tree with a dev build): a quick configuration of each, as a smoke test of the figures' commands."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import autopar

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(autopar.__file__).resolve().parents[1]
IN_TREE = PACKAGE_DIR == ROOT / "python"


def script_env() -> dict[str, str]:
    """This environment, with PYTHONPATH pointing at the autopar this test imports."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if IN_TREE:  # the dev loop: the documented PYTHONPATH=python
        env["PYTHONPATH"] = str(PACKAGE_DIR)
    return env


def run(script: str, *args: str) -> str:
    env = script_env()
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_iopddl_on_the_bundled_example(tmp_path: Path) -> None:
    (tmp_path / "example.json").write_bytes((ROOT / "tests" / "data" / "iopddl_example.json").read_bytes())
    out = run("iopddl.py", "--problems", "example", "--bench-dir", str(tmp_path), "--seeds", "0,1")
    assert "| example |" in out and "| optimal |" in out
    assert "| 0: 1.0000 / 1: 1.0000 |" in out  # every seed's score, not only the worst


def test_presolve_on_the_bundled_example(tmp_path: Path) -> None:
    (tmp_path / "example.json").write_bytes((ROOT / "tests" / "data" / "iopddl_example.json").read_bytes())
    out = run("presolve.py", "--problems", "example", "--bench-dir", str(tmp_path), "--repeats", "1")
    header, _, example = out.strip().splitlines()
    assert header.startswith("| problem | nodes |") and "| entries read | presolve s |" in header
    cells = [c.strip() for c in example.strip("|").split("|")]
    assert cells[0] == "example" and len(cells) == len(header.strip("|").split("|"))
    assert int(cells[1].replace(",", "")) > 0 and float(cells[-1]) >= 0.0


def test_lns_regions_times_every_region_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(1, str(ROOT))
    from benchmarks import lns_regions

    from autopar.solver import exact, lns

    # The example is small enough for the exact path; with no whole ILP allowed it goes through the
    # usage-limited search, whose large-neighbourhood regions the script times.
    monkeypatch.setattr(exact, "MAX_ILP_NONZEROS", 0)
    original = lns.solve_region
    records = lns_regions.timed_regions(ROOT / "tests" / "data" / "iopddl_example.json", 2.0, 0)
    assert lns.solve_region is original  # put back
    assert records and all(r["units"] > 0 and r["seconds"] >= 0 and r["columns"] > 0 for r in records)
    cells = lns_regions.row("example", 0, records, big_columns=0)
    assert cells[:3] == ["example", "0", str(len(records))] and cells[4].endswith("M")
    big = [{"columns": 10, "mip": True, "units": 2e6, "seconds": 1.0, "iterations": 1000}] * 2
    small = [{"columns": 3, "mip": False, "units": 1e6, "seconds": 1.0, "iterations": 10}]
    cells = lns_regions.row("x", 1, big + small, big_columns=5)
    assert cells[3:] == ["2", "1.67M", "2", "2", "2.00M", "1.00-1.00"]
    assert len(cells) == len(lns_regions.COLUMNS)


def test_lns_regions_on_the_bundled_example(tmp_path: Path) -> None:
    (tmp_path / "example.json").write_bytes((ROOT / "tests" / "data" / "iopddl_example.json").read_bytes())
    out = run("lns_regions.py", "--problems", "example", "--bench-dir", str(tmp_path), "--time-limit", "2")
    header, _, example = out.strip().splitlines()
    assert header.startswith("| problem | seed | regions | MIPs | units per thread s | large regions |")
    assert example.startswith("| example | 0 | ")  # solved by the exact path: no regions, no rates


def test_restricted_rounds_times_every_logged_round() -> None:
    # Small problems do not reach the restricted phase with a round to log (the example, random ones: the
    # exact path or the earlier phases settle them), so this runs on the contest's M, where one is.
    from solver_cases import contest_file

    path = contest_file("M")
    if path is None:
        pytest.skip("the contest's problem M is not on this machine (AUTOPAR_IOPDDL_DIR)")
    sys.path.insert(1, str(ROOT))
    from benchmarks import restricted_rounds

    from autopar.solver import restricted

    phase, repair = restricted.price_memory_restricted, restricted.fast_path.repair
    rounds = restricted_rounds.measure(path, 180.0, 0)
    assert restricted.price_memory_restricted is phase and restricted.fast_path.repair is repair
    assert rounds and all(
        wall > 0 and entries > 0 and record["work"] > record["posting"] > 0
        for wall, record, entries in rounds
    )
    cells = restricted_rounds.row("M", 0, rounds)
    assert cells[:3] == ["M", "0", str(len(rounds))] and len(cells) == len(restricted_rounds.COLUMNS)


def test_restricted_rounds_on_the_bundled_example(tmp_path: Path) -> None:
    # The example is solved exactly: the script runs and says that no restricted round ran.
    (tmp_path / "example.json").write_bytes((ROOT / "tests" / "data" / "iopddl_example.json").read_bytes())
    out = run("restricted_rounds.py", "--problems", "example", "--bench-dir", str(tmp_path), "--seeds", "0,1")
    header, _, *rows = out.strip().splitlines()
    assert header.startswith("| problem | seed | rounds |") and header.endswith("| charged / wall |")
    assert rows == ["| example | 0 | 0 | - | - | - | - | - |", "| example | 1 | 0 | - | - | - | - | - |"]


def test_restricted_rounds_rows_give_the_charge_against_the_wall() -> None:
    sys.path.insert(1, str(ROOT))
    from benchmarks import restricted_rounds

    from autopar.solver.cfn_pricing import CFN_WORK_PER_SECOND

    # Charged: the units the round's record carries, in seconds at the phase's rate.
    record = {"posting": 3e6, "backtracks": 1000, "work": 6e6}
    charged = 6e6 / CFN_WORK_PER_SECOND
    cells = restricted_rounds.row(
        "x", 2, [(charged / 2, record, 2_500_000), (charged / 4, record, 2_500_000)]
    )
    assert cells[:5] == ["x", "2", "2", "2.50M", "1,000"]
    assert cells[7] == "2.00-4.00"
    assert restricted_rounds.row("y", 0, []) == ["y", "0", "0", "-", "-", "-", "-", "-"]


@pytest.mark.parametrize("script", ["presolve.py", "iopddl.py", "lns_regions.py", "restricted_rounds.py"])
def test_an_unknown_problem_is_named_before_any_work(tmp_path: Path, script: str) -> None:
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--problems", "A,Z", "--bench-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=script_env(),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: --problems: unknown problem 'Z'")
    assert result.stdout == ""  # checked before the table starts (A's file is missing too: never read)


@pytest.mark.parametrize(
    ("script", "args", "option"),
    [
        ("iopddl.py", ("--problems", "B"), "--bench-dir"),
        ("ilp_backends.py", ("--problem", "G"), "--bench-dir"),
        ("presolve.py", ("--problems", "G"), "--bench-dir"),
        ("lns_regions.py", ("--problems", "G"), "--bench-dir"),
        ("restricted_rounds.py", ("--problems", "A"), "--bench-dir"),
        ("phase_walls.py", ("--problems", "A"), "--bench-dir"),
        ("cfn_rounds.py", ("--problems", "A"), "--bench-dir"),
        ("intra_op_problems.py", ("--models", "", "--contest", "G"), "--contest-dir"),
    ],
)
def test_contest_data_is_asked_for_not_assumed(script: str, args: tuple[str, ...], option: str) -> None:
    # The contest's files are not shipped: without the option or AUTOPAR_IOPDDL_DIR a benchmark says how to
    # give them, in one line, and exits 1.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AUTOPAR_IOPDDL_DIR")}
    if IN_TREE:
        env["PYTHONPATH"] = str(PACKAGE_DIR)
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {option}: no folder of contest problems given; pass {option} DIR or set AUTOPAR_IOPDDL_DIR "
        "to a folder holding asplos-2025-iopddl-<letter>.json.gz"
    )


def test_contest_data_folder_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if IN_TREE:
        env["PYTHONPATH"] = str(PACKAGE_DIR)
    result = subprocess.run(
        [sys.executable, "benchmarks/iopddl.py", "--problems", "B", "--bench-dir", str(missing)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: --bench-dir: {missing} is not a folder"


def test_planning_budget() -> None:
    out = run("planning_budget.py", "--models", "mlp-sgd", "--meshes", "2x4", "--long", "2")
    assert "| mlp-sgd | 2x4 |" in out and "worst default / best" in out


def test_first_call() -> None:
    out = run("first_call.py", "--models", "mlp", "--repeat", "1")
    assert "| mlp |" in out and "autopar-opt --version" in out


@pytest.mark.parametrize("method, model", [("ShardParallel", "moe"), ("Zero3Parallel", "convnet")])
def test_plan_fidelity(method: str, model: str) -> None:
    out = run("plan_fidelity.py", "--models", model, "--meshes", "2x4", "--method", method)
    assert f"| {model} | 2x4 |" in out and "involuntary full rematerializations: 0" in out


def test_loops() -> None:
    out = run("loops.py", "--trips", "4", "--forms", "scan,python")
    assert "| scan | 4 |" in out and "| python | 4 |" in out and "| NO |" not in out


def test_mesh_axes() -> None:
    out = run("mesh_axes.py", "--models", "resnet", "--meshes", "2x4")
    assert "| resnet | 2x4 |" in out and "plans worse than their embedded one-axis plan: 0" in out


@pytest.mark.parametrize("script", ["intra_op.py", "planning_time.py", "ilp_backends.py"])
def test_help(script: str) -> None:
    assert "usage:" in run(script, "--help")


def test_pipeline() -> None:
    out = run(
        "pipeline.py",
        "--layers",
        "4",
        "--width",
        "32",
        "--batch",
        "64",
        "--micro-batches",
        "4",
        "--steps",
        "1",
    )
    for kind in ("processes", "in-process"):
        table = out.split(f"{kind}: MLP")[1].split(": MLP")[0]
        rows = [line.split()[0] for line in table.splitlines()[2:] if line.strip()]
        assert rows[:5] == ["sequential", "1f1b", "gpipe", "zb-h1", "interleaved-1f1b"], table
        assert "peak MiB per mesh" in table


def test_plan_digest() -> None:
    out = run("plan_digest.py", "--models", "mlp-sgd", "--meshes", "2x4")
    assert out.startswith("mlp-sgd 2x4 objective ") and "optimal" in out


def test_ray_pipeline() -> None:
    out = run(
        "ray_pipeline.py",
        "--layers",
        "4",
        "--width",
        "32",
        "--batch",
        "32",
        "--micro-batches",
        "4",
        "--steps",
        "1",
    )
    rows = {line.split("  ")[0].strip(): line.split()[-4:] for line in out.splitlines()[2:] if line.strip()}
    assert set(rows) == {"local processes", "ray, 2 hosts"}, out
    between, planned = float(rows["ray, 2 hosts"][-2]), float(rows["ray, 2 hosts"][-1])
    # Each slice its plan lists crosses once, nothing else (printed to 0.1 KiB).
    assert float(rows["local processes"][-2]) == 0 and between == planned > 0


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick calibration of this machine, shared by the cost-model benchmarks' tests."""
    profile = tmp_path_factory.mktemp("profile") / "p.json"
    calibrate = subprocess.run(
        [sys.executable, "-m", "autopar.calibrate", "--quick", "-o", str(profile)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(PACKAGE_DIR)),
        timeout=600,
    )
    assert calibrate.returncode == 0, calibrate.stderr[-3000:]
    return profile


def test_cost_model(quick_profile: Path) -> None:
    profile = quick_profile
    args = ("--profile", str(profile), "--programs", "mlp", "--repeats", "1", "--breakdown")
    out = run("cost_model.py", *args, "--compare", f"again={profile}", "--plan", "2x4:data,data")
    assert "| solver 8 |" in out and "| model x data 2x4 |" in out and "Spearman" in out
    # --plan adds a plan of the family grid, planned, timed and reported like the seven: a row in each
    # set's report and in the breakdown.
    assert out.count("| data,data 2x4 | ") == 3
    # --compare: both sets of plans timed in one window, each reported, then against the pooled timing.
    assert "### mlp [profile]" in out and "### mlp [again]" in out
    assert "mlp [profile]: Spearman against the pooled timing" in out
    assert "mlp [again]: Spearman against the pooled timing" in out
    assert "| per step: page faults | context switches | system s | user s | idle core s |" in out
    assert "load average" in out
    assert "| plan | compute s | communication s (model) | compiled collectives, priced s |" in out
    assert "the measurement's own agreement (odd against even repeats, Spearman): n/a (one repeat)" in out


def test_cost_model_names_an_unknown_program_before_any_work() -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/cost_model.py", "--programs", "mlp,rnn"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: --programs 'mlp,rnn': choose from ['convnet', 'mlp', 'transformer']"
    ]


def test_cost_model_prices_a_merged_compiled_collective_as_its_parts() -> None:
    import dataclasses

    sys.path.insert(0, str(ROOT))
    from benchmarks import cost_model

    from autopar import cost

    table = cost.tables.CollectiveTable("all_reduce", (0,), (1e3, 1e6), (1e-4, 1e-3), merged_operand=5e-5)
    mesh = cost.make_mesh((8,), alpha=1e-5, beta=1e-10, tables=[table])
    # XLA's one all-reduce of 10 gradients: the table's time at the merged size and 9 further operands.
    merged = cost_model.compiled_price(mesh, "all-reduce", 1e4, [0], operands=10)
    assert merged == pytest.approx(table.at(1e4) + 9 * 5e-5)
    assert cost_model.compiled_price(mesh, "all-reduce", 1e4, [0], operands=1) == table.at(1e4)
    unmeasured = cost.make_mesh(
        (8,), alpha=1e-5, beta=1e-10, tables=[dataclasses.replace(table, merged_operand=0)]
    )
    assert cost_model.compiled_price(unmeasured, "all-reduce", 1e4, [0], operands=10) == pytest.approx(
        table.at(1e4)
    )
    gather = cost_model.compiled_price(mesh, "all-gather", 1e4, [0], operands=10)
    assert gather == mesh.all_gather(1e4, [0])  # no merged price for gathers


def test_cost_model_dots_alone(quick_profile: Path) -> None:
    args = ("--profile", str(quick_profile), "--programs", "mlp", "--repeats", "2", "--steps", "1")
    out = run("cost_model.py", *args, "--plan", "2x4:data,data", "--dots-alone")
    rows = [
        line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and line.count("|") == 7
    ]
    adjusted = {r[0].strip(): [float(c) for c in r[1:]] for r in rows if r[0].strip() != "plan"}
    assert len(adjusted) == 8 and "data,data 2x4" in adjusted
    for predicted, price, took, total, measured in adjusted.values():
        assert price > 0 and took > 0 and measured > 0
        assert total == pytest.approx(predicted - price + took, rel=1e-3, abs=1e-4)
    assert "mlp: Spearman with the dots at their time alone" in out


def test_cost_model_compare_names_a_bad_variant_before_any_work(tmp_path: Path) -> None:
    from benchmarks import cost_model

    with pytest.raises(SystemExit, match="expected NAME=P8.json"):
        cost_model.parse_variant("no-equals-sign")
    with pytest.raises(SystemExit, match="--compare fused: no profile file"):
        cost_model.parse_variant(f"fused={tmp_path / 'missing.json'}")


def test_cost_model_plan_names_a_bad_plan_before_any_work() -> None:
    from benchmarks import cost_model

    assert cost_model.parse_plan("2x4:data,data") == ("data,data 2x4", (2, 4), "data,data")
    assert cost_model.parse_plan("8:zero3") == ("zero3 8", (8,), "zero3")
    for bad in ("2x4", "2x4:data", "axb:data,data", "8:"):
        with pytest.raises(SystemExit, match="expected MESH:FAMILY"):
            cost_model.parse_plan(bad)
    with pytest.raises(SystemExit, match="1 or 2 axes over all 8 devices"):
        cost_model.parse_plan("2x2:data,data")


def can_run_real_time() -> bool:
    return shutil.which("chrt") is not None and subprocess.run(["chrt", "-r", "1", "true"]).returncode == 0


def test_cost_model_calibrates_at_normal_priority_under_isolated_sh(tmp_path: Path) -> None:
    # isolated.sh runs the benchmark at real-time priority, and a child inherits it; the calibration
    # drops it (a real-time calibration measures faster than steps run). The calibration says when it
    # runs at real-time priority: it does when started plainly from this process, not from the benchmark.
    if not can_run_real_time():
        pytest.skip("no chrt or no permission for real-time priority here")
    args = ["--devices", "1", "--quick", "-o", str(tmp_path / "p.json")]
    probe = (
        "import subprocess, sys\n"
        "from benchmarks import cost_model\n"
        f"args = {args!r}\n"
        "plain = subprocess.run([sys.executable, '-m', 'autopar.calibrate', *args], capture_output=True,\n"
        "                       text=True).stderr\n"
        "print('plain:', 'real-time priority' in plain)\n"
        "print('benchmark:', 'real-time priority' in cost_model.run_calibration(args))\n"
    )
    result = subprocess.run(
        ["chrt", "-r", "1", sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["plain: True", "benchmark: False"]


def test_cost_model_calibrates_both_meshes_with_one_measurement_of_the_devices() -> None:
    probe = (
        "import json\n"
        "from benchmarks import cost_model\n"
        "paths = cost_model.calibrate_meshes(quick=True)\n"
        "print(json.dumps({k: json.load(open(p)) for k, p in paths.items()}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, env=script_env(), timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    profiles = json.loads(result.stdout)
    assert profiles["1"]["mesh"]["shape"] == [8] and profiles["2"]["mesh"]["shape"] == [2, 4]
    assert profiles["1"]["device"] == profiles["2"]["device"]  # --device-figures: measured once
    assert "calibrated 8 and 2x4" in result.stderr


def test_cost_model_names_a_failed_calibration() -> None:
    from benchmarks import cost_model

    with pytest.raises(SystemExit, match=r"calibration failed \(python -m autopar.calibrate --mesh 3x3"):
        cost_model.run_calibration(["--mesh", "3x3", "-o", os.devnull])


def test_cost_model_split_half_ranks_odd_against_even_repeats() -> None:
    from benchmarks import cost_model

    steady = [cost_model.Timed(seconds=[s, s * 1.01, s, s * 1.01]) for s in (0.3, 0.1, 0.2)]
    assert cost_model.split_half(steady) == pytest.approx(1.0)
    # The two halves rank the three plans in opposite orders.
    swapped = [cost_model.Timed(seconds=[a, b]) for a, b in ((0.1, 0.3), (0.2, 0.2), (0.3, 0.1))]
    assert cost_model.split_half(swapped) == pytest.approx(-1.0)
    assert cost_model.split_half([cost_model.Timed(seconds=[0.1])]) is None


def test_cost_model_idle_core_time_is_the_cores_wall_less_the_cpu_work() -> None:
    from benchmarks import cost_model

    # Two repeats on 2 cores: 100 ms steps with 150 + 10 ms of CPU leave 40 ms of a core idle; 120 ms
    # steps with 200 + 20 ms leave 20 ms. The median of the two.
    timed = cost_model.Timed(seconds=[0.100, 0.120], user=[0.150, 0.200], system=[0.010, 0.020])
    assert timed.idle_core_seconds(2) == pytest.approx(0.030)
    assert cost_model.Timed(seconds=[0.1], user=[0.2], system=[0.0]).idle_core_seconds(2) == pytest.approx(0)


def test_cost_model_probes() -> None:
    out = run("cost_model_probes.py", "--repeats", "1")
    assert out.startswith("narrow dots: c = ") and "3 x 3 convolutions, rate / matmul rate:" in out
    # Two sizes and two kinds, each over groups of 2, 4 and 8.
    assert out.count("interference") == 12 and out.count("group of 8") == 4


def test_cost_model_cpu_sorts_perf_samples_by_kind_of_work() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks import cost_model_cpu

    report = """
    30.00%  300  [.] ynn::dot_fp32_5x64x1_1x16x1_avx512
    10.00%  100  [.] Eigen::internal::gemm_pack_colmajor_block<float, long>
     9.00%   90  [.] 0x00007fb75c8e9141
     8.00%   80  [k] finish_task_switch.isra.0
     5.00%   50  [.] _int_malloc
     4.00%   40  [.] __memmove_avx512_unaligned_erms
     3.00%   30  [.] ynn::transpose_x32_avx512
     2.00%   20  [.] xla::cpu::(anonymous namespace)::ReduceScatter<(xla::PrimitiveType)11>
     1.00%   10  [k] clear_page_erms
     1.00%   10  [.] PyEval_EvalFrameDefault
    """
    got = cost_model_cpu.categorize(report)
    assert got == {
        "fused dots": 300,
        "unfused dots": 100,
        "transposes": 30,
        "compiled loops": 90,
        "other kernels": 0,
        "collectives": 20,
        "copies": 40,
        "allocation": 50,
        "scheduling": 80,
        "kernel, other": 10,
        "other": 10,
    }


def test_cost_model_cpu_counts_the_dots_xla_leaves_unfused() -> None:
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(ROOT))
    from benchmarks import cost_model_cpu

    a, b = jnp.ones((64, 32)), jnp.ones((64, 48))
    # On the pinned jaxlib's CPU backend a dot whose left operand contracts its leading dimension runs on
    # its own; the same product with the contraction on the minor dimension goes into a fused kernel.
    transposed = jax.jit(lambda a, b: jnp.einsum("km,kn->mn", a, b)).lower(a, b).compile().as_text()
    w = jnp.ones((32, 48))
    plain = jax.jit(lambda a, w: a @ w).lower(a, w).compile().as_text()
    assert cost_model_cpu.unfused_dots(transposed) == 1
    assert cost_model_cpu.unfused_dots(plain) == 0


def test_cost_model_cpu_needs_perf(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # no perf on PATH
    if IN_TREE:
        env["PYTHONPATH"] = str(PACKAGE_DIR)
    result = subprocess.run(
        [sys.executable, "benchmarks/cost_model_cpu.py", "--profile", "unused.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: this benchmark samples the host with Linux perf")
    )


def _perf_can_sample() -> bool:
    """Linux perf is installed and may sample a process of ours (root, or perf_event_paranoid <= 1)."""
    if shutil.which("perf") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = ["perf", "record", "-q", "-o", os.path.join(folder, "p.data"), "--", "true"]
        return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.skipif(not _perf_can_sample(), reason="Linux perf cannot sample here")
def test_cost_model_cpu(quick_profile: Path) -> None:
    profile = quick_profile
    out = run(
        "cost_model_cpu.py",
        "--profile",
        str(profile),
        "--programs",
        "mlp",
        "--plans",
        "data 8",
        "--seconds",
        "1",
    )
    row = next(line for line in out.splitlines() if line.startswith("| data 8 |"))
    cells = [float(c) for c in row.strip("|").split("|")[1:]]
    model_compute, _, xla_dots, xla_loops, measured, host_cpu, unfused, *kinds = cells
    assert model_compute > 0 and xla_dots > 0 and xla_loops >= 0 and measured > 0 and unfused == int(unfused)
    assert host_cpu == pytest.approx(sum(kinds), abs=0.1 * len(kinds)) and host_cpu > 0


def test_cost_model_trace(quick_profile: Path) -> None:
    out = run(
        "cost_model_trace.py",
        *("--profile", str(quick_profile), "--programs", "mlp", "--plans", "data 8,model 8", "--steps", "2"),
    )
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:-1]
        for line in out.splitlines()
        if "| data 8 |" in line or "| model 8 |" in line
    }
    assert set(rows) == {"data 8", "model 8"}
    for cells in rows.values():
        compute, communication, step, in_collectives, thunks, meetings = (float(c) for c in cells[:6])
        assert compute > 0 and communication > 0 and step > 0 and 0 < in_collectives < step
        assert thunks >= 1 and meetings >= thunks  # every collective thunk meets at least once
        assert cells[6].strip()  # the other thunks, named
    # Data parallel ends in one all-reduce, XLA's merge of 9 (4 weight and 4 bias gradients, the loss),
    # and XLA's CPU runtime meets once per operand: the fact behind the profile's merged_operand.
    _, _, _, _, thunks, meetings = (float(c) for c in rows["data 8"][:6])
    assert thunks == 1 and meetings == 9


def test_cost_model_trace_sums_thunks_per_device_and_step() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks import cost_model_trace as trace

    events = [
        ("ThunkExecutor::Execute", 10_000_000),  # holds the thunks below: not counted again
        ("all-reduce.55", 4_000_000),
        ("Rendezvous", 1_000_000),
        ("Rendezvous", 1_000_000),
        ("all-gather-start.3", 2_000_000),
        ("ynn_fusion.5", 3_000_000),
        ("ynn_fusion", 1_000_000),
        ("Wait: pending_threads=3/8", 5_000_000),  # annotations, not thunks
        ("Wait for rendezvous callback", 5_000_000),
        ("end: ynn_fusion.5", 5_000_000),
        ("convolution.1.2", 500_000),
    ]
    where = trace.summarize(events, steps=1, devices=2)
    assert where["collective_s"] == pytest.approx(3e-3) and where["collective_thunks"] == 1.0
    assert where["meetings"] == 1.0
    assert where["others"] == [("ynn_fusion", pytest.approx(2e-3)), ("convolution", pytest.approx(2.5e-4))]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--plans", "solver 9"), "unknown plans ['solver 9']"),
        (("--programs", "rnn"), "--programs 'rnn': choose from"),
    ],
)
@pytest.mark.parametrize("script", ["cost_model_trace.py", "cost_model_dots.py"])
def test_cost_model_trace_and_dots_name_bad_input_before_any_work(
    script: str, args: tuple[str, ...], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=120,
    )
    assert result.returncode == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_cost_model_dots(quick_profile: Path) -> None:
    args = ("--profile", str(quick_profile), "--programs", "mlp", "--plans", "data 8,model 8", "--detail")
    out = run("cost_model_dots.py", *args)
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in out.splitlines()
        if line.startswith("| data 8 |") or line.startswith("| model 8 |")
    }
    for dots, price, took, ratio in rows.values():
        # The MLP's 4 layers: 4 forward dots, 4 weight-gradient and 3 input-gradient dots.
        assert int(dots) == 11 and float(price) > 0 and float(took) > 0
        assert float(ratio) == pytest.approx(float(took) / float(price), abs=0.02)
    assert "|   " in out and "(m " in out  # --detail: the distinct shapes


def test_cost_model_dots_reads_every_dot_of_a_compiled_module() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks import cost_model_dots as dots_lib

    hlo = "\n".join(
        [
            "%fused_computation.5 (param_0.7: f32[256,128], param_1.7: f32[128,768]) -> f32[256,768] {",
            "  %param_0.7 = f32[256,128]{1,0} parameter(0)",
            "  %param_1.7 = f32[128,768]{1,0} parameter(1)",
            "  ROOT %dot.98 = f32[256,768]{1,0} dot(%param_0.7, %param_1.7), lhs_contracting_dims={1}, "
            "rhs_contracting_dims={0}",
            "}",
            "",
            "ENTRY %main (p0: f32[4,128,64], p1: f32[4,64,128]) -> f32[4,128,128] {",
            "  %p0 = f32[4,128,64]{2,1,0} parameter(0)",
            "  %p1 = f32[4,64,128]{2,1,0} parameter(1)",
            "  ROOT %dot.1 = f32[4,128,128]{2,1,0} dot(%p0, %p1), lhs_batch_dims={0}, "
            "lhs_contracting_dims={2}, rhs_batch_dims={0}, rhs_contracting_dims={1}",
            "}",
        ]
    )
    fused, attention = dots_lib.program_dots(hlo)
    assert (fused.lhs, fused.rhs, fused.contracting, fused.batch) == (
        (256, 128),
        (128, 768),
        ((1,), (0,)),
        ((), ()),
    )
    assert fused.gemm == (256, 768, 128) and fused.flops == 2 * 256 * 768 * 128
    assert attention.batch == ((0,), (0,)) and attention.gemm == (128, 128, 64)
    assert attention.flops == 4 * 2 * 128 * 128 * 64
    # The model's price: FLOPs at the device rate, times the narrow-dot factor of the smallest dimension.
    assert dots_lib.priced(attention, 1e10, 0.0) == pytest.approx(attention.flops / 1e10)
    assert dots_lib.priced(attention, 1e10, 16.0) == pytest.approx(attention.flops / 1e10 * (1 + 16 / 64))


def test_cost_model_dots_narrow_compares_each_narrow_dimension_with_the_square(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks import cost_model_dots as dots_lib

    # A device that runs every dot at 1e10 FLOP/s, whatever its shape: every slowdown is 1.
    monkeypatch.setattr(dots_lib, "timed_alone", lambda dot, mesh: dot.flops / 1e10)
    dots_lib.narrow(None, 10.7)
    out = capsys.readouterr().out
    assert "| 512^3 at 10.0 GFLOP/s | 16 | 1.00 | 1.00 | 1.00 | 1.67 |" in out
    assert "| 1024^3 at 10.0 GFLOP/s | 256 | 1.00 | 1.00 | 1.00 | 1.04 |" in out
    assert "| tn | 10.0 | 10.0 |" in out
    tn, nt = dots_lib._layout(32, 1024, 512, "tn"), dots_lib._layout(32, 1024, 512, "nt")
    assert (tn.lhs, tn.rhs, tn.contracting) == ((1024, 32), (1024, 512), ((0,), (0,)))
    assert (nt.lhs, nt.rhs, nt.contracting) == ((32, 1024), (512, 1024), ((1,), (1,)))
    assert tn.gemm == nt.gemm == (32, 512, 1024)


def test_cost_model_cpu_prices_the_compiled_program() -> None:
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(ROOT))
    from benchmarks import cost_model_cpu

    x, w = jnp.ones((256, 128)), jnp.ones((128, 512))
    hlo = jax.jit(lambda x, w: jnp.tanh(x @ w) * 2.0 + 1.0).lower(x, w).compile().as_text()
    flops, bandwidth = 1e10, 1e9
    priced = cost_model_cpu.compiled_compute(hlo, flops, bandwidth)
    matmul = 2 * 256 * 128 * 512 / flops
    # The dot is priced by its FLOPs (it is compute-bound at these rates), at least once and at most
    # with the elementwise tail's bytes on top; whatever XLA does not fuse into it is a loop over the
    # 256 x 512 result (read and written once: 1 MiB at 1e9 B/s).
    assert matmul <= priced["dots"] <= matmul + 2 * 256 * 512 * 4 / bandwidth
    assert priced["loops"] in (0.0, pytest.approx(2 * 256 * 512 * 4 / bandwidth))
    assert cost_model_cpu.compiled_compute(hlo, 2 * flops, bandwidth)["dots"] < priced["dots"]


def test_phase_walls_on_the_bundled_example(tmp_path: Path) -> None:
    # The example takes the exact path: of the timed phases only toulbar2's priced optima run (before HiGHS
    # proves the whole ILP), one row per seed, with no HiGHS rounds of a search.
    (tmp_path / "example.json").write_bytes((ROOT / "tests" / "data" / "iopddl_example.json").read_bytes())
    out = run("phase_walls.py", "--problems", "example", "--bench-dir", str(tmp_path), "--seeds", "0,1")
    header, _, *rows = out.strip().splitlines()
    assert header.startswith("| problem | seed | score | run wall / limit | phase |")
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
    assert [c[:3] + c[4:5] for c in cells] == [["example", s, "1.0000", "toulbar2 priced"] for s in "01"]
    assert all(c[-2:] == ["-", "-"] for c in cells)


def test_phase_walls_times_each_phase_of_a_usage_limited_run() -> None:
    # On the contest's M every usage-limited phase runs; each is timed and its charge read, and the solver's
    # functions are restored afterwards.
    from solver_cases import contest_file

    path = contest_file("M")
    if path is None:
        pytest.skip("the contest's problem M is not on this machine (AUTOPAR_IOPDDL_DIR)")
    sys.path.insert(1, str(ROOT))
    from benchmarks import phase_walls

    from autopar.solver import lns, pricing

    real = (pricing.price_memory, lns.lns, lns.solve_region)
    rows = phase_walls.measure("M", path, 0, work_only=False)
    assert (pricing.price_memory, lns.lns, lns.solve_region) == real
    phases = [r[4] for r in rows]
    assert phases[0] == "toulbar2 priced" and "priced search" in phases and phases[-1] == "final search"
    for r in rows:
        assert len(r) == len(phase_walls.COLUMNS) and float(r[6]) >= 0 and float(r[7]) >= 0
    searches = [r for r in rows if r[4] in ("priced search", "final search")]
    assert all(r[9] != "-" and 0.0 <= float(r[10]) <= 1.0 for r in searches)


@pytest.mark.parametrize("script", ["lns_regions.py", "restricted_rounds.py", "phase_walls.py"])
def test_seeds_that_are_not_integers_are_one_line_errors(script: str, tmp_path: Path) -> None:
    (tmp_path / "example.json").write_bytes((ROOT / "tests" / "data" / "iopddl_example.json").read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if IN_TREE:
        env["PYTHONPATH"] = str(PACKAGE_DIR)
    args = ["--problems", "example", "--bench-dir", str(tmp_path), "--seeds", "0,x"]
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert result.returncode == 1 and result.stdout == ""
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: --seeds: expected comma-separated integers, got '0,x'"
    )


def test_cfn_rounds_on_the_bundled_example(tmp_path: Path) -> None:
    # One row per problem with the round's wall against both charges, and the range of wall / charged.
    (tmp_path / "example.json").write_bytes((ROOT / "tests" / "data" / "iopddl_example.json").read_bytes())
    out = run("cfn_rounds.py", "--problems", "example", "--bench-dir", str(tmp_path), "--repeats", "2")
    header, _, row, summary = out.strip().splitlines()
    assert header.startswith("| problem | entries M | peeled entries M | functional entries M | wall s |")
    cells = row.strip("| ").split(" | ")
    assert cells[0] == "example" and len(cells) == 9 and float(cells[4]) >= 0 and float(cells[6]) > 0
    assert summary.startswith("wall / charged over 1 problems: ")


def test_cfn_rounds_rejects_a_round_count_below_one(tmp_path: Path) -> None:
    (tmp_path / "example.json").write_bytes((ROOT / "tests" / "data" / "iopddl_example.json").read_bytes())
    result = subprocess.run(
        [sys.executable, "benchmarks/cfn_rounds.py", "--problems", "example", "--bench-dir", str(tmp_path)]
        + ["--repeats", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=script_env(),
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --repeats: expected at least 1, got 0"
