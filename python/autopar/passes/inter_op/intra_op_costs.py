"""Stage times from the intra-op machinery: `autopar.passes.intra_op.estimate` per layer and logical mesh.

Each layer's forward and backward ops (one micro-batch) are copied into a module of their own (the values
they read from other layers become arguments, the values other layers read become results) and the intra-op
strategy problem is solved for every distinct logical mesh (p data x q tensor, with the alpha-beta of the
links each axis crosses). A stage's time over layers [a, b] is the sum of its layers' objectives (prefix
sums: planning stays O(distinct layers x meshes) solves, not O(L^2)). Layers whose IR is identical (every
block of a uniform transformer) are solved once: each distinct layer is read once into a
`PlanningGraph` (the mesh-independent half of the intra-op pass) and solved for every distinct canonical
mesh ((n, 1) and (1, n) over the same links are one problem); results are cached per process by (layer
hash, canonical mesh, options). The layer's IR is left unchanged.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
from jaxlib.mlir import ir

from autopar.cost import ClusterModel
from autopar.errors import PassError
from autopar.ir import attrs
from autopar.ir.stages import mark_as_main
from autopar.passes.inter_op.layers import APPLY, LayeredGraph
from autopar.passes.inter_op.outline import Group, _build_function, _interface
from autopar.passes.intra_op.config import restricts_parameters, splits_batches

# (hosts, devices per host, data-parallel p, tensor-parallel q) of one submesh's logical mesh
MeshKey = tuple[int, int, int, int]


def layer_modules(layered: LayeredGraph, options: Any = None) -> list[ir.Module]:
    """One module per layer whose public @main is the layer's forward + backward ops, without their
    `autopar.layer` numbers (so equal layers print, hash and solve as one). When the pass's
    `intra-op-options` split batches (force-data-parallel, ...), the arguments that hold one row per example
    are marked `autopar.batch`, and when they restrict parameters (zero-stage, allow-replicated-parameters),
    the parameters `autopar.parameter` (the layer then updates nothing: `autopar.no_updates`), as
    autopar-shard-stages marks a stage's forward part: without the marks those options price every layer
    replicated."""
    graph, layer, part, free = layered.graph, layered.layer, layered.part, layered.free
    strategy = strategy_options(getattr(options, "intra_op_options", "")) if options is not None else {}
    mark_examples = splits_batches(
        strategy.get("force_data_parallel", False),
        strategy.get("zero_stage", 0),
        strategy.get("force_batch_dim_to_mesh_dim", -1),
    )
    mark_parameters = restricts_parameters(
        strategy.get("allow_replicated_parameters", True), strategy.get("zero_stage", 0)
    )
    block = graph.fn.regions[0].blocks[0]
    returned = set(block.operations[len(block.operations) - 1].operands)
    members: list[list[int]] = [[] for _ in range(layered.num_layers)]
    for i in range(len(graph.nodes)):
        if not free[i] and part[i] != APPLY:
            members[layer[i]].append(i)
    modules = []
    for nodes in members:
        with graph.fn.context, ir.Location.unknown():
            module = ir.Module.create()
        if nodes:
            group = Group("main", nodes, {})
            inputs, outputs = _interface(graph, group, free, returned)
            fn = _build_function(graph, group, inputs, outputs, free, module.body)
            fn.attributes["sym_visibility"] = ir.StringAttr.get("public", graph.fn.context)
            # As autopar-shard-stages marks a stage's forward part.
            mark_as_main(fn, inputs, graph.fn, examples=mark_examples, parameters=mark_parameters)
            for op in fn.entry_block.operations:
                attrs.clear_layer(op)
        modules.append(module)
    return modules


def axis_links(mesh: MeshKey, cluster: ClusterModel) -> tuple[str, str]:
    """`mesh-alpha`, `mesh-beta` option values for the (p, q) mesh: an axis crossing hosts is slow."""
    alpha, beta = _links(mesh, cluster)
    return ",".join(map(repr, alpha)), ",".join(map(repr, beta))


def _links(mesh: MeshKey, cluster: ClusterModel) -> tuple[list[float], list[float]]:
    h, d, p, q = mesh
    model = cluster.mesh((p, q), crosses_hosts=(h > 1, q > d))
    return list(model.alpha), list(model.beta)


def canonical_mesh(mesh: MeshKey, cluster: ClusterModel) -> tuple[tuple[int, float, float], ...]:
    """The strategy problem's mesh as (size, alpha, beta) of its axes of size > 1 (size-1 axes are never
    assigned): the logical meshes (n, 1) and (1, n) of one submesh cross the same links, so they are the
    same problem, solved once."""
    alpha, beta = _links(mesh, cluster)
    return tuple((size, a, b) for size, a, b in zip(mesh[2:], alpha, beta, strict=True) if size > 1)


# Solver per logical mesh under stage-cost-solver=auto. Measured on GPT-39B layers (docs/inter_op.md): with
# one active axis HiGHS proves the optimum in 0.3-0.5 s and the fast path alone can be 15 % worse there;
# with two axes the exact ILP closes no gap within seconds, while the fast path + plan families match or
# beat it in a third of the time (and stop on counted work, so the costs stay deterministic).
STAGE_COST_SOLVERS = ("auto", "ilp", "heuristic")


def mesh_solver(canonical: tuple, stage_cost_solver: str) -> str:
    if stage_cost_solver != "auto":
        return stage_cost_solver
    return "auto" if len(canonical) <= 1 else "heuristic"


# The autopar-intra-op options `intra-op-options` may carry into the stage costs: the ones that restrict the
# strategy space (the same restrictions then shape the costs the stage DP compares and the stages' plans),
# and widen-collectives (the element sizes XLA's collectives on the stages' platform move).
# The mesh and its links, the device speed, the solver and its budgets come from the stage-cost options.
STRATEGY_OPTIONS = (
    "force-data-parallel",
    "force-batch-dim-to-mesh-dim",
    "allow-all-gather",
    "allow-all-to-all",
    "prefer-reduce-scatter",
    "zero-stage",
    "allow-replicated-parameters",
    "allow-recompute-heavy-op",
    "widen-collectives",
)


def strategy_options(text: str) -> dict[str, object]:
    """`intra-op-options` text -> the typed values that differ from autopar-intra-op's defaults, as keyword
    arguments of `PlanningGraph.estimate`; PassError (one line) on an unknown, unsupported or mistyped one."""
    from autopar.errors import PipelineError
    from autopar.passes import pipeline, registry

    if not text.strip():
        return {}
    intra = registry.lookup("autopar-intra-op")
    assert intra is not None
    element = pipeline.Element("autopar-inter-op", text, text)
    out: dict[str, object] = {}
    try:
        for key, value in pipeline.parse_option_assignments(element):
            if key not in STRATEGY_OPTIONS:
                raise PassError(
                    f"intra-op-options: '{key}' does not reach the stage costs (they take "
                    f"{', '.join(STRATEGY_OPTIONS)})"
                )
            option = intra.option(key)
            typed = option.parse(value, "autopar-intra-op")
            if typed != option.default:
                out[option.attr_name] = typed
    except PipelineError as err:
        raise PassError(f"intra-op-options: {err}") from None
    return out


# Process-wide: (layer hash, canonical mesh, device FLOP/s and memory bandwidth, planning budget, solver,
# strategy options) -> seconds. Planning the same model again (other cluster shapes, micro-batch counts,
# parallelize retracing) reuses every solve.
_CACHE: dict[tuple, float] = {}
_CACHE_LIMIT = 1 << 16


def clear_cache() -> None:
    """Forgets every cached layer cost (the next plan solves again)."""
    _CACHE.clear()


def layer_times(
    modules: list[ir.Module],
    meshes: list[MeshKey],
    cluster: ClusterModel,
    budget: float,
    time_limit: float,
    solver: str = "auto",
    strategy: dict[str, object] | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """[layer][mesh] seconds per micro-batch, and counters (distinct layers, solves, cache hits, seconds).

    Each distinct layer (by content hash) is read once into a `PlanningGraph` (Shardy rules, op graph,
    FLOP and byte counts) and solved once per distinct canonical mesh. `strategy` holds the
    autopar-intra-op options that restrict the strategies (`strategy_options`), the same for every layer."""
    from autopar.passes.intra_op import PlanningGraph  # the intra-op pass imports its own registry entry

    start = time.perf_counter()
    times = np.zeros((len(modules), len(meshes)))
    keys = [_body_key(module) for module in modules]
    strategy = dict(strategy or {})
    canonical = [canonical_mesh(mesh, cluster) for mesh in meshes]
    # A forced batch axis tells (n, 1) from (1, n): they are no longer one problem.
    forced = strategy.get("force_batch_dim_to_mesh_dim", -1) >= 0
    problems = [(mesh[2:], canon) if forced else canon for mesh, canon in zip(meshes, canonical, strict=True)]
    extra = tuple(sorted(strategy.items()))
    solves = hits = 0
    distinct: dict[str, int] = {}
    for lay, key in enumerate(keys):
        if key and key not in distinct:
            distinct[key] = lay
    device = (cluster.device.flops, cluster.device.memory_bandwidth)  # what the estimate reads of it
    for key, lay in distinct.items():
        planning = None
        for mesh, canon, prob in zip(meshes, canonical, problems, strict=True):
            chosen = mesh_solver(canon, solver)
            cache_key = (key, prob, device, budget, chosen, *extra)
            if cache_key in _CACHE:
                hits += 1
                continue
            if planning is None:
                planning = PlanningGraph(modules[lay])
            alpha, beta = axis_links(mesh, cluster)
            cost, _, _ = planning.estimate(
                (mesh[2], mesh[3]),
                device_flops=cluster.device.flops,
                device_memory_bandwidth=cluster.device.memory_bandwidth,
                mesh_alpha=alpha,
                mesh_beta=beta,
                planning_budget=budget,
                time_limit=time_limit,
                solver=chosen,
                **strategy,
            )
            if len(_CACHE) >= _CACHE_LIMIT:
                _CACHE.clear()
            _CACHE[cache_key] = cost
            solves += 1
    for lay, key in enumerate(keys):
        if key:
            for m, (canon, prob) in enumerate(zip(canonical, problems, strict=True)):
                chosen = mesh_solver(canon, solver)
                times[lay, m] = _CACHE[(key, prob, device, budget, chosen, *extra)]
    stats = {
        "distinct_layers": float(len(distinct)),
        "solves": float(solves),
        "cache_hits": float(hits),
        "seconds": time.perf_counter() - start,
    }
    return times, stats


def _body_key(module: ir.Module) -> str:
    """SHA-256 of the module's text without locations (`layer_modules` dropped the layer numbers): equal
    for layers computing the same thing ("" for an empty layer)."""
    if not list(module.body.operations):
        return ""
    text = module.operation.get_asm(enable_debug_info=False)
    return hashlib.sha256(text.encode()).hexdigest()
