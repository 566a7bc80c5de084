"""`autopar-opt --plan-report=FILE`: the JSON form parses and matches the planned module; the IR on stdout
is what the same command prints without the flag; a pipeline that plans nothing writes nothing; with
--split-input-file, one report per chunk (a JSON list with chunk numbers and failed chunks' errors, or text
sections under `// ----- chunk k`)."""

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


def _split_input(tmp_path, chunks: list[str]) -> str:
    path = tmp_path / "chunks.mlir"
    path.write_text("\n// -----\n".join(chunks))
    return str(path)


def test_split_input_file_reports_every_chunk(tmp_path, capsys):
    step = Path(INPUT).read_text()
    broken = "func.func @main() {\n  %0 = stablehlo.nonsense\n}\n"
    source = _split_input(tmp_path, [step, step, broken])
    pipeline = "builtin.module(autopar-shard{mesh=2x4})"
    report = tmp_path / "plan.json"
    args = [source, "--split-input-file", f"--pass-pipeline={pipeline}", "-o", str(tmp_path / "o.mlir")]
    assert opt.main([*args, f"--plan-report={report}"]) == 1  # the third chunk fails
    err = capsys.readouterr().err
    assert err.startswith("autopar-opt: error: ") and err.count("\n") == 1
    data = json.loads(report.read_text())
    assert isinstance(data, list) and [d["chunk"] for d in data] == [0, 1, 2]
    assert data[0]["kind"] == data[1]["kind"] == "intra-op" and data[0]["inputs"] == data[1]["inputs"]
    assert set(data[2]) == {"chunk", "error"} and data[2]["error"] in err
    # Text: one section per chunk, headed by the chunk marker and its number.
    text_report = tmp_path / "plan.txt"
    two = _split_input(tmp_path, [step, step])
    args = [two, "--split-input-file", f"--pass-pipeline={pipeline}", f"--plan-report={text_report}"]
    assert opt.main(args) == 0
    text = text_report.read_text()
    assert text.startswith("// ----- chunk 0\nplan: intra-op\nmesh: 2x4\n")
    assert "\n// ----- chunk 1\nplan: intra-op\n" in text and text.count("// ----- chunk") == 2


def test_one_chunk_split_is_still_a_list(tmp_path, capsys):
    report = tmp_path / "plan.json"
    assert opt.main([INPUT, "--split-input-file", f"--pass-pipeline={SHARD}", f"--plan-report={report}"]) == 0
    data = json.loads(report.read_text())
    assert isinstance(data, list) and len(data) == 1 and data[0]["chunk"] == 0
