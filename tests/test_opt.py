"""What a new user meets first on the command line: the README's main command prints IR that parses back,
the driver starts without jax, and the version is one string everywhere."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import autopar

ROOT = Path(__file__).resolve().parents[1]
# Subprocesses import autopar from where this process did: the installed package, or python/ in-tree.
PYTHON_DIR = Path(autopar.__file__).resolve().parents[1]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(PYTHON_DIR))


def readme_main_command() -> list[str]:
    """The `autopar-opt ...` part of the README's first command (after the install steps)."""
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)\n```", readme, re.S)
    assert first, "README has no bash block"
    command = first.group(1).split("&&")[-1].strip()
    argv = shlex.split(command)
    assert argv[0] == "autopar-opt", command
    return [sys.executable, "-m", "autopar.opt", *argv[1:]]


def test_readme_main_command_output_parses_back() -> None:
    planned = subprocess.run(readme_main_command(), cwd=ROOT, capture_output=True, env=_env(), timeout=300)
    assert planned.returncode == 0, planned.stderr.decode()
    assert planned.stdout.startswith(b"module"), planned.stdout[:200]
    assert planned.stderr == b"", planned.stderr.decode()
    reparsed = subprocess.run(
        [sys.executable, "-m", "autopar.opt", "-"],
        input=planned.stdout,
        capture_output=True,
        env=_env(),
        timeout=300,
    )
    assert reparsed.returncode == 0, reparsed.stderr.decode()
    assert b"sdy.sharding" in reparsed.stdout


def test_driver_and_solver_do_not_import_jax() -> None:
    code = (
        "import sys, autopar, autopar.solver, autopar.opt, autopar.passes, autopar.ir\n"
        "loaded = sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr


def test_version_is_one_string_everywhere() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "autopar.opt", "--version"], capture_output=True, text=True, env=_env()
    )
    assert result.returncode == 0 and result.stdout == f"autopar-opt {autopar.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", autopar.__version__)
    from importlib import metadata

    try:
        installed = metadata.version("autopar")
    except metadata.PackageNotFoundError:
        return  # the in-tree dev loop: no distribution metadata
    if Path(autopar.__file__).resolve().parents[1] != ROOT / "python":
        assert installed == autopar.__version__
