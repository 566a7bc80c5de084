"""pytest setup shared by every suite: 8 virtual CPU devices, set before jax is imported anywhere."""

import importlib.util
import os
import sys
from pathlib import Path

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
