"""`python -m autopar.calibrate`: a profile the cost model and the intra-op pass read; errors as one line."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import autopar
from autopar import cost
from autopar.ir import io
from autopar.passes import intra_op

PYTHON_DIR = Path(autopar.__file__).resolve().parents[1]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mlp_train_step.mlir"


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))  # the conftest's 8 virtual CPU devices too
    return subprocess.run(
        [sys.executable, "-m", "autopar.calibrate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_help_gives_the_whole_description() -> None:
    r = run("--help")  # it once showed one line of the docstring, cut mid-sentence
    assert r.returncode == 0 and r.stderr == ""
    assert "stdout stays\nempty" in r.stdout and "exit code 1" in r.stdout


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibrate") / "profile.json"
    start = time.perf_counter()
    result = run("--devices", "4", "--mesh", "2x2", "--quick", "-o", str(path))
    return path, result, time.perf_counter() - start


def test_quick_run_writes_a_profile_load_profile_reads(quick_profile):
    path, result, seconds = quick_profile
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # the summary goes to stderr
    assert "wrote" in result.stderr and "all_reduce" in result.stderr
    assert seconds < 240  # generous: the machine is shared
    data = json.loads(path.read_text())
    assert data["mesh"]["shape"] == [2, 2] and data["calibration"]["device_ids"] == [0, 1, 2, 3]
    overrides, device = cost.load_profile(path, (2, 2))
    assert device.flops > 0 and device.memory_bandwidth > 0
    assert len(overrides["alpha"]) == 2 and len(overrides["beta"]) == 2
    assert set(overrides["collectives"]) == {"all_reduce", "all_gather", "reduce_scatter", "all_to_all"}
    # Measured tables of each kind over each axis and over both together (the cost model interpolates
    # them), with the sizes measured; every table prices its own samples exactly.
    tables = {(t.kind, t.axes): t for t in overrides["tables"]}
    kinds = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")
    assert set(tables) <= {(k, a) for k in kinds for a in ((0,), (1,), (0, 1))}
    assert {a for _, a in tables} == {(0,), (1,), (0, 1)} and len(tables) >= 10
    for table in tables.values():  # sizes a quick run measures (one it could not time is left out)
        assert set(table.sizes) <= {1024.0 * 16**k for k in range(5)} and len(table.sizes) >= 2
        assert all(table.at(b) == s for b, s in zip(table.sizes, table.seconds, strict=True))
    # The gradients' kinds carry their measured cost per further merged operand (under a millisecond for
    # a 1 KiB collective over 2 or 4 devices: not a whole step); the others none.
    for (kind, _), table in tables.items():
        if kind in ("all_reduce", "reduce_scatter"):
            assert 0 <= table.merged_operand < 1e-3
        else:
            assert table.merged_operand == 0
    entries = data["mesh"]["collectives"]["all_reduce"]["tables"]
    assert all("merged_operand" in e for e in entries) and len(entries) == 3
    assert [p.name for p in path.parent.iterdir()] == ["profile.json"]  # the temporary file was renamed


def test_the_intra_op_pass_plans_under_the_profile(quick_profile):
    path, result, _ = quick_profile
    assert result.returncode == 0, result.stderr
    module = io.load(EXAMPLE)
    autopar.passes.run(module, "builtin.module(autopar-inline)")
    # The pass prices with the profile: the calibrated objective is not the default one.
    calibrated = intra_op.estimate(module, (2, 2), cluster_profile=str(path))[0]
    assert 0 < calibrated < float("inf") and calibrated != intra_op.estimate(module, (2, 2))[0]
    autopar.passes.run(module, f"builtin.module(autopar-intra-op{{mesh=2x2 cluster-profile={path}}})")
    assert "autopar.objective" in str(module)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--devices", "0,99"], "unknown device id(s) [99]"),
        (["--devices", "16"], "--devices 16"),
        (["--devices", "4", "--mesh", "2x4"], "has 8 devices, 4 were chosen"),
        (["--mesh", "2x2x2x1"], "1 to 3 axes"),
        (["-o", "/nonexistent-folder/p.json"], "does not exist"),
        (["-o", "/"], "is a directory"),
        (
            ["--device-figures", "/nonexistent-folder/p.json"],
            "--device-figures /nonexistent-folder/p.json does not exist",
        ),
    ],
)
def test_bad_input_is_one_error_line(tmp_path, args, message):
    if "-o" not in args:
        args = [*args, "-o", str(tmp_path / "p.json")]
    result = run(*args)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not (tmp_path / "p.json").exists()


def test_device_figures_are_taken_from_an_earlier_profile(quick_profile, tmp_path):
    # A second mesh of the same devices prices compute exactly as the first profile does.
    path, result, _ = quick_profile
    assert result.returncode == 0, result.stderr
    second = tmp_path / "p.json"
    done = run("--devices", "4", "--quick", "--device-figures", str(path), "-o", str(second))
    assert done.returncode == 0, done.stderr
    first, again = json.loads(path.read_text()), json.loads(second.read_text())
    assert again["mesh"]["shape"] == [4] and again["device"] == first["device"]
    assert again["calibration"]["device_figures_from"] == str(path.resolve())
    assert "all_reduce" in again["mesh"]["collectives"]  # the collectives are measured all the same


@pytest.mark.parametrize(
    "content",
    [
        "{}",
        "[1, 2]",
        '{"device": {"flops": "fast"}}',
        '{"device": {"flops": 0, "memory_bandwidth": 1e9}}',
        '{"device": {"flops": 1e10, "memory_bandwidth": 1e9, "dot_half_rate_width": -1}}',
        "not json",
    ],
)
def test_device_figures_without_figures_are_one_error_line(tmp_path, content):
    source = tmp_path / "old.json"
    source.write_text(content)
    result = run("--quick", "--device-figures", str(source), "-o", str(tmp_path / "p.json"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: --device-figures")
    assert not (tmp_path / "p.json").exists()


def test_a_calibration_at_real_time_priority_says_so(tmp_path, quick_profile):
    # Under chrt the devices' chains run faster than steps do (docs/cost_model.md): the user is told.
    _, plain, _ = quick_profile
    assert "real-time" not in plain.stderr
    if shutil.which("chrt") is None or subprocess.run(["chrt", "-r", "1", "true"]).returncode != 0:
        pytest.skip("no chrt or no permission for real-time priority here")
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    args = ["--devices", "1", "--quick", "-o", str(tmp_path / "p.json")]
    command = ["chrt", "-r", "1", sys.executable, "-m", "autopar.calibrate", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "note: this process runs at real-time priority" in result.stderr


def test_unwritable_output_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        result = run("--quick", "-o", str(folder / "p.json"))
        assert (
            result.returncode == 1 and result.stderr.startswith("error:") and "not writable" in result.stderr
        )
    finally:
        folder.chmod(0o700)
