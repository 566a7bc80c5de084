"""autopar-inter-op: choose pipeline stages and submeshes (Alpa's stage DP) and outline the stages."""

from __future__ import annotations

import math
import types

import numpy as np
from jaxlib.mlir import ir

from autopar import _core, cost
from autopar.errors import PassError
from autopar.ir import attrs, host_callbacks
from autopar.passes.inter_op import cluster as cluster_lib
from autopar.passes.inter_op import fixed_plans, intra_op_costs
from autopar.passes.inter_op.graph import build_graph, main_func
from autopar.passes.inter_op.layers import APPLY, BACKWARD, FORWARD, LayeredGraph, classify_parts
from autopar.passes.inter_op.outline import Group, outline
from autopar.passes.inter_op.plan import Plan, StagePlan
from autopar.passes.inter_op.stage_costs import (
    CostTable,
    LayerProfile,
    boundary_transfer_times,
    profile_layers,
    stage_cost_table,
)
from autopar.passes.intra_op import drop_empty_meshes
from autopar.passes.registry import Option, register_pass
from autopar.solver.orchestrate import MAX_SECONDS

DESCRIPTION = """
Alpa's inter-op pass. Reads the layers written by `autopar-cluster-layers` (`@main` is the training step
of ONE micro-batch; `micro-batches` of them make an iteration), enumerates Alpa's submeshes of the
`cluster` (HxD: hosts x devices per host): (1,1), (1,2), (1,4), ..., (1,D), (2,D), ..., (H,D), or the
`submesh-shapes` given, with every logical mesh (p data x q tensor parallel) each can take; costs every
(layer range, submesh, logical mesh): by default each layer's forward + backward ops are solved by the
intra-op machinery (`autopar.passes.intra_op.estimate`, once per distinct layer and logical mesh, summed
over layer ranges), `stage-cost=analytic` uses the fast FLOP/alpha-beta model; runs the stage DP in the
C++ core (t_max enumeration with pruning, every device used, memory feasibility per stage: parameters,
gradients, optimizer state and the activations of the `schedule`'s in-flight micro-batches: 1F1B's by
default; `remat` as Alpa's
use_remat); and outlines the stages. The plan and its estimated latency (sum of stage times + (B - 1) *
slowest) are module attributes. Device and link figures (`device-flops` in FLOP/s, `device-memory` in
bytes, `device-memory-bandwidth` in bytes/s, 25 Gbit/s between hosts) are an `autopar.cost.ClusterModel`,
the machine description the intra-op pass reads too (docs/cost_model.md).

IR contract. Stage k is the set of private functions carrying `autopar.stage = k`; all of them carry the
same `autopar.mesh = {shape, logical_shape, device_ids}` and one `autopar.part`:
  @stage_k_forward   forward ops of the stage's layers (one micro-batch)
  @stage_k_backward  their backward ops (one micro-batch); reads the residuals @stage_k_forward returns
  @stage_k_apply     the optimizer update of the parameters the stage owns (once per iteration)
The parts are separate functions because a pipeline schedule runs them at different times: every
micro-batch's forward (GPipe) or interleaved forward/backward (1F1B) before one apply per iteration.
They are linked only through `@main`'s SSA values: `@main` calls forward parts in stage order, backward
parts in reverse, then the apply parts, and every value crossing two parts (activations, residuals,
cotangents, gradients) is a result of one call and an operand of another. A part with no ops is omitted.
A host callback (`jax.debug.print`) that JAX placed on a maximal mesh of one device goes into its part
with the mark `autopar.host_callback` instead, and the maximal mesh goes: the runtime puts the callback
on its stage's first device when it compiles the stage.

Before (after autopar-cluster-layers{num-layers=2}):
  func.func public @main(%arg0: tensor<8x8xf32>, %arg1: tensor<8x8xf32>, %arg2: tensor<4x8xf32>) -> ... {
    %0 = stablehlo.dot_general %arg2, %arg0 ... {autopar.layer = 0 : i64, autopar.part = "forward"}
    ...
  }

After (cluster=1x2 micro-batches=4):
  module attributes {autopar.inter_op.latency = 1.2e-07 : f64, autopar.inter_op.plan = [...]} {
    func.func public @main(...) {
      %0:2 = call @stage_0_forward(%arg2, %arg0) ...
      %1:3 = call @stage_1_forward(%0#0, %arg1) ...
      %2:2 = call @stage_1_backward(...)
      %3 = call @stage_0_backward(...)
      ...
    }
    func.func private @stage_0_forward(...) attributes {autopar.mesh = {device_ids = array<i64: 0>,
        logical_shape = array<i64: 1, 1>, shape = array<i64: 1, 1>}, autopar.part = "forward",
        autopar.stage = 0 : i64} {...}
    ...
  }
"""


@register_pass(
    argument="autopar-inter-op",
    summary="Choose pipeline stages and submeshes (Alpa's stage DP) and outline each stage",
    description=DESCRIPTION,
    options=[
        Option("cluster", str, "1x8", "the device cluster as hosts x devices per host"),
        Option("micro-batches", int, 1, "number of micro-batches B of the pipeline"),
        Option("submesh-shapes", str, "", "comma-separated HxD submesh shapes (default: Alpa's choices)"),
        Option("num-stages", int, 0, "force this many equal submeshes (0: the DP chooses)"),
        Option(
            "stage-imbalance-tolerance",
            float,
            math.inf,
            "every stage must cost at least slowest / (1 + tolerance); inf disables",
        ),
        Option("device-flops", float, cost.INTER_OP_DEVICE_FLOPS, "sustained FLOP/s of one device"),
        Option("device-memory", float, float(cost.INTER_OP_DEVICE_MEMORY), "bytes of one device's memory"),
        Option(
            "device-memory-bandwidth",
            float,
            cost.DEFAULT_DEVICE_MEMORY_BANDWIDTH,
            "bytes/s between a device and its memory (read by the intra-op stage costs)",
        ),
        Option(
            "stage-cost",
            str,
            "intra-op",
            "intra-op: autopar.passes.intra_op.estimate per layer and logical mesh; analytic: the fast model",
            choices=("intra-op", "analytic"),
        ),
        Option(
            "stage-cost-budget",
            float,
            1.0,
            "counted planning work per intra-op estimate, in seconds of a 2-core machine",
        ),
        Option("stage-cost-time-limit", float, 30.0, "wall-clock safety cap per intra-op estimate"),
        Option(
            "stage-cost-solver",
            str,
            "auto",
            "intra-op solver per logical mesh: auto (exact ILP on 1-axis meshes, fast path + plan families "
            "on 2-axis ones), ilp or heuristic",
            choices=intra_op_costs.STAGE_COST_SOLVERS,
        ),
        Option("remat", bool, False, "plan memory as if every layer were rematerialised (Alpa's use_remat)"),
        Option(
            "price-transfers",
            bool,
            True,
            "add to each stage's cost the cross-mesh transfer time of the activations and cotangents it "
            "receives at its boundaries (false: crossing between stages is free, as in Alpa's DP)",
        ),
        Option(
            "schedule",
            str,
            "1f1b",
            "the pipeline schedule whose in-flight micro-batches the memory check counts (1f1b: a stage with "
            "k stages after it holds k + 1; gpipe: every stage holds all B; zb-h1: up to the number of "
            "stages, and each backward is outlined as its input and weight halves)",
            choices=("1f1b", "gpipe", "zb-h1", "interleaved-1f1b"),
        ),
        Option(
            "manual-stages",
            str,
            "",
            "hand-placed stages instead of the DP, comma-separated start-end:HxD:PxQ (layers [start, end) on "
            "an HxD submesh with a PxQ logical mesh), covering every layer in order",
        ),
        Option(
            "chunks",
            int,
            2,
            "schedule=interleaved-1f1b: virtual stages per mesh (the layers are cut into num-stages x chunks "
            "ranges, range j on mesh j mod num-stages)",
        ),
        Option(
            "intra-op-options",
            str,
            "",
            "autopar-intra-op options the stage costs use, space-separated (zero-stage=2 "
            "force-data-parallel=true): " + ", ".join(intra_op_costs.STRATEGY_OPTIONS),
        ),
    ],
    check=lambda options: _check_options(options),
    removed_options={
        "device-tflops": "give device-flops in FLOP/s (device-tflops=100 is device-flops=1e14)",
        "memory-per-device": (
            "give device-memory in bytes (memory-per-device=16 GiB is device-memory=17179869184)"
        ),
    },
)
def inter_op(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
    with module_op.context, ir.Location.unknown():
        drop_empty_meshes(module_op)  # JAX's "unsharded" constraints on PRNG keys: stages start unsharded
        host_callbacks.mark(module_op)  # their one-device placements, back in each stage module it runs
        layered = read_layers(module_op)
        cluster = cluster_from_options(options)
        if options.manual_stages:  # hand-placed stages (ManualStageOption): no DP
            manual = fixed_plans.parse_manual_stages(options.manual_stages, cluster)
            submeshes = sorted({stage.submesh for stage in manual})
            profile, table = stage_costs(layered, cluster, submeshes, options)
            plan = fixed_plans.manual_plan(
                manual, table, submeshes, cluster, layered.num_layers, options.micro_batches
            )
        else:
            submeshes = cluster_lib.submeshes_from_options(options, cluster, layered.num_layers)
            profile, table = stage_costs(layered, cluster, submeshes, options)
            plan = solve_plan(
                table, profile, submeshes, cluster, options.micro_batches, options.stage_imbalance_tolerance
            )
        if options.schedule == "interleaved-1f1b":
            plan = fixed_plans.interleave(
                plan, table, submeshes, layered.num_layers, options.chunks, options.micro_batches
            )
        outline_stages(
            module_op, layered, plan, options.micro_batches, split_backward=options.schedule == "zb-h1"
        )


# The pass's phases, in order; benchmarks/planning_time.py times them one by one.


def read_layers(module_op: ir.Operation) -> LayeredGraph:
    """@main's op graph with the layer and part autopar-cluster-layers gave every op."""
    graph = build_graph(main_func(module_op))
    layer, part = [], []
    for node in graph.nodes:
        node_layer, node_part = attrs.get_layer(node.op), attrs.get_part(node.op)
        if node_layer is None or node_part is None:
            raise PassError(
                f"{node.name} has no {attrs.LAYER}/{attrs.PART}: run autopar-cluster-layers before "
                "autopar-inter-op",
                node.op.location,
            )
        layer.append(node_layer)
        part.append(node_part)
    bad = [k for k, p in enumerate(part) if p not in (FORWARD, BACKWARD, APPLY)]
    if bad:
        raise PassError(
            f"{attrs.PART} must be forward, backward or apply, got '{part[bad[0]]}'",
            graph.nodes[bad[0]].op.location,
        )
    num_layers = max(layer) + 1 if layer else 0
    # autopar-cluster-layers' count also covers trailing layers that ended up empty.
    num_layers = max(num_layers, attrs.get_num_layers(module_op) or 0)
    if min(layer, default=0) < 0:
        raise PassError(f"{attrs.LAYER} must be >= 0", graph.nodes[layer.index(min(layer))].op.location)
    _, free = classify_parts(graph)
    return LayeredGraph(graph, layer, part, free, num_layers)


def _check_options(options: types.SimpleNamespace) -> None:
    """Everything about the options that does not need the IR, checked when the pipeline is parsed."""
    cluster = cluster_from_options(options)
    cluster_lib.parse_submeshes(options.submesh_shapes, cluster)
    if options.num_stages < 0:
        raise PassError(f"num-stages must be >= 0 (0: the DP chooses), got {options.num_stages}")
    if options.manual_stages:
        fixed_plans.parse_manual_stages(options.manual_stages, cluster)
    if options.schedule == "interleaved-1f1b" and (options.num_stages < 1 or options.chunks < 2):
        raise PassError(
            "schedule=interleaved-1f1b needs num-stages (equal meshes, each running chunks >= 2 virtual "
            f"stages), got num-stages={options.num_stages} chunks={options.chunks}"
        )
    for name, seconds in (
        ("stage-cost-time-limit", options.stage_cost_time_limit),
        ("stage-cost-budget", options.stage_cost_budget),
    ):
        if not 0 < seconds <= MAX_SECONDS:
            raise PassError(f"{name} must be > 0 and at most {MAX_SECONDS:g} seconds, got {seconds}")
    if not options.stage_imbalance_tolerance >= 0:
        raise PassError(f"stage-imbalance-tolerance must be >= 0, got {options.stage_imbalance_tolerance}")
    intra_op_costs.strategy_options(getattr(options, "intra_op_options", ""))


def cluster_from_options(options: types.SimpleNamespace) -> cost.ClusterModel:
    """The cluster the pass plans over: `cluster`, `device-flops`, `device-memory`,
    `device-memory-bandwidth` (an option left out keeps the inter-op default of autopar.cost)."""
    hosts, devices = cluster_lib.parse_shape(options.cluster, "cluster")
    if options.micro_batches < 1:
        raise PassError(f"micro-batches must be >= 1, got {options.micro_batches}")
    memory = int(options.device_memory)
    if not options.device_flops > 0 or not memory > 0 or not options.device_memory_bandwidth > 0:
        raise PassError(
            "device-flops (FLOP/s), device-memory (bytes) and device-memory-bandwidth (bytes/s) must be > 0"
        )
    device = cost.DeviceModel(
        flops=options.device_flops, memory_bandwidth=options.device_memory_bandwidth, memory_bytes=memory
    )
    return cost.inter_op_cluster(hosts, devices, device)


def plan_stages(
    layered: LayeredGraph,
    cluster: cost.ClusterModel,
    submeshes: list[tuple[int, int]],
    options: types.SimpleNamespace,
) -> Plan:
    """`stage_costs` then `solve_plan`."""
    profile, table = stage_costs(layered, cluster, submeshes, options)
    return solve_plan(
        table, profile, submeshes, cluster, options.micro_batches, options.stage_imbalance_tolerance
    )


def stage_costs(
    layered: LayeredGraph,
    cluster: cost.ClusterModel,
    submeshes: list[tuple[int, int]],
    options: types.SimpleNamespace,
    stats: dict[str, float] | None = None,
) -> tuple[LayerProfile, CostTable]:
    """The layers' profile and the stage DP's cost table (`stage-cost`: intra-op estimates or the analytic
    model); `stats`, when given, receives the counters of the intra-op estimates."""
    profile = profile_layers(layered)
    max_stages = min(layered.num_layers, cluster.num_devices)
    layer_time = None
    if options.stage_cost == "intra-op":
        layer_time = intra_op_layer_times(layered, cluster, submeshes, options, stats)
    table = stage_cost_table(
        profile,
        submeshes,
        cluster,
        options.micro_batches,
        max_stages,
        layer_time,
        remat=options.remat,
        schedule=options.schedule,
        transfer_time=(
            boundary_transfer_times(profile, submeshes, cluster)
            if getattr(options, "price_transfers", True)
            else None
        ),
    )
    return profile, table


def intra_op_layer_times(
    layered: LayeredGraph,
    cluster: cost.ClusterModel,
    submeshes: list[tuple[int, int]],
    options: types.SimpleNamespace,
    stats: dict[str, float] | None = None,
) -> np.ndarray:
    """[layer][submesh][config] seconds per micro-batch from the intra-op estimate (inf: no such config);
    `stats`, when given, receives the counters of `intra_op_costs.layer_times`."""
    configs = [cluster_lib.logical_meshes(s) for s in submeshes]
    width = max(len(c) for c in configs)
    meshes = sorted({(h, d, p, q) for (h, d), cs in zip(submeshes, configs, strict=True) for p, q in cs})
    modules = intra_op_costs.layer_modules(layered, options)
    times, counters = intra_op_costs.layer_times(
        modules,
        meshes,
        cluster,
        options.stage_cost_budget,
        options.stage_cost_time_limit,
        getattr(options, "stage_cost_solver", "auto"),
        intra_op_costs.strategy_options(getattr(options, "intra_op_options", "")),
    )
    if stats is not None:
        stats.update(counters, meshes=float(len(meshes)))
    out = np.full((layered.num_layers, len(submeshes), width), np.inf)
    column = {m: k for k, m in enumerate(meshes)}
    for s, ((h, d), cs) in enumerate(zip(submeshes, configs, strict=True)):
        for c, (p, q) in enumerate(cs):
            out[:, s, c] = times[:, column[(h, d, p, q)]]
    return out


def solve_plan(table, profile, submeshes, cluster, micro_batches: int, tolerance: float) -> Plan:
    L = profile.num_layers
    out = _core.solve_stages(
        L,
        cluster.num_devices,
        micro_batches,
        [h * d for h, d in submeshes],
        table.num_configs,
        np.nan_to_num(table.cost, nan=np.inf).ravel().tolist(),
        table.max_succeeding_stages.ravel().tolist(),
        imbalance_tolerance=tolerance,
    )
    if not out.feasible:
        raise PassError(_infeasible_message(table, profile, cluster, micro_batches))
    stages = []
    chosen = [submeshes[st.submesh] for st in out.stages]
    device_ids = cluster_lib.place(chosen, cluster)
    for st, ids in zip(out.stages, device_ids, strict=True):
        a, b, s, c = st.start_layer, st.end_layer, st.submesh, st.config
        stages.append(
            StagePlan(
                a,
                b,
                submeshes[s],
                table.configs[s][c],
                ids,
                st.cost,
                table.stage_memory(a, b, s, c),
            )
        )
    return Plan(stages, out.latency, out.tmax_candidates, out.tmax_evaluated)


def _infeasible_message(table, profile, cluster, micro_batches: int) -> str:
    n = cluster.num_devices
    fixed = 2 * profile.param_bytes.sum() + profile.optimizer_bytes.sum()
    # Best case: one stage with every layer, one micro-batch in flight, on the cheapest logical mesh of
    # the largest submesh (the model's state split as far as the model allows).
    whole = table.fixed_memory[0, -1] + table.activation_memory[0, -1]  # [submesh][config]
    needed = (
        float(np.min(whole[-1]))
        if np.isfinite(whole[-1]).any()
        else (fixed + profile.activation_bytes.sum()) / n
    )
    return (
        f"the {cluster.hosts}x{cluster.devices_per_host} cluster cannot hold the model: it needs at least "
        f"{cost.bytes_text(needed)} per device (parameters, gradients and optimizer state take "
        f"{cost.bytes_text(fixed)} in all) but devices have {cost.bytes_text(cluster.device.memory_bytes)}; "
        "use more devices, smaller (more) micro-batches, remat=true or a larger device-memory (bytes)"
    )


def outline_stages(
    module_op: ir.Operation,
    layered: LayeredGraph,
    plan: Plan,
    micro_batches: int,
    split_backward: bool = False,
) -> None:
    """Outlines the plan's stages into @stage_k_{forward,backward,apply} (with `split_backward`, each
    backward as @stage_k_backward_input and @stage_k_backward_weight) and writes the plan attributes."""
    outline(layered.graph, _groups(layered, plan, split_backward), layered.free, layered.part)
    attrs.set_inter_op_plan(module_op, plan.ir_plan(micro_batches))


BACKWARD_INPUT, BACKWARD_WEIGHT = "backward_input", "backward_weight"


def _split_backward(layered: LayeredGraph, members: dict[tuple[str, int], list[int]], stages: int) -> None:
    """Splits each stage's backward ops (ZB-H1) by data flow: the input half is what the previous stages'
    backward reads (the cotangents they wait for) and everything it needs within the stage; the weight
    half is the rest (the weight gradients, which only the apply and the outputs read)."""
    nodes = layered.graph.nodes
    stage_of: dict[int, int] = {}
    for (kind, k), ids in members.items():
        if kind == BACKWARD:
            stage_of.update((i, k) for i in ids)
    for k in range(stages):
        ids = members.pop((BACKWARD, k), [])
        mine = set(ids)
        needed = [i for i in ids if any(stage_of.get(u, k) < k for u in nodes[i].users)]
        inputs = set(needed)
        while needed:
            for p in nodes[needed.pop()].operands:
                if p in mine and p not in inputs:
                    inputs.add(p)
                    needed.append(p)
        for kind, part in (
            (BACKWARD_INPUT, [i for i in ids if i in inputs]),
            (BACKWARD_WEIGHT, [i for i in ids if i not in inputs]),
        ):
            if part:
                members[(kind, k)] = part


def _groups(layered: LayeredGraph, plan: Plan, split_backward: bool = False) -> list[Group]:
    graph, layer, part, free = layered.graph, layered.layer, layered.part, layered.free
    stage_of_layer = {}
    for k, stage in enumerate(plan.stages):
        for lay in range(stage.start_layer, stage.end_layer):
            stage_of_layer[lay] = k
    members: dict[tuple[str, int], list[int]] = {}
    for i in range(len(graph.nodes)):
        if not free[i]:
            members.setdefault((part[i], stage_of_layer[layer[i]]), []).append(i)
    S = len(plan.stages)
    backward = [BACKWARD]
    if split_backward:
        _split_backward(layered, members, S)
        backward = [BACKWARD_INPUT, BACKWARD_WEIGHT]
    order = [(FORWARD, k) for k in range(S)] + [(kind, k) for k in reversed(range(S)) for kind in backward]
    order += [(APPLY, k) for k in range(S)]
    groups = []
    for kind, k in order:
        if (kind, k) not in members:
            continue
        attributes = attrs.stage_attributes(k, kind, plan.stages[k].stage_mesh())
        groups.append(Group(f"stage_{k}_{kind}", members[(kind, k)], attributes))
    return groups
