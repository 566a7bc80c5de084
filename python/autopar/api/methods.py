"""Parallelisation methods: how `parallelize` plans a function (Alpa's `alpa.parallel_method`).

`ShardParallel` runs the `autopar-shard` pipeline (autopar-inline, autopar-fold-transposes, then the
intra-op pass `autopar-intra-op` over one device mesh; passes/pipelines.py); `DataParallel`,
`Zero2Parallel` and `Zero3Parallel` are ShardParallel with the option presets Alpa gives them.
`ManualShardingOption` skips the solver: the user gives every argument's PartitionSpec.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from autopar.runtime.mesh import default_axis_names, format_shape

# The intra-op pass's solvers (passes/intra_op/config.py SOLVERS; kept here so that making an option does not
# import the passes).
SOLVERS = ("auto", "ilp", "heuristic")

INTRA_OP_PASS = "autopar-intra-op"
SHARD_PIPELINE = "autopar-shard"  # passes/pipelines.py: autopar-inline, then autopar-intra-op


@dataclasses.dataclass(frozen=True)
class AutoShardingOption:
    """Options of the intra-op solver; each maps onto the `autopar-intra-op` option of the same name.

    Attributes:
      force_data_parallel: shard every batch argument along dim 0 over all devices, replicate parameters.
      force_batch_dim_to_mesh_dim: mesh axis index the batch dim must be split over; None leaves it free.
      allow_all_gather: let the solver use all-gather to change layouts.
      allow_all_to_all: let the solver use all-to-all to change layouts.
      prefer_reduce_scatter: reduce gradients with reduce-scatter (+ all-gather) rather than all-reduce;
        off on CPU devices, where XLA runs a reduce-scatter as an all-reduce and a slice (as_compiled_for).
      zero_stage: 0, 2 or 3 as in ZeRO (2: shard optimizer state and gradients, 3: also parameters).
      widen_collectives: price collectives of bf16 as f32 and of 8- and 4-bit floats as f16, as XLA's CPU
        compiler runs them; set on CPU devices (as_compiled_for).
      allow_replicated_parameters: let the solver keep parameters replicated.
      allow_recompute_heavy_op: let dots and convolutions run replicated over a mesh axis that could split
        them (Alpa's option of the same name, off by default: every model gets a parallel plan).
      memory_budget: bytes per device the plan may use; None = the pass's default (unlimited).
      solver: the pass's solver choice; None = the pass's default.
      planning_budget: counted planning work in seconds of a 2-core machine (the plan depends only on it);
        None = the pass's default (8).
      time_limit: wall-clock safety cap on planning in seconds; None = the pass's default (60).
      mesh_alpha, mesh_beta: per-mesh-axis latency (s) and inverse bandwidth (s/byte); None = defaults.
      device_flops, device_memory_bandwidth: one device's FLOP/s and memory bytes/s; None = defaults.
      cluster_profile: a JSON file overriding device and mesh costs; None = none.
      max_unrolled_ops, max_branch_ops: how many ops autopar-unroll-loops may add writing out a loop (a
        loop left whole runs replicated) and how many a conditional's branches may hold to be flattened;
        None = the passes' defaults (20,000 and their own).
    """

    force_data_parallel: bool = False
    force_batch_dim_to_mesh_dim: int | None = None
    allow_all_gather: bool = True
    allow_all_to_all: bool = True
    prefer_reduce_scatter: bool = False
    zero_stage: int = 0
    widen_collectives: bool = False
    allow_replicated_parameters: bool = True
    allow_recompute_heavy_op: bool = False
    memory_budget: int | None = None
    solver: str | None = None
    planning_budget: float | None = None
    time_limit: float | None = None
    mesh_alpha: tuple[float, ...] | None = None
    mesh_beta: tuple[float, ...] | None = None
    device_flops: float | None = None
    device_memory_bandwidth: float | None = None
    cluster_profile: str | None = None
    max_unrolled_ops: int | None = None
    max_branch_ops: int | None = None

    def __post_init__(self) -> None:
        if self.zero_stage not in (0, 2, 3):
            raise ValueError(f"zero_stage={self.zero_stage!r}: use 0 (off), 2 or 3")
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise ValueError(
                f"memory_budget={self.memory_budget!r}: give a positive number of bytes per device"
            )
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"time_limit={self.time_limit!r}: give a positive number of seconds")
        if self.planning_budget is not None and self.planning_budget <= 0:
            raise ValueError(f"planning_budget={self.planning_budget!r}: give a positive number of seconds")
        if self.solver is not None and self.solver not in SOLVERS:
            raise ValueError(
                f"solver={self.solver!r}: use one of {', '.join(map(repr, SOLVERS))} (None: 'auto')"
            )
        for name in ("device_flops", "device_memory_bandwidth"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise ValueError(f"{name}={value!r}: give a positive number (FLOP/s, bytes/s)")

    def pass_options(self, mesh_shape: tuple[int, ...], axis_names: tuple[str, ...]) -> list[tuple[str, str]]:
        """The `autopar-intra-op{...}` options, in a fixed order (same plan -> same pipeline text)."""
        for name, values in (("mesh_alpha", self.mesh_alpha), ("mesh_beta", self.mesh_beta)):
            if values is not None and len(values) != len(mesh_shape):
                raise ValueError(
                    f"{name} has {len(values)} values for the {len(mesh_shape)}-axis mesh "
                    f"{format_shape(mesh_shape)}: give one per mesh axis"
                )
        if self.force_batch_dim_to_mesh_dim is not None and not 0 <= self.force_batch_dim_to_mesh_dim < len(
            mesh_shape
        ):
            raise ValueError(
                f"force_batch_dim_to_mesh_dim={self.force_batch_dim_to_mesh_dim} is not an axis of the "
                f"{len(mesh_shape)}-axis mesh {format_shape(mesh_shape)}"
            )
        options = [
            ("mesh", format_shape(mesh_shape)),
            ("axis-names", ",".join(axis_names)),
            ("force-data-parallel", _bool(self.force_data_parallel)),
            (
                "force-batch-dim-to-mesh-dim",
                str(-1 if self.force_batch_dim_to_mesh_dim is None else self.force_batch_dim_to_mesh_dim),
            ),
            ("allow-all-gather", _bool(self.allow_all_gather)),
            ("allow-all-to-all", _bool(self.allow_all_to_all)),
            ("prefer-reduce-scatter", _bool(self.prefer_reduce_scatter)),
            ("zero-stage", str(self.zero_stage)),
            ("widen-collectives", _bool(self.widen_collectives)),
            ("allow-replicated-parameters", _bool(self.allow_replicated_parameters)),
            ("allow-recompute-heavy-op", _bool(self.allow_recompute_heavy_op)),
        ]
        if self.memory_budget is not None:
            options.append(("memory-budget", str(int(self.memory_budget))))
        if self.solver is not None:
            options.append(("solver", self.solver))
        if self.planning_budget is not None:
            options.append(("planning-budget", repr(float(self.planning_budget))))
        if self.time_limit is not None:
            options.append(("time-limit", repr(float(self.time_limit))))
        if self.mesh_alpha is not None:
            options.append(("mesh-alpha", ",".join(repr(float(a)) for a in self.mesh_alpha)))
        if self.mesh_beta is not None:
            options.append(("mesh-beta", ",".join(repr(float(b)) for b in self.mesh_beta)))
        if self.device_flops is not None:
            options.append(("device-flops", repr(float(self.device_flops))))
        if self.device_memory_bandwidth is not None:
            options.append(("device-memory-bandwidth", repr(float(self.device_memory_bandwidth))))
        if self.cluster_profile is not None:
            options.append(("cluster-profile", self.cluster_profile))
        return options

    def prepare_options(self) -> list[tuple[str, str]]:
        """The named pipelines' options for their first steps (autopar-unroll-loops and
        autopar-flatten-conditionals), where given."""
        given = (("max-unrolled-ops", self.max_unrolled_ops), ("max-branch-ops", self.max_branch_ops))
        return [(name, str(int(value))) for name, value in given if value is not None]


def _bool(value: bool) -> str:
    return "true" if value else "false"


@dataclasses.dataclass(frozen=True)
class ManualShardingOption:
    """A fully user-given layout: no solver runs (Alpa's ManualShardingOption, without the auto part).

    Attributes:
      mesh_axis_names: the names PartitionSpecs use, one per mesh axis.
      in_axis_resources: a PartitionSpec (or None = replicated) per dynamic positional argument, each a
        pytree prefix of that argument, as `jax.jit(in_shardings=...)` takes them.
      out_axis_resources: the same for the outputs; None = every output replicated.
    """

    mesh_axis_names: tuple[str, ...]
    in_axis_resources: Any
    out_axis_resources: Any = None


@dataclasses.dataclass(frozen=True)
class ShardParallel:
    """Intra-op parallelism on one mesh: the solver chooses how every tensor is sharded.

    Attributes:
      mesh_shape: the logical mesh, e.g. (2, 4); None = one axis over all devices.
      axis_names: one name per mesh axis; None = x, y, z.
      auto_sharding_option: the solver's options.
      manual_sharding_option: when given, the user's layout is used and no solver runs.
    """

    mesh_shape: tuple[int, ...] | int | None = None
    axis_names: tuple[str, ...] | None = None
    auto_sharding_option: AutoShardingOption = AutoShardingOption()
    manual_sharding_option: ManualShardingOption | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        refuse_alpa_only(cls.__name__, kwargs, ("devices", "num_micro_batches"))
        return super().__new__(cls)

    def __post_init__(self) -> None:
        _normalize_mesh_shape(self)
        object.__setattr__(self, "auto_sharding_option", checked_option(self.auto_sharding_option))

    def mesh_for(self, num_devices: int) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """(shape, axis names) of the mesh over `num_devices` devices."""
        shape = tuple(self.mesh_shape) if self.mesh_shape is not None else (num_devices,)
        if self.axis_names is not None:
            names = tuple(self.axis_names)
        elif self.manual_sharding_option is not None:
            names = tuple(self.manual_sharding_option.mesh_axis_names)
        else:
            names = default_axis_names(len(shape))
        return shape, names

    def pipeline(self, mesh_shape: tuple[int, ...], axis_names: tuple[str, ...]) -> str:
        """The pass pipeline that plans a lowered function for this method: the named pipeline
        `autopar-shard` with the intra-op options (`autopar-opt` runs the same text)."""
        option = self.auto_sharding_option
        given = option.pass_options(mesh_shape, axis_names) + option.prepare_options()
        options = " ".join(f"{k}={v}" for k, v in given)
        return f"builtin.module({SHARD_PIPELINE}{{{options}}})"

    @property
    def name(self) -> str:
        return type(self).__name__


# Alpa's constructor arguments that autopar takes elsewhere or not at all, with the way forward: an Alpa user
# otherwise meets "__init__() got an unexpected keyword argument".
ALPA_ONLY = {
    "devices": (
        "the devices go to autopar.parallelize(fn, devices=...); a method takes only shapes (mesh_shape, "
        "cluster_shape)"
    ),
    "num_micro_batches": (
        "micro-batches (gradient accumulation) run under PipeshardParallel: PipeshardParallel("
        "num_micro_batches=N, layer_option=AutoLayerOption(layer_num=1), stage_option=UniformStageOption("
        "num_stages=1), auto_sharding_option=...) accumulates over one stage of all devices"
    ),
    "default_auto_sharding_option": "it is auto_sharding_option here",
    "stage_input_shardings": "not supported: the stages' input layouts are planned",
}


def refuse_alpa_only(owner: str, kwargs: dict[str, Any], names: tuple[str, ...]) -> None:
    """A TypeError with the way forward when `kwargs` holds one of Alpa's `names` (ALPA_ONLY)."""
    for name in names:
        if name in kwargs:
            raise TypeError(f"{owner}({name}=...): {ALPA_ONLY[name]}")


def checked_option(option: AutoShardingOption | None) -> AutoShardingOption:
    """The method's AutoShardingOption; None (Alpa's default argument) is the default one."""
    if option is None:
        return AutoShardingOption()
    if not isinstance(option, AutoShardingOption):
        raise TypeError(
            f"auto_sharding_option must be an autopar.AutoShardingOption, got {type(option).__name__}"
        )
    return option


def _normalize_mesh_shape(method: ShardParallel) -> None:
    """`mesh_shape=8` means the one-axis mesh (8,); anything but positive ints is refused here, by name."""
    shape = method.mesh_shape
    if shape is None:
        return
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"mesh_shape must be an int or a tuple of ints like (2, 4), got {shape!r}") from None
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"mesh_shape must be positive ints like 8 or (2, 4), got {method.mesh_shape!r}")
    object.__setattr__(method, "mesh_shape", shape)


# XLA's CPU compiler lowers the partial sums a plan would reduce-scatter as an all-reduce and a slice
# (docs/platform.md, "Reduce-scatters on CPU"): a plan priced with reduce-scatters there expects
# collectives XLA never compiles, and prices them at about half of what it runs.
REDUCE_SCATTER_ON_CPU = (
    "prefer_reduce_scatter: XLA on CPU runs a reduce-scatter as an all-reduce and a slice, so this plan "
    "reduces gradients with the all-reduce XLA compiles and prices it"
)


def as_compiled_for(method: Any, platform: str) -> tuple[Any, tuple[str, ...]]:
    """(`method` with the options XLA on `platform` carries out, remarks on what changed): on CPU,
    `widen_collectives` on (XLA runs bf16 collectives in f32) and `prefer_reduce_scatter` off
    (REDUCE_SCATTER_ON_CPU), in the method's auto_sharding_option and in a ManualStageOption's per-stage
    dicts. The method's presets are kept as they are: the copy is not re-initialised."""
    if platform != "cpu":
        return method, ()
    option = method.auto_sharding_option
    stage_option = getattr(method, "stage_option", None)
    stage_dicts = [dict(items) for items in getattr(stage_option, "submesh_autosharding_option_dicts", ())]
    in_stages = any(d.get("prefer_reduce_scatter") for d in stage_dicts)
    out = copy.copy(method)
    wide = dataclasses.replace(option, widen_collectives=True, prefer_reduce_scatter=False)
    object.__setattr__(out, "auto_sharding_option", wide)
    if not option.prefer_reduce_scatter and not in_stages:
        return out, ()
    if in_stages:
        off = [
            {**d, "prefer_reduce_scatter": False} if "prefer_reduce_scatter" in d else d for d in stage_dicts
        ]
        stages = dataclasses.replace(stage_option, submesh_autosharding_option_dicts=off)
        object.__setattr__(out, "stage_option", stages)
    return out, (REDUCE_SCATTER_ON_CPU,)


def _with_preset(method: ShardParallel, **preset: Any) -> None:
    object.__setattr__(
        method, "auto_sharding_option", dataclasses.replace(method.auto_sharding_option, **preset)
    )


@dataclasses.dataclass(frozen=True)
class DataParallel(ShardParallel):
    """Data parallelism: batch split over all devices, parameters replicated, one gradient all-reduce."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _with_preset(self, force_data_parallel=True)


@dataclasses.dataclass(frozen=True)
class Zero2Parallel(ShardParallel):
    """ZeRO-2: data parallel with gradients reduce-scattered and optimizer state sharded."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _with_preset(self, force_data_parallel=True, prefer_reduce_scatter=True, zero_stage=2)


@dataclasses.dataclass(frozen=True)
class Zero3Parallel(ShardParallel):
    """ZeRO-3: ZeRO-2 with the parameters sharded too (gathered where used)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _with_preset(self, force_data_parallel=True, prefer_reduce_scatter=True, zero_stage=3)
