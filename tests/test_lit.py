"""Runs the lit/FileCheck suite (tests/lit) inside pytest, so one `python -m pytest tests` runs both and
lit's results count even when other tests fail. `lit tests/lit` still runs it alone."""

import os
import re
import subprocess
import sys
from pathlib import Path

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
