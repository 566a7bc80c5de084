"""Planning time of the inter-op pass on Alpa's benchmark models, lowered with abstract arguments.

    PYTHONPATH=python python benchmarks/planning_time.py --model gpt-39b --cluster 8x8 --json

prints one JSON line: the time split (lowering, layer clustering, stage-cost table, DP, outlining) and the
plan (stages with their layers, submesh, logical mesh). Stage costs come from the analytic model of
autopar.passes.inter_op.stage_costs (docs/inter_op.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autopar import ir as air  # noqa: E402
from autopar import passes  # noqa: E402
from autopar.passes.inter_op import cluster as cluster_lib  # noqa: E402
from autopar.passes.inter_op import inter_op as inter_op_pass  # noqa: E402
from autopar.passes.inter_op.graph import build_graph, main_func  # noqa: E402
from autopar.passes.inter_op.layers import classify_parts  # noqa: E402
from autopar.passes.inter_op.outline import outline  # noqa: E402
from autopar.passes.inter_op.plan import plan_attribute  # noqa: E402
from autopar.passes.inter_op.stage_costs import profile_layers, stage_cost_table  # noqa: E402


def model_step(name: str):
    if name.startswith("gpt-"):
        from benchmarks.models.gpt_inter_op_tmp import make_step
    elif name.startswith("moe-"):
        from benchmarks.models.moe import make_step
    elif name.startswith("wresnet-"):
        from benchmarks.models.wide_resnet import make_step
    else:
        raise SystemExit(f"unknown model '{name}': use gpt-*, moe-* or wresnet-*")
    return make_step(name)


def plan(model: str, cluster_text: str, layers: int, micro_batches: int, memory_gib: float) -> dict:
    times = {}
    t = time.perf_counter()
    step, args = model_step(model)
    module = air.lower(step, *args)
    times["lowering_s"] = time.perf_counter() - t

    t = time.perf_counter()
    passes.run(module, f"builtin.module(autopar-inline,autopar-cluster-layers{{num-layers={layers}}})")
    times["layer_clustering_s"] = time.perf_counter() - t

    options = types.SimpleNamespace(
        cluster=cluster_text,
        micro_batches=micro_batches,
        submesh_shapes="",
        num_stages=0,
        stage_imbalance_tolerance=float("inf"),
        memory_per_device=memory_gib,
        device_tflops=100.0,
    )
    with module.context:
        t = time.perf_counter()
        graph = build_graph(main_func(module.operation))
        layer, part, num_layers = inter_op_pass._read_layers(module.operation, graph)
        cluster = inter_op_pass._cluster(options)
        submeshes = cluster_lib.parse_submeshes("", cluster)
        profile = profile_layers(graph, layer, part, num_layers)
        table = stage_cost_table(
            profile, submeshes, cluster, micro_batches, min(num_layers, cluster.num_devices)
        )
        times["stage_costs_s"] = time.perf_counter() - t

        t = time.perf_counter()
        chosen = inter_op_pass.solve_plan(table, profile, submeshes, cluster, micro_batches, float("inf"))
        times["dp_s"] = time.perf_counter() - t

        t = time.perf_counter()
        _, free = classify_parts(graph)
        outline(graph, inter_op_pass._groups(graph, layer, part, free, chosen), free)
        module.operation.attributes["autopar.inter_op.plan"] = plan_attribute(chosen)
        times["outlining_s"] = time.perf_counter() - t
    times["total_s"] = sum(times.values())
    return {
        "model": model,
        "cluster": cluster_text,
        "layers": layers,
        "micro_batches": micro_batches,
        "ops": len(graph.nodes),
        **{k: round(v, 4) for k, v in times.items()},
        "tmax_candidates": chosen.tmax_candidates,
        "tmax_evaluated": chosen.tmax_evaluated,
        "latency_s": chosen.latency,
        "stages": [
            {
                "layers": [s.start_layer, s.end_layer],
                "submesh": list(s.submesh),
                "logical_mesh": list(s.logical_mesh),
                "ms_per_micro_batch": round(s.cost * 1e3, 3),
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
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    result = plan(args.model, args.cluster, args.layers, args.micro_batches, args.memory_gib)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
