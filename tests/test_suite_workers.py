"""The suite's two pytest-xdist workers (pyproject's addopts) and the `alone` marker of tests/conftest.py:
an `alone` test runs while no other test does, and the others still run two at a time."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parent / "conftest.py"

TESTS = """
import os, time
import pytest

def record(name):
    start = time.time()
    time.sleep(0.4)
    with open(os.environ["INTERVALS"], "a") as log:
        log.write(f"{name} {start} {time.time()}\\n")

@pytest.mark.alone
@pytest.mark.parametrize("i", range(2))
def test_alone(i):
    record("alone")

@pytest.mark.parametrize("i", range(8))
def test_shared(i):
    record("shared")
"""


def test_an_alone_test_runs_with_no_other_test_beside_it(tmp_path: Path) -> None:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_timed.py").write_text(TESTS)
    intervals = tmp_path / "intervals.txt"
    # Its own temporary folder, so its lock is not the one this test holds.
    env = dict(os.environ, INTERVALS=str(intervals), TMPDIR=str(tmp_path))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "load"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = [line.split() for line in intervals.read_text().splitlines()]
    spans = [(name, float(start), float(end)) for name, start, end in runs]
    assert len(spans) == 10

    def overlap(a, b) -> bool:
        return a[1] < b[2] and b[1] < a[2]

    pairs = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1 :]]
    assert not any(overlap(a, b) for a, b in pairs if "alone" in (a[0], b[0]))
    # The others did run two at a time: the check above is not met by running everything in turn.
    assert any(overlap(a, b) for a, b in pairs if a[0] == b[0] == "shared")
