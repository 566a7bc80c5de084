"""How close the default planning budget comes to the optimum: every small model (benchmarks/models/small.py)
on 1-, 2- and 3-axis meshes of 8 devices, planned by `parallelize(...).lower(...)` with the default
`planning_budget` and again with a long one that proves the optimum (or bounds it).

Prints per row: ops, the default plan's objective, status and planning seconds, the long plan's objective and
status, and default / best. Target: default / best <= 1.05 on every row.

    python benchmarks/planning_budget.py [--models mlp-sgd,gpt-2layer] [--meshes 8,2x4,2x2x2] [--long 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # benchmarks.models, after installed autopar

from benchmarks.models.small import SMALL_MODELS  # noqa: E402
from jaxlib.mlir import ir  # noqa: E402

import autopar  # noqa: E402


def plan(model, mesh: tuple[int, ...], budget: float | None, time_limit: float | None):
    step, args, batch_argnums = model.build()
    option = autopar.AutoShardingOption(planning_budget=budget, time_limit=time_limit)
    f = autopar.parallelize(
        step,
        method=autopar.ShardParallel(mesh_shape=mesh, auto_sharding_option=option),
        batch_argnums=batch_argnums,
    )
    start = time.perf_counter()
    lowered = f.lower(*args)
    seconds = time.perf_counter() - start
    objective, bound, status = plan_figures(lowered)
    ops = _count_ops(lowered.module)
    return objective, bound, status, seconds, ops, "autopar.clock_cut" in lowered.module.operation.attributes


def plan_figures(lowered) -> tuple[float, float, str]:
    """The objective, lower bound and status the intra-op pass wrote on a lowered step's module."""
    attrs = lowered.module.operation.attributes
    objective = ir.FloatAttr(attrs["autopar.objective"]).value
    bound = ir.FloatAttr(attrs["autopar.lower_bound"]).value
    return objective, bound, ir.StringAttr(attrs["autopar.solver_status"]).value


def _count_ops(module) -> int:
    main = next(op for op in module.body.operations if op.operation.name == "func.func")
    return len(main.regions[0].blocks[0].operations)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(m.name for m in SMALL_MODELS))
    parser.add_argument("--meshes", default="8,2x4,2x2x2")
    parser.add_argument("--long", type=float, default=60.0, help="the long run's planning budget (seconds)")
    parser.add_argument(
        "--budget", type=float, default=None, help="the default run's budget (default: the pass's)"
    )
    args = parser.parse_args()
    chosen = [m for m in SMALL_MODELS if m.name in args.models.split(",")]
    print(
        "| model | mesh | ops | default objective s | status | plan s | long objective s | status | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for model in chosen:
        for text in args.meshes.split(","):
            mesh = tuple(int(s) for s in text.split("x"))
            d_obj, _, d_status, d_secs, ops, d_cut = plan(model, mesh, args.budget, None)
            l_obj, l_bound, l_status, _, _, l_cut = plan(model, mesh, args.long, 10 * args.long)
            best = min(d_obj, l_obj)
            ratio = d_obj / best if best > 0 else 1.0
            worst = max(worst, ratio)
            cells = [
                model.name,
                text,
                str(ops),
                f"{d_obj:.4g}",
                d_status + (" (clock cut)" if d_cut else ""),
                f"{d_secs:.2f}",
                f"{l_obj:.4g}",
                (l_status if l_status == "optimal" else f"{l_status}, bound {l_bound:.4g}")
                + (" (clock cut)" if l_cut else ""),
                f"{ratio:.4f}",
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nworst default / best: {worst:.4f} (target <= 1.05)")


if __name__ == "__main__":
    main()
