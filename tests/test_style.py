"""The codebase stays formatted and lint-clean: ruff on Python, clang-format on the C++ core.

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
