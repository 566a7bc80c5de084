"""Runs the lit/FileCheck suite (tests/lit) inside pytest, so one `python -m pytest tests` runs both and
lit's results count even when other tests fail. `lit tests/lit` still runs it alone. Every registered pass
has lit tests in the folder of its module (tests/README.md)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autopar.passes import registered_passes

LIT_DIR = Path(__file__).resolve().parent / "lit"


def test_lit_suite_passes() -> None:
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from lit.main import main; sys.exit(main())",
            "-sv",
            str(LIT_DIR),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    failed = re.findall(r"^\s*(?:FAIL|UNRESOLVED|XPASS|TIMEOUT): autopar :: (\S+)", result.stdout, re.M)
    assert result.returncode == 0, f"lit failures: {failed}\n{result.stdout[-6000:]}{result.stderr[-2000:]}"
    assert re.search(r"Passed\s*:\s*\d+", result.stdout), result.stdout[-2000:]


def _run_lines(folder: Path) -> list[tuple[str, str]]:
    """(RUN command, text of its file) for every RUN line of the .mlir files in `folder`."""
    out = []
    for path in sorted(folder.glob("*.mlir")):
        text = path.read_text()
        out += [(m.strip(), text) for m in re.findall(r"^// RUN:(.*)$", text, re.M)]
    return out


@pytest.mark.parametrize("info", registered_passes(), ids=lambda info: info.argument)
def test_every_pass_has_lit_tests_of_its_output_and_its_errors(info) -> None:
    module = info.run.__module__.removeprefix("autopar.passes.").split(".")[0]
    folder = LIT_DIR / module
    uses = [(run, text) for run, text in _run_lines(folder) if re.search(rf"{info.argument}(?![\w-])", run)]
    assert any(not run.startswith("not ") and "| filecheck" in text for run, text in uses), (
        f"no RUN line in tests/lit/{module}/ runs {info.argument} and checks its output"
    )
    assert any(run.startswith("not autopar-opt") and "filecheck" in run for run, _ in uses), (
        f"no RUN line in tests/lit/{module}/ checks an error message of {info.argument}"
    )
