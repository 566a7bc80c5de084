"""The codebase stays formatted and lint-clean (ruff on Python, clang-format on the C++ core), and no
package module grows past 500 lines without saying why.

Versions are pinned in pyproject's `test` extra, so a formatter release cannot fail CI by itself.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_TREES = ["python", "tests", "benchmarks", "examples"]


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install '.[test]' installs it)")
    return path


def test_ruff_lint_is_clean():
    result = _run(_tool("ruff"), "check", *PYTHON_TREES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = _run(_tool("ruff"), "format", "--check", *PYTHON_TREES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cpp_is_clang_formatted():
    sources = sorted(
        str(p.relative_to(ROOT)) for d in ("csrc", "passes") for p in (ROOT / d).rglob("*.[ch]*")
    )
    assert sources, "no C++ sources found"
    result = _run(_tool("clang-format"), "--style=file", "--dry-run", "-Werror", *sources)
    assert result.returncode == 0, result.stderr[-3000:]


MAX_LINES = 500
LONG_FILE_MARKER = "# Longer than 500 lines because"
# Files allowed past MAX_LINES without the marker, each with why; an entry goes once its file is split.
LONG_FILE_ALLOWLIST: dict[str, str] = {}


def test_package_files_stay_short_or_say_why():
    """A module under python/autopar past 500 lines says why near its top (`# Longer than 500 lines
    because ...` within its first 10 lines); otherwise it is split along its seams."""
    too_long = []
    for path in sorted((ROOT / "python" / "autopar").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        lines = path.read_text().splitlines()
        if len(lines) <= MAX_LINES or name in LONG_FILE_ALLOWLIST:
            continue
        if not any(line.startswith(LONG_FILE_MARKER) for line in lines[:10]):
            too_long.append(f"{name}: {len(lines)} lines")
    assert not too_long, (
        f"split these, or give the reason on a line starting '{LONG_FILE_MARKER}':\n" + "\n".join(too_long)
    )


def test_long_file_allowlist_is_current():
    """An allowlisted file that was split or shortened leaves the list."""
    stale = [
        name
        for name in LONG_FILE_ALLOWLIST
        if not (ROOT / name).exists() or len((ROOT / name).read_text().splitlines()) <= MAX_LINES
    ]
    assert not stale, f"remove from LONG_FILE_ALLOWLIST: {stale}"
