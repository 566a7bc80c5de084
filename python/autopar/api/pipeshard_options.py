"""The options of PipeshardParallel that say how the step is cut (Alpa's names): `AutoLayerOption` (into
layers), `UniformStageOption` and `ManualStageOption` (the layers onto stages and submeshes). Each checks
its fields when it is made, in the API's words: the passes would name their own options.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autopar.api.methods import AutoShardingOption


@dataclasses.dataclass(frozen=True)
class AutoLayerOption:
    """Attributes:
    layer_num: number of layers autopar-cluster-layers cuts the forward pass into.
    eps: a layer may have up to (1 + eps) times the mean layer FLOPs.
    """

    layer_num: int
    eps: float = 0.6

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_num", _positive_int("AutoLayerOption", "layer_num", self.layer_num))
        eps = self.eps
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 <= eps < math.inf:
            raise ValueError(f"AutoLayerOption: eps must be a number >= 0, got {eps!r}")


@dataclasses.dataclass(frozen=True)
class UniformStageOption:
    """Attributes:
    num_stages: equal submeshes the cluster is cut into (each gets cluster devices / num_stages).
    """

    num_stages: int

    def __post_init__(self) -> None:
        n = _positive_int("UniformStageOption", "num_stages", self.num_stages)
        object.__setattr__(self, "num_stages", n)


def _positive_int(owner: str, name: str, value: Any) -> int:
    """`value` as an int >= 1, or an error in the API's words (the pass would name its own option)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, got {value}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class ManualStageOption:
    """Stages placed by hand (Alpa's ManualStageOption) instead of the stage DP.

    Attributes:
      forward_stage_layer_ids: per stage, its layer ids, consecutive and together every layer in order
        ([[0, 1], [2, 3]]).
      submesh_physical_shapes: per stage, its (hosts, devices per host) submesh.
      submesh_logical_shapes: per stage, the (data-parallel, tensor-parallel) logical mesh it is sharded on.
      submesh_autosharding_option_dicts: per stage, AutoShardingOption fields that differ for that stage
        ({"force_data_parallel": True}); empty dicts keep the method's auto_sharding_option.
    """

    forward_stage_layer_ids: Sequence[Sequence[int]]
    submesh_physical_shapes: Sequence[tuple[int, int]]
    submesh_logical_shapes: Sequence[tuple[int, int]]
    submesh_autosharding_option_dicts: Sequence[Mapping[str, Any]] = ()

    def __post_init__(self) -> None:
        freeze = lambda xs: tuple(tuple(int(v) for v in x) for x in xs)  # noqa: E731
        object.__setattr__(self, "forward_stage_layer_ids", freeze(self.forward_stage_layer_ids))
        object.__setattr__(self, "submesh_physical_shapes", freeze(self.submesh_physical_shapes))
        object.__setattr__(self, "submesh_logical_shapes", freeze(self.submesh_logical_shapes))
        dicts = tuple(tuple(sorted(d.items())) for d in self.submesh_autosharding_option_dicts) or (
            (),
        ) * len(self.forward_stage_layer_ids)
        object.__setattr__(self, "submesh_autosharding_option_dicts", dicts)
        n = len(self.forward_stage_layer_ids)
        lengths = {
            "submesh_physical_shapes": len(self.submesh_physical_shapes),
            "submesh_logical_shapes": len(self.submesh_logical_shapes),
            "submesh_autosharding_option_dicts": len(dicts),
        }
        for name, count in lengths.items():
            if count != n:
                raise ValueError(
                    f"ManualStageOption: {name} has {count} entries for {n} stages; give one per stage"
                )
        for k, ids in enumerate(self.forward_stage_layer_ids):
            if not ids or list(ids) != list(range(ids[0], ids[0] + len(ids))):
                raise ValueError(
                    f"ManualStageOption: stage {k}'s layer ids {list(ids)} are not consecutive; a stage runs "
                    "a range of layers"
                )
            start = self.forward_stage_layer_ids[k - 1][-1] + 1 if k else 0
            if ids[0] != start:
                raise ValueError(
                    f"ManualStageOption: stage {k}'s layer ids start at {ids[0]}, not {start}: the stages "
                    "run every layer from 0, in order"
                )
        for k, (physical, logical) in enumerate(
            zip(self.submesh_physical_shapes, self.submesh_logical_shapes, strict=True)
        ):
            if len(physical) != 2 or len(logical) != 2 or min(*physical, *logical) < 1:
                raise ValueError(
                    f"ManualStageOption: stage {k}'s shapes {physical} and {logical} must be two positive "
                    "ints each: (hosts, devices per host) and (data, model)"
                )
            if physical[0] * physical[1] != logical[0] * logical[1]:
                raise ValueError(
                    f"ManualStageOption: stage {k}'s logical mesh {logical} has {logical[0] * logical[1]} "
                    f"devices, its submesh {physical} {physical[0] * physical[1]}: give a logical shape of "
                    "the submesh's devices"
                )

    def pipeline_options(self, base: AutoShardingOption) -> list[str]:
        """`manual-stages=...` for autopar-inter-op and, when a stage has its own options,
        `stage-options=...` for autopar-shard-stages."""
        stages = [
            f"{ids[0]}-{ids[-1] + 1}:{h}x{d}:{p}x{q}"
            for ids, (h, d), (p, q) in zip(
                self.forward_stage_layer_ids,
                self.submesh_physical_shapes,
                self.submesh_logical_shapes,
                strict=True,
            )
        ]
        options = [f"manual-stages={','.join(stages)}"]
        common = dict(base.pass_options((1, 1), ("x", "y")))
        overrides = []
        for k, items in enumerate(self.submesh_autosharding_option_dicts):
            if items:
                own = dict(dataclasses.replace(base, **dict(items)).pass_options((1, 1), ("x", "y")))
                changed = " ".join(f"{n}={v}" for n, v in own.items() if n != "mesh" and common.get(n) != v)
                if changed:
                    overrides.append(f"{k}:{changed}")
        if overrides:
            options.append(f"stage-options='{';'.join(overrides)}'")
        return options
