# lit configuration: every test runs `autopar-opt` (the in-tree driver, so no install is needed when
# PYTHONPATH holds python/) and checks its output with the Python port of FileCheck.
import os
import shlex
import sys

import lit.formats

config.name = "autopar"
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.excludes = ["Inputs"]

python = shlex.quote(sys.executable)
config.substitutions.append(("autopar-opt", f"{python} -m autopar.opt"))
config.substitutions.append(("%python", python))
config.substitutions.append(("%inputs", os.path.join(os.path.dirname(__file__), "Inputs")))

for name in ("PYTHONPATH", "PATH", "HOME", "XLA_FLAGS", "TMPDIR"):
    if name in os.environ:
        config.environment[name] = os.environ[name]
config.environment["JAX_PLATFORMS"] = "cpu"
