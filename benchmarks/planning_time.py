"""Planning time of the inter-op passes on Alpa's benchmark models, lowered with abstract arguments.

    python benchmarks/planning_time.py --model gpt-39b --cluster 8x8 --json

prints one JSON line: the time split (lowering, layer clustering, stage cost estimation, DP, plan =
outlining) and the plan (stages with their layers, submesh, logical mesh, devices). The step is lowered for
ONE micro-batch (global batch / micro-batches), as autopar-inter-op expects. Models: gpt-{350m,1.3b,2.6b,
6.7b,15b,39b} (benchmarks/models/gpt.py, global batch 1024), moe-{380m,...,70b} (moe.py, global batch
1024), wresnet-{250m,...,13b} (wide_resnet.py, global batch 1536). Stage costs: `--stage-cost intra-op`
(default: autopar.passes.intra_op.estimate per distinct layer and logical mesh) or `analytic`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax.numpy as jnp

# The repository root, for benchmarks.models; autopar itself comes from the installed package (or from
# PYTHONPATH=python with a dev build).
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from autopar import cost, passes  # noqa: E402
from autopar import ir as air  # noqa: E402
from autopar.passes.inter_op import cluster as cluster_lib  # noqa: E402
from autopar.passes.inter_op import inter_op as inter_op_pass  # noqa: E402


def model_step(name: str, micro_batches: int):
    """(train_step, abstract args) of one micro-batch of the named model."""
    family, _, size = name.partition("-")
    if family == "gpt":
        from benchmarks.models import gpt as lib

        suite, global_batch = {k.lower(): v for k, v in lib.GPT_SUITE.items()}, 1024
    elif family == "moe":
        from benchmarks.models import moe as lib

        suite, global_batch = {k.lower(): v for k, v in lib.MOE_SUITE.items()}, lib.GLOBAL_BATCH
    elif family == "wresnet":
        from benchmarks.models import wide_resnet as lib

        suite, global_batch = {k.lower(): v for k, v in lib.WRESNET_SUITE.items()}, lib.GLOBAL_BATCH
    else:
        raise SystemExit(f"unknown model '{name}': use gpt-*, moe-* or wresnet-*")
    if size not in suite:
        raise SystemExit(f"unknown {family} size '{size}': choose from {', '.join(suite)}")
    if global_batch % micro_batches:
        raise SystemExit(f"{micro_batches} micro-batches do not divide the global batch {global_batch}")
    cfg = dataclasses.replace(suite[size], batch=global_batch // micro_batches)
    if family == "gpt":
        return lib.make_train_step(cfg), (lib.abstract_params(cfg, jnp.float16), *lib.abstract_batch(cfg))
    return lib.make_train_step(cfg), lib.abstract_args(cfg)


def plan(args: argparse.Namespace) -> dict:
    times = {}
    t = time.perf_counter()
    step, step_args = model_step(args.model, args.micro_batches)
    module = air.lower(step, *step_args)
    times["lowering_s"] = time.perf_counter() - t

    t = time.perf_counter()
    passes.run(module, f"builtin.module(autopar-inline,autopar-cluster-layers{{num-layers={args.layers}}})")
    times["layer_clustering_s"] = time.perf_counter() - t

    # The pass's own options (and defaults) but the ones this benchmark sets.
    options = passes.registry.lookup("autopar-inter-op").parse_options(
        [
            ("cluster", args.cluster),
            ("micro-batches", str(args.micro_batches)),
            ("device-memory", repr(args.memory_gib * cost.GiB)),
            ("stage-cost", args.stage_cost),
            ("stage-cost-budget", repr(args.stage_cost_budget)),
            ("stage-cost-solver", args.stage_cost_solver),
            ("remat", str(args.remat).lower()),
        ]
    )
    # The pass's phases, timed one by one (autopar-inter-op runs exactly these).
    with module.context:
        t = time.perf_counter()
        layered = inter_op_pass.read_layers(module.operation)
        cluster = inter_op_pass.cluster_from_options(options)
        submeshes = cluster_lib.submeshes_from_options(options, cluster, layered.num_layers)
        cost_stats: dict[str, float] = {}
        profile, table = inter_op_pass.stage_costs(layered, cluster, submeshes, options, cost_stats)
        times["stage_costs_s"] = time.perf_counter() - t

        t = time.perf_counter()
        chosen = inter_op_pass.solve_plan(
            table, profile, submeshes, cluster, options.micro_batches, options.stage_imbalance_tolerance
        )
        times["dp_s"] = time.perf_counter() - t

        t = time.perf_counter()
        inter_op_pass.outline_stages(module.operation, layered, chosen, options.micro_batches)
        times["plan_s"] = time.perf_counter() - t
    times["total_s"] = sum(times.values())
    return {
        "model": args.model,
        "cluster": args.cluster,
        "layers": args.layers,
        "micro_batches": args.micro_batches,
        "memory_gib": args.memory_gib,
        "stage_cost": args.stage_cost,
        "stage_cost_solver": args.stage_cost_solver,
        "remat": args.remat,
        "ops": len(layered.graph.nodes),
        **{k: round(v, 4) for k, v in times.items()},
        "intra_op_solves": {k: round(v, 3) for k, v in cost_stats.items()},
        "tmax_candidates": chosen.tmax_candidates,
        "tmax_evaluated": chosen.tmax_evaluated,
        "latency_s": chosen.latency,
        "stages": [
            {
                "layers": [s.start_layer, s.end_layer],
                "submesh": list(s.submesh),
                "logical_mesh": list(s.logical_mesh),
                "devices": [s.device_ids[0], s.device_ids[-1]],
                "ms_per_micro_batch": round(s.cost * 1e3, 3),
                "memory_gib": round(s.memory / 2**30, 2),
            }
            for s in chosen.stages
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt-39b")
    parser.add_argument("--cluster", default="8x8")
    parser.add_argument("--layers", type=int, default=16, help="layers for autopar-cluster-layers")
    parser.add_argument("--micro-batches", type=int, default=64)
    parser.add_argument("--memory-gib", type=float, default=16.0)
    parser.add_argument("--stage-cost", choices=("intra-op", "analytic"), default="intra-op")
    parser.add_argument(
        "--stage-cost-budget", type=float, default=1.0, help="counted seconds per intra-op estimate"
    )
    parser.add_argument(
        "--stage-cost-solver",
        choices=("auto", "ilp", "heuristic"),
        default="auto",
        help="intra-op solver per logical mesh (auto: ILP on 1-axis meshes, fast path on 2-axis ones)",
    )
    parser.add_argument(
        "--remat", action=argparse.BooleanOptionalAction, default=True, help="Alpa's use_remat (default on)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    result = plan(args)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
