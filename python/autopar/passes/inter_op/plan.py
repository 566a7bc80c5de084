"""The inter-op plan as data and as the module attributes other passes and the runtime read."""

from __future__ import annotations

import dataclasses

from autopar.ir import attrs


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """Attributes:
    start_layer, end_layer: the stage's layers [start, end).
    submesh: physical shape (hosts, devices per host).
    logical_mesh: (data-parallel, tensor-parallel) shape the cost assumed.
    device_ids: the cluster devices (host * D + local) it runs on.
    cost: estimated seconds per micro-batch.
    memory: estimated bytes per device with one micro-batch in flight.
    """

    start_layer: int
    end_layer: int
    submesh: tuple[int, int]
    logical_mesh: tuple[int, int]
    device_ids: list[int]
    cost: float
    memory: float

    def stage_mesh(self) -> attrs.StageMesh:
        """The `autopar.mesh` of the stage's functions (and of its plan entry)."""
        return attrs.StageMesh(tuple(self.submesh), tuple(self.logical_mesh), tuple(self.device_ids))

    def planned_stage(self) -> attrs.PlannedStage:
        """The stage's entry in `autopar.inter_op.plan` (memory in whole bytes)."""
        return attrs.PlannedStage(
            (self.start_layer, self.end_layer), self.stage_mesh(), self.cost, int(self.memory)
        )


@dataclasses.dataclass(frozen=True)
class Plan:
    stages: list[StagePlan]
    latency: float
    tmax_candidates: int = 0
    tmax_evaluated: int = 0

    def ir_plan(self, micro_batches: int) -> attrs.InterOpPlan:
        """The plan as the module attributes autopar-inter-op writes."""
        return attrs.InterOpPlan(tuple(s.planned_stage() for s in self.stages), self.latency, micro_batches)

    def describe(self) -> str:
        lines = [f"{len(self.stages)} stage(s), estimated latency {self.latency * 1e3:.3f} ms per iteration"]
        for k, s in enumerate(self.stages):
            lines.append(
                f"  stage {k}: layers [{s.start_layer}, {s.end_layer}) "
                f"on submesh {s.submesh[0]}x{s.submesh[1]} "
                f"(logical {s.logical_mesh[0]}x{s.logical_mesh[1]}, devices {s.device_ids}), "
                f"{s.cost * 1e3:.3f} ms/micro-batch"
            )
        return "\n".join(lines)
