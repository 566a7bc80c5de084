"""`autopar-opt --plan-report=FILE`: the JSON form parses and matches the planned module; the IR on stdout
is what the same command prints without the flag; a pipeline that plans nothing writes nothing."""

import json
from pathlib import Path

from autopar import opt
from autopar.runtime.hlo import COLLECTIVE_KINDS

ROOT = Path(__file__).resolve().parents[1]
INPUT = str(ROOT / "tests" / "lit" / "Inputs" / "mlp_step.mlir")
SHARD = "builtin.module(autopar-shard{mesh=2x4})"


def test_json_report_beside_unchanged_ir(tmp_path, capsys):
    assert opt.main([INPUT, f"--pass-pipeline={SHARD}"]) == 0
    plain = capsys.readouterr().out
    report = tmp_path / "plan.json"
    assert opt.main([INPUT, f"--pass-pipeline={SHARD}", f"--plan-report={report}"]) == 0
    captured = capsys.readouterr()
    assert captured.out == plain and captured.err == ""
    data = json.loads(report.read_text())
    assert data["kind"] == "intra-op" and data["mesh"] == [2, 4] and data["solver_status"] == "optimal"
    assert data["lower_bound"] <= data["estimated_cost"]
    assert [t["name"] for t in data["inputs"]] == ["%arg0", "%arg1", "%arg2"]
    assert [t["name"] for t in data["outputs"]] == ["result[0]", "result[1][0]", "result[1][1]"]
    assert all(t["layout"] == "replicated" or t["layout"].startswith("P(") for t in data["inputs"])
    assert data["inputs"][0]["shape"] == [8, 8] and data["inputs"][0]["dtype"] == "float32"
    kinds = {c["kind"] for c in data["planned_collectives"]}
    assert kinds and kinds <= set(COLLECTIVE_KINDS)
    assert all(c["count"] > 0 and c["bytes"] > 0 for c in data["planned_collectives"])


def test_text_report_of_a_pipeshard_plan(tmp_path, capsys):
    report = tmp_path / "plan.txt"
    pipeline = "builtin.module(autopar-pipeshard{cluster=1x8 layers=2 num-stages=2})"
    assert opt.main([INPUT, f"--pass-pipeline={pipeline}", f"--plan-report={report}", "-o", "-"]) == 0
    text = report.read_text()
    assert text.startswith("plan: pipeshard\npipeline: 2 stage(s)")
    assert "stage 0: layers [0, 1)" in text and "stage 1: layers [1, 2)" in text
    assert "  %arg0 (forward): " in text


def test_no_planning_pass_writes_nothing(tmp_path, capsys):
    report = tmp_path / "plan.txt"
    assert opt.main([INPUT, "--pass-pipeline=builtin.module(autopar-inline)", f"--plan-report={report}"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "autopar-opt: error: --plan-report: the pipeline ran no autopar planning pass "
        "(autopar-intra-op / autopar-pipeshard)\n"
    )
    assert not report.exists()
