# ruff: noqa: F821  (lit injects `config`)
# lit configuration: every test runs `autopar-opt` (the in-tree driver, so no install is needed when
# PYTHONPATH holds python/) and checks its output with the Python port of FileCheck.
import importlib.util
import os
import shlex
import sys

import lit.formats

config.name = "autopar"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.excludes = ["Inputs"]

python = shlex.quote(sys.executable)
config.substitutions.append(("autopar-opt", f"{python} -m autopar.opt"))
config.substitutions.append(("%python", python))
config.substitutions.append(("%inputs", os.path.join(os.path.dirname(__file__), "Inputs")))

for name in ("PATH", "HOME", "XLA_FLAGS", "TMPDIR"):
    if name in os.environ:
        config.environment[name] = os.environ[name]

# Tests run in their own directories: make PYTHONPATH absolute, and fall back to the in-tree package
# when autopar is not installed (the dev loop builds _core in place with cmake/dev-build.sh).
python_path = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
in_tree = os.path.join(os.path.dirname(__file__), "..", "..", "python")
sys.path[:0] = python_path
if importlib.util.find_spec("autopar") is None:
    python_path.insert(0, os.path.abspath(in_tree))
config.environment["PYTHONPATH"] = os.pathsep.join(python_path)
config.environment["JAX_PLATFORMS"] = "cpu"
