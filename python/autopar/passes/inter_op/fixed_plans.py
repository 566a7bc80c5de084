"""Plans the stage DP does not choose: hand-placed stages (`manual-stages`, Alpa's ManualStageOption) and
the interleaved placement of `schedule=interleaved-1f1b`. Both read their costs and memory from the DP's
cost table, so their figures are the ones the DP would have compared."""

from __future__ import annotations

import dataclasses

from autopar import cost
from autopar.errors import PassError
from autopar.passes.inter_op import cluster as cluster_lib
from autopar.passes.inter_op.plan import Plan, StagePlan
from autopar.passes.inter_op.stage_costs import CostTable


@dataclasses.dataclass(frozen=True)
class ManualStage:
    start: int
    end: int
    submesh: tuple[int, int]
    logical: tuple[int, int]


def parse_manual_stages(text: str, cluster: cost.ClusterModel) -> list[ManualStage]:
    """`start-end:HxD:PxQ,...` -> stages; the errors name the entry and what to write instead."""
    stages = []
    for entry in text.split(","):
        fields = entry.strip().split(":")
        layers = fields[0].split("-") if fields else []
        if len(fields) != 3 or len(layers) != 2 or not all(x.strip().isdigit() for x in layers):
            raise PassError(
                f"manual-stages entry '{entry}' is not start-end:HxD:PxQ (layers [start, end) on an HxD "
                "submesh with a PxQ logical mesh, e.g. 0-2:1x4:2x2)"
            )
        submesh = cluster_lib.parse_shape(fields[1], f"manual-stages entry '{entry}' submesh")
        logical = cluster_lib.parse_shape(fields[2], f"manual-stages entry '{entry}' logical mesh")
        if logical[0] * logical[1] != submesh[0] * submesh[1]:
            raise PassError(
                f"manual-stages entry '{entry}': the logical mesh {fields[2]} must have the submesh's "
                f"{submesh[0] * submesh[1]} devices"
            )
        if submesh[0] > cluster.hosts or submesh[1] > cluster.devices_per_host:
            raise PassError(
                f"manual-stages entry '{entry}': submesh {fields[1]} does not fit the "
                f"{cluster.hosts}x{cluster.devices_per_host} cluster"
            )
        stages.append(ManualStage(int(layers[0]), int(layers[1]), submesh, logical))
    return stages


def manual_plan(
    manual: list[ManualStage],
    table: CostTable,
    submeshes: list[tuple[int, int]],
    cluster: cost.ClusterModel,
    num_layers: int,
    micro_batches: int,
) -> Plan:
    """The hand-placed stages as a plan: devices placed as the DP's plans are, costs and memory from the
    table, latency by the DP's formula (sum of stage times + (B - 1) * the slowest)."""
    expected = 0
    for stage in manual:
        if stage.start != expected or stage.end <= stage.start:
            raise PassError(
                f"manual-stages must cover layers 0..{num_layers} in order without gaps: a stage starts at "
                f"{stage.start} (expected {expected}) and ends at {stage.end}"
            )
        expected = stage.end
    if expected != num_layers:
        raise PassError(f"manual-stages end at layer {expected}, but the step has {num_layers} layers")
    if sum(s.submesh[0] * s.submesh[1] for s in manual) > cluster.num_devices:
        raise PassError(
            f"manual-stages use {sum(s.submesh[0] * s.submesh[1] for s in manual)} devices, more than the "
            f"cluster's {cluster.num_devices}"
        )
    device_ids = cluster_lib.place([s.submesh for s in manual], cluster)
    stages = []
    for stage, ids in zip(manual, device_ids, strict=True):
        s = submeshes.index(stage.submesh)
        if stage.logical not in table.configs[s]:
            choices = ", ".join(f"{p}x{q}" for p, q in table.configs[s])
            raise PassError(
                f"manual-stages: the logical mesh {stage.logical[0]}x{stage.logical[1]} is not one of "
                f"submesh {stage.submesh[0]}x{stage.submesh[1]}'s ({choices})"
            )
        c = table.configs[s].index(stage.logical)
        a, b = stage.start, stage.end
        memory = table.stage_memory(a, b, s, c)
        stages.append(
            StagePlan(
                a, b, stage.submesh, stage.logical, ids, float(table.cost[a, b - 1, s, c]), float(memory)
            )
        )
    costs = [st.cost for st in stages]
    return Plan(stages, sum(costs) + (micro_batches - 1) * max(costs))


def interleave(
    plan: Plan, table: CostTable, submeshes, num_layers: int, chunks: int, micro_batches: int
) -> Plan:
    """Interleaved 1F1B (Megatron-LM): the plan's S equal meshes each run `chunks` virtual stages; the
    layers are cut into S * chunks contiguous ranges of near-equal count (autopar-cluster-layers made the
    layers near-equal in FLOPs), range j on mesh j mod S. Costs and memory come from the DP's table; the
    latency is (B + (S - 1) / chunks) times the slowest mesh's time per micro-batch: 1F1B's bubble of
    S - 1 stage times, cut by the chunks."""
    S = len(plan.stages)
    V = S * chunks
    if num_layers < V:
        raise PassError(
            f"interleaved-1f1b with {S} stages x {chunks} chunks needs at least {V} layers, got "
            f"{num_layers}: cut more layers (autopar-cluster-layers num-layers) or use fewer chunks"
        )
    bounds = [round(j * num_layers / V) for j in range(V + 1)]
    stages = []
    for j in range(V):
        mesh = plan.stages[j % S]
        s = submeshes.index(mesh.submesh)
        c = table.configs[s].index(mesh.logical_mesh)
        a, b = bounds[j], bounds[j + 1]
        memory = table.stage_memory(a, b, s, c)
        stages.append(
            StagePlan(
                a,
                b,
                mesh.submesh,
                mesh.logical_mesh,
                mesh.device_ids,
                float(table.cost[a, b - 1, s, c]),
                float(memory),
            )
        )
    per_mesh = [sum(st.cost for st in stages[k::S]) for k in range(S)]
    latency = (micro_batches + (S - 1) / chunks) * max(per_mesh)
    return Plan(stages, latency, plan.tmax_candidates, plan.tmax_evaluated)
