"""pytest setup shared by every suite: 8 virtual CPU devices, set before jax is imported anywhere."""

import fcntl
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

# Run against the in-tree package only when autopar is not installed (the dev loop builds _core in place
# with cmake/dev-build.sh and uses PYTHONPATH=python); an installed package is never shadowed.
_PYTHON_DIR = Path(__file__).resolve().parents[1] / "python"
if importlib.util.find_spec("autopar") is None:
    sys.path.insert(0, str(_PYTHON_DIR))

# pytest imports test files in importlib mode (pyproject's addopts), so files in tests/'s subfolders may share
# a basename; the helpers here (numeric.py, cases.py, and test_solver's generators) import by plain name.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

REPO_ROOT = Path(__file__).resolve().parents[1]


# The suite runs on two pytest-xdist workers (pyproject's addopts). Tests marked `alone` measure the wall
# clock (a solver's time limit, a clock cut, a run under a CPU load of its own) and would read the other
# worker's load as their own: they hold this lock exclusively, every other test holds it shared, so an
# `alone` test waits for the running test of the other worker and runs with no test beside it.
_XDIST_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "alone: runs with no other test running beside it (reads wall time)")


@pytest.fixture(autouse=True)
def _alone_or_shared(request: pytest.FixtureRequest):
    if _XDIST_RUN is None:  # one process: every test already runs alone
        yield
        return
    alone = request.node.get_closest_marker("alone") is not None
    # One file per user, kept (an empty file): two suites run at once only wait on each other's `alone` tests.
    lock_path = Path(tempfile.gettempdir()) / f"autopar-tests-{os.getuid()}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield  # closing the file releases the lock
