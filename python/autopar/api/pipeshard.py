"""`PipeshardParallel` and its layer/stage options: the inter-op method of `autopar.parallelize`.

`parallelize` (owned by the API layer) dispatches on the method: for a PipeshardParallel it lowers the
step, runs `method.pipeline(cluster)` with `autopar.passes.run`, and executes the outlined module with
`autopar.runtime.sequential.SequentialExecutor` (pipelined schedules come later).
"""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class AutoLayerOption:
    """Attributes:
    layer_num: number of layers autopar-cluster-layers cuts the forward pass into.
    eps: a layer may have up to (1 + eps) times the mean layer FLOPs.
    """

    layer_num: int
    eps: float = 0.6


@dataclasses.dataclass(frozen=True)
class UniformStageOption:
    """Attributes:
    num_stages: equal submeshes the cluster is cut into (each gets cluster devices / num_stages).
    """

    num_stages: int


@dataclasses.dataclass(frozen=True)
class PipeshardParallel:
    """Attributes:
    num_micro_batches: micro-batches B of the pipeline.
    layer_option: AutoLayerOption, or "manual" for boundaries placed with mark_pipeline_boundary.
    stage_option: "auto" (Alpa's stage DP) or UniformStageOption.
    submesh_shapes: HxD shapes the DP may use (default: Alpa's).
    memory_per_device_gib: device memory the plan must fit.
    """

    num_micro_batches: int = 1
    layer_option: AutoLayerOption | Literal["manual"] = "manual"
    stage_option: UniformStageOption | Literal["auto"] = "auto"
    submesh_shapes: tuple[str, ...] = ()
    memory_per_device_gib: float = 16.0

    def __post_init__(self) -> None:
        if self.num_micro_batches < 1:
            raise ValueError(f"num_micro_batches must be >= 1, got {self.num_micro_batches}")
        if self.layer_option != "manual" and not isinstance(self.layer_option, AutoLayerOption):
            raise ValueError(
                f"layer_option must be AutoLayerOption(...) or 'manual', got {self.layer_option!r}"
            )
        if self.stage_option != "auto" and not isinstance(self.stage_option, UniformStageOption):
            raise ValueError(
                f"stage_option must be 'auto' or UniformStageOption(...), got {self.stage_option!r}"
            )

    def pipeline(self, cluster: tuple[int, int]) -> str:
        """The pass pipeline that plans this method on a hosts x devices-per-host cluster."""
        if isinstance(self.layer_option, AutoLayerOption):
            option = self.layer_option
            layers = f"autopar-cluster-layers{{num-layers={option.layer_num} eps={option.eps}}}"
        else:
            layers = "autopar-cluster-layers"
        options = [
            f"cluster={cluster[0]}x{cluster[1]}",
            f"micro-batches={self.num_micro_batches}",
            f"memory-per-device={self.memory_per_device_gib}",
        ]
        if self.submesh_shapes:
            options.append(f"submesh-shapes={','.join(self.submesh_shapes)}")
        if isinstance(self.stage_option, UniformStageOption):
            options.append(f"num-stages={self.stage_option.num_stages}")
        return f"builtin.module(autopar-inline,{layers},autopar-inter-op{{{' '.join(options)}}})"
