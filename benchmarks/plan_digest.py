"""A digest of the plans autopar makes for the small benchmark models, to check that a refactoring changes
no plan: run it on two checkouts and compare the lines.

    python benchmarks/plan_digest.py [--models mlp-sgd,moe] [--meshes 2x4,8]

prints one line per model and ShardParallel mesh: the objective, the solver's status and a SHA-256 prefix
of the planned module's text with the checkout's path taken out (remarks name source files).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))

from benchmarks.models import small  # noqa: E402

import autopar  # noqa: E402
from autopar.ir import attrs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(m.name for m in small.SMALL_MODELS))
    parser.add_argument("--meshes", default="2x4,8")
    a = parser.parse_args()
    wanted = a.models.split(",")
    meshes = [tuple(int(n) for n in m.split("x")) for m in a.meshes.split(",")]
    for model in (m for m in small.SMALL_MODELS if m.name in wanted):
        step, args, batch_argnums = model.build()
        for mesh in meshes:
            f = autopar.parallelize(
                step, method=autopar.ShardParallel(mesh_shape=mesh), batch_argnums=batch_argnums
            )
            module = f.lower(*args).module
            result = attrs.get_intra_op_result(module.operation)
            text = str(module).replace(str(ROOT), "<checkout>")
            digest = hashlib.sha256(text.encode()).hexdigest()[:12]
            shape = "x".join(map(str, mesh))
            print(
                f"{model.name} {shape} objective {result.objective:.6e} {result.solver_status} {digest}",
                flush=True,
            )


if __name__ == "__main__":
    main()
