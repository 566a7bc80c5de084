"""Stage costs: the time and memory of every (layer range, submesh, logical mesh) for the stage DP.

One interface, `CostTable = stage_cost_table(profile, submeshes, cluster, micro_batches)`, so the analytic
model here can be swapped for the intra-op pass's estimate. The analytic model is additive over layers:
each layer is profiled once from the IR (FLOPs, parameter, optimizer-state, activation and tensor-parallel
traffic bytes) and a layer range is the sum of its layers (prefix sums), so the table costs
O(L^2 * submeshes * logical meshes) arithmetic and no compile.

Time of a stage per micro-batch on a logical mesh (p data-parallel x q tensor-parallel devices):
  compute   (forward + backward FLOPs) / B / (p q device FLOP/s)
  tensor    all-reduce of the activations of every parameter matmul over q (Megatron: one all-reduce per
            pair of matmuls, forward and backward): alpha_q + 2 (q-1)/q * bytes / B / p * beta_q
  data      gradient all-reduce over p once per iteration, amortised over the B micro-batches
  apply     optimizer FLOPs / (p q device FLOP/s), amortised over B
  transfers the activations into the stage's first layer and the cotangents into its last, moved between
            meshes by the cross-mesh resharding plan (`boundary_transfer_times`), when priced
Devices and links are the `autopar.cost.ClusterModel`'s: an axis inside a host uses `intra_host`, one
crossing hosts `inter_host`.
Memory per device (Alpa's max_n_succ_stages check): (parameters + gradients + optimizer state) / q, plus
the activations one micro-batch keeps for the backward pass / (p q) times the micro-batches in flight
(1F1B: a stage with k stages after it holds k + 1 of them, at most B; GPipe: all B; ZB-H1: as many as
there are stages, counted as the most the DP may choose). With `remat` only
each layer's inputs are kept per micro-batch, plus one layer's residuals during its backward.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from autopar.cost import ClusterModel
from autopar.passes.inter_op.cluster import logical_meshes
from autopar.passes.inter_op.graph import HEAVY_OPS, Graph
from autopar.passes.inter_op.layers import APPLY, BACKWARD, FORWARD, LayeredGraph


@dataclasses.dataclass
class LayerProfile:
    """Per layer (arrays of length L), for one micro-batch.

    Attributes:
      compute_flops: forward + backward FLOPs.
      forward_flops: forward FLOPs alone (what rematerialisation recomputes).
      apply_flops: optimizer FLOPs (once per iteration).
      param_bytes: arguments the forward part reads and the apply part updates.
      optimizer_bytes: arguments only the apply part reads (optimizer state).
      activation_bytes: forward values the backward part reads (residuals kept for the backward pass);
        ops that need no input (constants, iota, their broadcasts) are recomputed where used, not kept.
      input_bytes: forward values of earlier layers (and batch arguments) the layer's forward reads: what a
        rematerialised layer keeps per micro-batch.
      tensor_parallel_bytes: outputs of parameter matmuls (what tensor parallelism all-reduces).
      boundary_values: per layer k, (shape, bytes per element) of the forward values of layers before k
        that forward ops of layer k or later read: what crosses into a stage that starts at layer k (the
        cotangents of the same shapes cross back). Empty for layer 0.
    """

    compute_flops: np.ndarray
    forward_flops: np.ndarray
    apply_flops: np.ndarray
    param_bytes: np.ndarray
    optimizer_bytes: np.ndarray
    activation_bytes: np.ndarray
    input_bytes: np.ndarray
    tensor_parallel_bytes: np.ndarray
    boundary_values: list[list[tuple[tuple[int, ...], int]]] = dataclasses.field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return len(self.compute_flops)


def profile_layers(layered: LayeredGraph) -> LayerProfile:
    """What each layer computes, keeps and reads, for one micro-batch (free ops count as no layer's)."""
    graph, layer, part, free = layered.graph, layered.layer, layered.part, layered.free
    num_layers = layered.num_layers
    z = lambda: np.zeros(num_layers)  # noqa: E731
    compute, forward, apply, params, opt, act, inputs, tp = z(), z(), z(), z(), z(), z(), z(), z()
    readers: dict[int, set[str]] = {}
    first_forward: dict[int, int] = {}
    boundary: list[list[tuple[tuple[int, ...], int]]] = [[] for _ in range(num_layers)]
    for i, node in enumerate(graph.nodes):
        lay, kind = layer[i], part[i]
        if kind == APPLY:
            apply[lay] += node.flops
        else:
            compute[lay] += node.flops
        if kind == FORWARD and not free[i]:
            forward[lay] += node.flops
            if any(part[u] == BACKWARD for u in node.users):
                act[lay] += node.out_bytes
            if node.name in HEAVY_OPS and node.args:
                tp[lay] += node.out_bytes
            later = {layer[u] for u in node.users if part[u] == FORWARD and layer[u] > lay}
            for other in later:
                inputs[other] += node.out_bytes
            for k in range(lay + 1, max(later, default=lay) + 1):  # every boundary the value crosses
                boundary[k].extend(_shapes(node))
        for a in node.args:
            readers.setdefault(a, set()).add(kind)
            if kind == FORWARD:
                first_forward.setdefault(a, lay)
    for a, kinds in readers.items():
        if FORWARD in kinds and APPLY in kinds:
            params[first_forward[a]] += graph.arg_bytes[a]
        elif kinds == {APPLY}:
            opt[min(layer[i] for i in _readers_of(graph, a))] += graph.arg_bytes[a]
        elif FORWARD in kinds:  # a batch argument: the first layer's input
            inputs[first_forward[a]] += graph.arg_bytes[a]
    return LayerProfile(compute, forward, apply, params, opt, act, inputs, tp, boundary)


def _shapes(node) -> list[tuple[tuple[int, ...], int]]:
    from jaxlib.mlir import ir

    from autopar.passes.inter_op.graph import tensor_bytes

    out = []
    for result in node.op.results:
        if isinstance(result.type, ir.RankedTensorType):
            shape = tuple(ir.RankedTensorType(result.type).shape)
            out.append((shape, max(int(round(tensor_bytes(result.type) / max(math.prod(shape), 1))), 1)))
    return out


def boundary_transfer_times(
    profile: LayerProfile, submeshes: list[tuple[int, int]], cluster: ClusterModel
) -> np.ndarray:
    """[boundary k in 0..L][submesh][config]: seconds to move the values crossing layer boundary k into a
    stage on that submesh and logical mesh (0 at k = 0 and k = L), planned by the cross-mesh resharding
    core (`_core.plan_reshard`, local all-gather on). When the DP prices a stage it does not know its
    neighbour's mesh, so the sender is assumed to be an equal logical mesh (p, q) on other devices, and
    both hold the values as the stage costs assume a stage's inputs: the batch dim (dim 0) split over
    the data-parallel axis p, replicated over the tensor-parallel axis q (dim 0 replicated where p does
    not divide it). The link crosses hosts when the cluster has several and the submesh is whole hosts
    (its neighbours then sit on other hosts), else it is the intra-host link."""
    from autopar import _core

    L = profile.num_layers
    configs = [logical_meshes(s) for s in submeshes]
    out = np.zeros((L + 1, len(submeshes), max(len(c) for c in configs)))
    values = profile.boundary_values or [[] for _ in range(L)]
    memo: dict[tuple, float] = {}
    for s, (_, d) in enumerate(submeshes):
        link = cluster.link(crosses_hosts=cluster.hosts > 1 and d == cluster.devices_per_host)
        for c, (p, q) in enumerate(configs[s]):
            for k in range(1, L):
                total = 0.0
                for shape, itemsize in values[k]:
                    key = (shape, itemsize, p, q, link)
                    if key not in memo:
                        axes = [[0] if i == 0 and shape[0] % p == 0 else [] for i in range(len(shape))]
                        plan = _core.plan_reshard(
                            list(shape),
                            itemsize,
                            [p, q],
                            list(range(p * q)),
                            axes,
                            [p, q],
                            list(range(p * q, 2 * p * q)),
                            axes,
                            True,
                            link.alpha,
                            link.beta,
                        )
                        memo[key] = plan.seconds
                    total += memo[key]
                out[k, s, c] = total
    return out


def _readers_of(graph: Graph, arg: int) -> list[int]:
    return [i for i, node in enumerate(graph.nodes) if arg in node.args]


@dataclasses.dataclass
class CostTable:
    """Flat [start][end][submesh][config] tables, as `_core.solve_stages` takes them.

    Attributes:
      cost: seconds per micro-batch (inf where the config does not exist for the submesh).
      max_succeeding_stages: memory feasibility (-1: never fits).
      fixed_memory: bytes per device of parameters, gradients and optimizer state.
      activation_memory: bytes per device of one micro-batch's activations.
      configs: logical meshes per submesh (padded lists).
    """

    cost: np.ndarray
    max_succeeding_stages: np.ndarray
    fixed_memory: np.ndarray
    activation_memory: np.ndarray
    configs: list[list[tuple[int, int]]]
    num_configs: int

    def stage_memory(self, start: int, end: int, submesh: int, config: int) -> float:
        """Bytes per device of layers [start, end) on that submesh and logical mesh, one micro-batch in
        flight (what a plan records for a stage)."""
        index = (start, end - 1, submesh, config)
        return float(self.fixed_memory[index] + self.activation_memory[index])


def _range_max(x: np.ndarray) -> np.ndarray:
    """[start][end inclusive] max of x over the range (0 below the diagonal)."""
    L = len(x)
    out = np.zeros((L, L))
    for a in range(L):
        out[a, a:] = np.maximum.accumulate(x[a:])
    return out


def stage_cost_table(
    profile: LayerProfile,
    submeshes: list[tuple[int, int]],
    cluster: ClusterModel,
    micro_batches: int,
    max_stages: int,
    layer_time: np.ndarray | None = None,
    remat: bool = False,
    schedule: str = "1f1b",
    transfer_time: np.ndarray | None = None,
) -> CostTable:
    """`layer_time` [layer][submesh][config] (seconds per micro-batch of each layer's forward + backward,
    e.g. from the intra-op estimate) replaces the analytic compute and communication terms when given.
    `remat` (Alpa's use_remat: every layer rematerialised in its backward pass): a stage keeps only its
    layers' inputs per micro-batch in flight, plus one layer's residuals while that layer's backward runs,
    and pays the forward FLOPs once more. `transfer_time` ([boundary][submesh][config], from
    `boundary_transfer_times`) adds to a stage [k, m) the time to receive the activations at boundary k
    and the cotangents at boundary m: each boundary's two transfers are charged to their receivers, and
    are assumed not to overlap the stage's compute."""
    L, B = profile.num_layers, micro_batches
    configs = [logical_meshes(s) for s in submeshes]
    C = max(len(c) for c in configs)

    def ranges(x: np.ndarray) -> np.ndarray:
        prefix = np.concatenate([[0.0], np.cumsum(x)])
        table = prefix[None, 1:] - prefix[:-1, None]  # [start][end inclusive]
        return np.where(np.triu(np.ones((L, L), dtype=bool)), table, np.inf)

    flops, apply = ranges(profile.compute_flops), ranges(profile.apply_flops)
    params, opt = ranges(profile.param_bytes), ranges(profile.optimizer_bytes)
    act, tp = ranges(profile.activation_bytes), ranges(profile.tensor_parallel_bytes)
    if remat:
        saved, transient = ranges(profile.input_bytes), _range_max(profile.activation_bytes)
        recompute = ranges(profile.forward_flops)
    else:
        saved, transient, recompute = act, np.zeros((L, L)), np.zeros((L, L))
    cost = np.full((L, L, len(submeshes), C), np.inf)
    fixed = np.full_like(cost, np.inf)
    per_batch = np.full_like(cost, np.inf)
    for s, (h, d) in enumerate(submeshes):
        for c, (p, q) in enumerate(configs[s]):
            n, device_flops = p * q, cluster.device.flops
            q_link = cluster.link(crosses_hosts=q > d)
            p_link = cluster.link(crosses_hosts=h > 1)
            if layer_time is not None:
                time = ranges(layer_time[:, s, c]) + apply / B / (n * device_flops)
            else:
                time = (flops + apply / B) / (n * device_flops)
                time = time + q_link.all_reduce(tp / p, q)
                time = time + p_link.all_reduce(params / q, p) / B
            cost[:, :, s, c] = time + recompute / (n * device_flops)
            if transfer_time is not None:  # into the first layer (forward), into the last (backward)
                cost[:, :, s, c] += transfer_time[:L, s, c][:, None] + transfer_time[1:, s, c][None, :]
            fixed[:, :, s, c] = (2 * params + opt) / q + transient / n
            per_batch[:, :, s, c] = saved / n
    # Largest k with fixed + (k + 1) * per_batch <= memory (a stage with k stages after it keeps k + 1
    # micro-batches in flight, at most B).
    room = cluster.device.memory_bytes - fixed
    with np.errstate(divide="ignore", invalid="ignore"):
        in_flight = np.where(per_batch > 0, np.floor(room / per_batch), np.inf)
    cap = max(max_stages, 1)
    succ = np.where(room < 0, -1, np.minimum(in_flight - 1, cap))
    succ = np.where(in_flight >= B, cap, succ)  # all B micro-batches fit: any number of stages after
    if schedule == "gpipe":  # every stage holds all B micro-batches, wherever it sits
        succ = np.where(in_flight >= B, cap, -1)
    elif schedule == "zb-h1":  # every stage may hold as many as there are stages (at most max_stages)
        succ = np.where(in_flight >= min(B, cap), cap, -1)
    succ = np.where(np.isfinite(cost), succ, -1)
    return CostTable(cost, succ.astype(np.int64), fixed, per_batch, configs, C)
