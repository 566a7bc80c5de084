"""Stage times from the intra-op machinery: `autopar.passes.intra_op.estimate` per layer and logical mesh.

Each layer's forward and backward ops (one micro-batch) are copied into a module of their own (the values
they read from other layers become arguments, the values other layers read become results) and the intra-op
strategy problem is solved for every distinct logical mesh (p data x q tensor, with the alpha-beta of the
links each axis crosses). A stage's time over layers [a, b] is the sum of its layers' objectives (prefix
sums: planning stays O(distinct layers x meshes) solves, not O(L^2)). Layers whose IR is identical (every
block of a uniform transformer) are solved once. The layer's IR is left unchanged.
"""

from __future__ import annotations

import re
import time

import numpy as np
from jaxlib.mlir import ir, passmanager

from autopar.passes.inter_op.cluster import Cluster
from autopar.passes.inter_op.graph import Graph
from autopar.passes.inter_op.layers import APPLY
from autopar.passes.inter_op.outline import Group, _build_function, _interface

# (hosts, devices per host, data-parallel p, tensor-parallel q) of one submesh's logical mesh
MeshKey = tuple[int, int, int, int]


def layer_modules(
    graph: Graph, layer: list[int], part: list[str], free: list[bool], num_layers: int
) -> list[ir.Module]:
    """One module per layer whose public @main is the layer's forward + backward ops."""
    block = graph.fn.regions[0].blocks[0]
    returned = set(block.operations[len(block.operations) - 1].operands)
    members: list[list[int]] = [[] for _ in range(num_layers)]
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
        modules.append(module)
    return modules


def axis_links(mesh: MeshKey, cluster: Cluster) -> tuple[str, str]:
    """`mesh-alpha`, `mesh-beta` option values for the (p, q) mesh: an axis crossing hosts is slow."""
    h, d, p, q = mesh
    p_inter, q_inter = h > 1, q > d
    alpha = [cluster.inter_alpha if x else cluster.intra_alpha for x in (p_inter, q_inter)]
    beta = [cluster.inter_beta if x else cluster.intra_beta for x in (p_inter, q_inter)]
    return ",".join(map(repr, alpha)), ",".join(map(repr, beta))


def layer_times(
    modules: list[ir.Module], meshes: list[MeshKey], cluster: Cluster, time_limit: float
) -> tuple[np.ndarray, dict[str, float]]:
    """[layer][mesh] seconds per micro-batch, and counters (distinct layers, solves, seconds)."""
    from autopar.passes.intra_op import estimate  # the intra-op pass imports its own registry entry

    times = np.zeros((len(modules), len(meshes)))
    cache: dict[tuple[str, MeshKey], float] = {}
    distinct: dict[str, ir.Module] = {}
    keys = []
    start = time.perf_counter()
    for module in modules:
        key = _body_key(module)
        keys.append(key)
        if key and key not in distinct:
            distinct[key] = module
            # Attach Shardy's rules once; estimate() then reuses them for every mesh.
            passmanager.PassManager.parse(
                "builtin.module(func.func(sdy-populate-op-sharding-rules))", module.context
            ).run(module.operation)
    for lay, key in enumerate(keys):
        if not key:
            continue
        for m, mesh in enumerate(meshes):
            if (key, mesh) not in cache:
                alpha, beta = axis_links(mesh, cluster)
                cost, _, _ = estimate(
                    distinct[key],
                    (mesh[2], mesh[3]),
                    device_flops=cluster.device_flops,
                    mesh_alpha=alpha,
                    mesh_beta=beta,
                    time_limit=time_limit,
                )
                cache[(key, mesh)] = cost
            times[lay, m] = cache[(key, mesh)]
    stats = {
        "distinct_layers": float(len(distinct)),
        "solves": float(len(cache)),
        "seconds": time.perf_counter() - start,
    }
    return times, stats


_LAYER_ATTR = re.compile(r"autopar\.layer = \d+ : i64")


def _body_key(module: ir.Module) -> str:
    """The module's text without locations or layer numbers: equal for layers computing the same thing."""
    if not list(module.body.operations):
        return ""
    return _LAYER_ATTR.sub("", module.operation.get_asm(enable_debug_info=False))
