"""The inter-op plan as data and as the module attributes other passes and the runtime read."""

from __future__ import annotations

import dataclasses

from jaxlib.mlir import ir


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

    def mesh_attribute(self) -> ir.Attribute:
        return ir.DictAttr.get(
            {
                "shape": ir.DenseI64ArrayAttr.get(list(self.submesh)),
                "logical_shape": ir.DenseI64ArrayAttr.get(list(self.logical_mesh)),
                "device_ids": ir.DenseI64ArrayAttr.get(self.device_ids),
            }
        )


@dataclasses.dataclass(frozen=True)
class Plan:
    stages: list[StagePlan]
    latency: float
    tmax_candidates: int = 0
    tmax_evaluated: int = 0

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


def plan_attribute(plan: Plan) -> ir.Attribute:
    i64 = ir.IntegerType.get_signless(64)
    stages = []
    for s in plan.stages:
        stages.append(
            ir.DictAttr.get(
                {
                    "layers": ir.DenseI64ArrayAttr.get([s.start_layer, s.end_layer]),
                    "mesh": s.mesh_attribute(),
                    "cost": ir.FloatAttr.get_f64(s.cost),
                    "memory": ir.IntegerAttr.get(i64, int(s.memory)),
                }
            )
        )
    return ir.ArrayAttr.get(stages)
