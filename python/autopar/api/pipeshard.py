"""`PipeshardParallel` and its layer/stage options: the inter-op method of `autopar.parallelize`.

`parallelize` dispatches on the method: for a PipeshardParallel it lowers the step for ONE micro-batch
(batch arguments' dim 0 divided by B, as Alpa traces it), runs `method.pipeline(cluster)` (the named
pipeline `autopar-pipeshard`, passes/pipelines.py: layers, stages, each stage sharded on its submesh by
autopar-shard-stages) with `autopar.passes.run`, and executes the planned module with
`autopar.runtime.sequential.SequentialExecutor`, which only compiles and runs the stages (micro-batches
run in the order of the autopar-schedule program, values are combined over micro-batches and applied once).
`get_execution_plan` returns a `PipeshardExecutionPlan` read from the plan attributes.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, Literal

from jaxlib.mlir import ir

from autopar.api import pipeshard_explain, plan_diff, plan_report
from autopar.api.explanation import PlanSource
from autopar.api.methods import AutoShardingOption, checked_option, refuse_alpa_only
from autopar.api.pipeshard_options import AutoLayerOption, ManualStageOption, UniformStageOption
from autopar.api.transfers import StageTransfer, stage_transfers
from autopar.errors import AutoparError
from autopar.ir import attrs, batch_statistics, example_index, micro_batch, whole_batch
from autopar.runtime.statistics import StepInputs

PIPESHARD_PIPELINE = "autopar-pipeshard"  # passes/pipelines.py


@dataclasses.dataclass(frozen=True)
class PipeshardParallel:
    """Attributes:
    num_micro_batches: micro-batches B of the pipeline.
    layer_option: AutoLayerOption, or "manual" for boundaries placed with mark_pipeline_boundary.
    stage_option: "auto" (Alpa's stage DP), UniformStageOption or ManualStageOption.
    submesh_shapes: HxD shapes the DP may use (default: Alpa's).
    memory_per_device_gib: device memory the plan must fit.
    cluster_shape: (hosts, devices per host) of the devices given to parallelize; None = (1, all).
    auto_sharding_option: autopar-intra-op options for every stage (its mesh is the stage's logical mesh).
    stage_cost: "intra-op" (autopar.passes.intra_op.estimate per layer) or "analytic" (the fast model).
    output_combine: {output path: "mean" | "sum" | "concat" | "max" | "min" | "last"} for outputs whose
      combination over micro-batches autopar cannot infer (the path as jax.tree_util.keystr writes it,
      e.g. "[1]").
    approximate_combine: average every value whose combination is not exact (dropout's random bits, a
      batch statistic) as Alpa does, instead of refusing the step; results then differ from jax.jit.
    pipeline_schedule: "1f1b" (Alpa's default: a stage holds at most the stages after it plus one
      micro-batches), "gpipe" (all forwards, then all backwards; every stage holds all B) or "zb-h1"
      (each backward split into input and weight halves; a third of 1F1B's bubble) or "interleaved-1f1b"
      (Megatron-LM: each of the UniformStageOption's meshes runs virtual_stages_per_mesh stages; the
      bubble is 1F1B's divided by them).
    virtual_stages_per_mesh: the chunks of interleaved-1f1b.
    executor: "processes" (a worker process per stage mesh, confined to its share of the cores:
      runtime/processes.py), "in-process" (runtime/sequential.py) or "auto": processes on CPU devices
      when the plan has several meshes and this process may use several cores (one CPU process does not
      run two meshes side by side), else in-process (GPUs run side by side from one process).
    """

    num_micro_batches: int = 1
    layer_option: AutoLayerOption | Literal["manual"] = "manual"
    stage_option: UniformStageOption | Literal["auto"] = "auto"
    submesh_shapes: tuple[str, ...] = ()
    memory_per_device_gib: float = 16.0
    cluster_shape: tuple[int, int] | None = None
    auto_sharding_option: AutoShardingOption = AutoShardingOption()
    stage_cost: Literal["intra-op", "analytic"] = "intra-op"
    output_combine: Mapping[str, str] | tuple[tuple[str, str], ...] = ()
    approximate_combine: bool = False
    pipeline_schedule: Literal["1f1b", "gpipe", "zb-h1", "interleaved-1f1b"] = "1f1b"
    virtual_stages_per_mesh: int = 2
    executor: Literal["auto", "processes", "in-process"] = "auto"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        refuse_alpa_only(
            cls.__name__, kwargs, ("devices", "default_auto_sharding_option", "stage_input_shardings")
        )
        return super().__new__(cls)

    def __post_init__(self) -> None:
        object.__setattr__(self, "auto_sharding_option", checked_option(self.auto_sharding_option))
        # Hashable (methods key parallelize's caches): a mapping is kept as sorted pairs.
        pairs = (
            self.output_combine.items() if isinstance(self.output_combine, Mapping) else self.output_combine
        )
        object.__setattr__(self, "output_combine", tuple(sorted((str(k), str(v)) for k, v in pairs)))
        for path, how in self.output_combine:
            if how not in micro_batch.DECLARABLE:
                raise ValueError(
                    f"output_combine[{path!r}] must be one of {sorted(micro_batch.DECLARABLE)}, got {how!r}"
                )
        if self.num_micro_batches < 1:
            raise ValueError(f"num_micro_batches must be >= 1, got {self.num_micro_batches}")
        gib = self.memory_per_device_gib
        if isinstance(gib, bool) or not isinstance(gib, (int, float)) or not 0 < gib < math.inf:
            raise ValueError(f"memory_per_device_gib must be a positive number of GiB, got {gib!r}")
        shape = self.cluster_shape
        positive = lambda n: isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1  # noqa: E731
        if shape is not None and (len(tuple(shape)) != 2 or not all(map(positive, shape))):
            raise ValueError(f"cluster_shape must be (hosts, devices per host), positive ints; got {shape!r}")
        # Hashable like every field (methods key parallelize's caches): lists become tuples.
        if shape is not None:
            object.__setattr__(self, "cluster_shape", tuple(int(n) for n in shape))
        object.__setattr__(self, "submesh_shapes", tuple(self.submesh_shapes))
        if not positive(self.virtual_stages_per_mesh):
            got = self.virtual_stages_per_mesh
            raise ValueError(f"virtual_stages_per_mesh must be an int >= 1, got {got!r}")
        if self.layer_option != "manual" and not isinstance(self.layer_option, AutoLayerOption):
            raise ValueError(
                f"layer_option must be AutoLayerOption(...) or 'manual', got {self.layer_option!r}"
            )
        if self.stage_option != "auto" and not isinstance(
            self.stage_option, (UniformStageOption, ManualStageOption)
        ):
            raise ValueError(
                "stage_option must be 'auto', UniformStageOption(...) or ManualStageOption(...), got "
                f"{self.stage_option!r}"
            )
        if self.pipeline_schedule not in ("1f1b", "gpipe", "zb-h1", "interleaved-1f1b"):
            raise ValueError(
                "pipeline_schedule must be '1f1b', 'gpipe', 'zb-h1' or 'interleaved-1f1b', got "
                f"{self.pipeline_schedule!r}"
            )
        if self.pipeline_schedule == "interleaved-1f1b" and not isinstance(
            self.stage_option, UniformStageOption
        ):
            raise ValueError(
                "pipeline_schedule='interleaved-1f1b' runs virtual_stages_per_mesh stages on each of equal "
                "meshes: give stage_option=UniformStageOption(num_stages=...)"
            )
        if self.pipeline_schedule == "interleaved-1f1b" and isinstance(self.layer_option, AutoLayerOption):
            # Checked here in the API's words; the pass would say it later, naming its own options.
            stages, chunks = self.stage_option.num_stages, self.virtual_stages_per_mesh
            if self.layer_option.layer_num < stages * chunks:
                raise ValueError(
                    f"pipeline_schedule='interleaved-1f1b' runs virtual_stages_per_mesh={chunks} stages on "
                    f"each of num_stages={stages} meshes, so it needs AutoLayerOption(layer_num=...) >= "
                    f"{stages * chunks}, got {self.layer_option.layer_num}: raise layer_num or lower one of "
                    "them"
                )
        if self.stage_cost not in ("intra-op", "analytic"):
            raise ValueError(f"stage_cost must be 'intra-op' or 'analytic', got {self.stage_cost!r}")
        if self.executor not in ("auto", "processes", "in-process"):
            raise ValueError(f"executor must be 'auto', 'processes' or 'in-process', got {self.executor!r}")

    @property
    def name(self) -> str:
        return type(self).__name__

    def cluster_for(self, num_devices: int) -> tuple[int, int]:
        """(hosts, devices per host) over `num_devices` devices."""
        shape = self.cluster_shape if self.cluster_shape is not None else (1, num_devices)
        if len(shape) != 2 or shape[0] * shape[1] != num_devices:
            raise ValueError(
                f"cluster_shape {shape} needs {shape[0] * shape[1] if len(shape) == 2 else '?'} devices but "
                f"{num_devices} devices were given: give (hosts, devices per host) multiplying to "
                f"{num_devices}"
            )
        return int(shape[0]), int(shape[1])

    def stage_intra_op_options(self) -> list[tuple[str, str]]:
        """The autopar-intra-op options each stage is sharded with (its mesh comes from the plan)."""
        return [(k, v) for k, v in self.auto_sharding_option.pass_options((1, 1), ("x", "y")) if k != "mesh"]

    def pipeline(self, cluster: tuple[int, int]) -> str:
        """The pass pipeline that plans this method on a hosts x devices-per-host cluster: the named
        pipeline `autopar-pipeshard` (`autopar-opt` runs the same text)."""
        options = [
            f"cluster={cluster[0]}x{cluster[1]}",
            f"micro-batches={self.num_micro_batches}",
        ]
        if isinstance(self.layer_option, AutoLayerOption):
            options.append(f"layers={self.layer_option.layer_num} layer-eps={self.layer_option.eps}")
        options += [
            f"device-memory={int(self.memory_per_device_gib * 2**30)}",
            f"stage-cost={self.stage_cost}",
            f"schedule={self.pipeline_schedule}",
        ]
        if self.pipeline_schedule == "interleaved-1f1b":
            options.append(f"chunks={self.virtual_stages_per_mesh}")
        if self.submesh_shapes:
            options.append(f"submesh-shapes={','.join(self.submesh_shapes)}")
        if isinstance(self.stage_option, UniformStageOption):
            options.append(f"num-stages={self.stage_option.num_stages}")
        if isinstance(self.stage_option, ManualStageOption):
            options += self.stage_option.pipeline_options(self.auto_sharding_option)
        options += [f"{k}={v}" for k, v in self.stage_intra_op_options()]
        options += [f"{k}={v}" for k, v in self.auto_sharding_option.prepare_options()]
        return f"builtin.module({PIPESHARD_PIPELINE}{{{' '.join(options)}}})"


@dataclasses.dataclass(frozen=True)
class StagePlacement:
    """One pipeline stage of a PipeshardExecutionPlan.

    Attributes:
      index: stage number k (its functions are @stage_k_forward/_backward/_apply).
      layers: [start, end) of the layers it runs.
      submesh: physical submesh (hosts, devices per host).
      logical_mesh: (data-parallel, tensor-parallel) mesh autopar-intra-op shards it over.
      device_ids: the cluster devices it runs on (indices into parallelize's devices).
      estimated_cost: seconds per micro-batch (the planner's model).
      estimated_memory: bytes per device with its in-flight micro-batches.
      state_memory: bytes per device of the parameters and optimizer state the stage owns (the @main
        arguments its apply part updates, under the shardings it was planned with): what its devices
        hold between steps.
    """

    index: int
    layers: tuple[int, int]
    submesh: tuple[int, int]
    logical_mesh: tuple[int, int]
    device_ids: tuple[int, ...]
    estimated_cost: float
    estimated_memory: int
    state_memory: int = 0


@dataclasses.dataclass(frozen=True)
class PipeshardExecutionPlan:
    """How a PipeshardParallel function runs: its stages on submeshes and the estimated latency.

    Attributes:
      method: "PipeshardParallel".
      num_micro_batches: B.
      cluster: (hosts, devices per host).
      stages: one StagePlacement per stage, in pipeline order.
      estimated_latency: seconds per iteration, sum of stage costs + (B - 1) * slowest (the DP's objective).
      schedule: the pipeline schedule the stages run ("1f1b", "gpipe"; "" when none was written).
      estimated_bubble: the schedule's idle time over its busy time, simulated by the schedule core with
        every stage as slow as the slowest (forward a third of its cost, backward two thirds; zb-h1's
        input and weight halves a third each: api/gantt.py `durations`).
      transfers: per (source, destination) stage pair, the values crossing meshes with their bytes and
        seconds per micro-batch, planned by the cross-mesh resharding core (api/transfers.py).
      tensors: per stage, each @main argument it reads with its layout on the stage's logical mesh
        (api/plan_report.py).
      memory_budget: bytes per device the plan had to fit (the method's memory_per_device_gib).
      remarks: what the planner wants the user to know: option changes for the devices' platform, then
        each stage's intra-op remarks ("stage 0 forward: ..."; ops left replicated and why).
    """

    method: str
    num_micro_batches: int
    cluster: tuple[int, int]
    stages: tuple[StagePlacement, ...]
    estimated_latency: float
    schedule: str = ""
    estimated_bubble: float = 0.0
    transfers: tuple[StageTransfer, ...] = ()
    tensors: tuple[plan_report.StageTensor, ...] = ()

    source: PlanSource | None = dataclasses.field(default=None, compare=False, repr=False)

    def explain(self, path: str, top: int = 3) -> pipeshard_explain.StageExplanation:
        """The stages that read the argument `path` (`params['w1']`): its layout on each one's mesh, each
        stage's cost, memory and transfers, and per stage function reading it the chosen layout's cost
        split and the `top` cheapest alternatives on that stage's re-solved problem. An op's name or
        source location (`dot_general`, `model.py:12`) explains every op of a stage function it matches
        (api/pipeshard_explain.py)."""
        return pipeshard_explain.explain(self, path, top)

    def diff(self, other: PipeshardExecutionPlan) -> plan_diff.PipeshardPlanDiff:
        """What changes from this plan to `other`: stages (layers, submeshes), per-tensor layouts, latency,
        bubble and transfers."""
        return plan_diff.diff_pipeshard(self, other)

    memory_budget: int = 0
    remarks: tuple[str, ...] = ()

    def plot(self, path: Any, timeline: Any = None) -> Any:
        """Writes the cluster by stage, stage time and memory against the budget, and the schedule's
        Gantt chart (predicted; also measured, given `f.last_step_timeline()`) to `path` (.png, .svg)."""
        from autopar.api import pipeline_plots

        return pipeline_plots.plot_pipeshard_plan(self, path, timeline)

    def report(self, path: Any, timeline: Any = None) -> Any:
        """Writes one self-contained HTML file: the plan's text, pictures and tables (api/report.py)."""
        from autopar.api import report

        return report.write_report(self, path, timeline)

    def __str__(self) -> str:
        lines = [
            f"{self.method} on a {self.cluster[0]}x{self.cluster[1]} cluster, {len(self.stages)} stage(s), "
            f"{self.num_micro_batches} micro-batch(es), estimated latency {self.estimated_latency:.4g} s"
            + (
                f", {self.schedule} schedule, estimated bubble {self.estimated_bubble:.3f}"
                if self.schedule
                else ""
            )
        ]
        for s in self.stages:
            lines.append(
                f"  stage {s.index}: layers [{s.layers[0]}, {s.layers[1]}) on submesh "
                f"{s.submesh[0]}x{s.submesh[1]} devices {list(s.device_ids)}, logical mesh "
                f"{s.logical_mesh[0]}x{s.logical_mesh[1]}, {s.estimated_cost:.4g} s/micro-batch, "
                f"{s.estimated_memory / 2**30:.3g} GiB/device, state {s.state_memory / 2**20:.3g} MiB/device"
            )
            for t in (t for t in self.tensors if t.stage == s.index):
                lines.append(f"    {t.path} ({t.part}): {t.spec} on {t.mesh or 'its mesh'}")
        for t in self.transfers:
            lines.append(
                f"  transfer stage {t.src} -> {t.dst}: {t.values} value(s), {t.bytes} bytes, "
                f"{t.seconds:.3g} s per micro-batch"
            )
        lines.extend(f"  remark: {r}" for r in self.remarks)
        return "\n".join(lines)


def read_plan(
    module: ir.Module, method: PipeshardParallel, cluster: tuple[int, int]
) -> PipeshardExecutionPlan:
    """The plan autopar-inter-op wrote into `module`'s attributes."""
    plan = attrs.get_inter_op_plan(module.operation)
    if plan is None:
        raise AutoparError(f"the module has no {attrs.INTER_OP_PLAN}: run autopar-inter-op first")
    state = state_bytes(module)
    stages = tuple(
        StagePlacement(
            index=k,
            layers=s.layers,
            submesh=s.mesh.shape,
            logical_mesh=s.mesh.logical_shape,
            device_ids=s.mesh.device_ids,
            estimated_cost=s.cost,
            estimated_memory=s.memory,
            state_memory=state.get(k, 0),
        )
        for k, s in enumerate(plan.stages)
    )
    schedule = attrs.get_schedule(module.operation)
    bubble = 0.0
    if schedule is not None:
        from autopar import _core

        slowest = max(s.cost for s in plan.stages)
        meshes = len({s.mesh.device_ids for s in plan.stages})
        chunks = len(plan.stages) // meshes
        built = _core.build_schedule(schedule.name, meshes, plan.micro_batches, chunks)
        from autopar.api.gantt import durations

        simulated = _core.simulate_schedule(built, **durations(schedule.name, slowest))
        bubble = simulated.bubble_fraction
    return PipeshardExecutionPlan(
        method=method.name,
        num_micro_batches=plan.micro_batches,
        cluster=cluster,
        stages=stages,
        estimated_latency=plan.latency,
        schedule=schedule.name if schedule is not None else "",
        estimated_bubble=bubble,
        transfers=stage_transfers(module),
        tensors=plan_report.stage_tensors(module),
        source=PlanSource(module, method.pipeline(cluster)),
        memory_budget=int(method.memory_per_device_gib * 2**30),
        remarks=plan_report.stage_remarks(module),
    )


def label_micro_batches(
    module: ir.Module,
    twice: ir.Module,
    micro_batch_size: int,
    num_micro_batches: int,
    lower_whole: Callable[[], ir.Module] | None = None,
) -> StepInputs:
    """Writes how every value of the micro-batch step `module` combines into the full-batch step
    (ir/micro_batch.py), from `twice`, the same step lowered at twice the micro-batch. Both are inlined
    and their CHLO ops rewritten as StableHLO first, as the pipeline would (its autopar-inline then finds
    nothing to do): the labels sit on the ops the stages run. First, random-bit counters along the batch
    dim read each example's index in the whole batch (ir/example_index.py); values computed from the
    batch alone that do not split into micro-batches are taken from the step at the whole batch, which
    `lower_whole` lowers when there are any (ir/whole_batch.py); and statistics of the batch's inputs that
    the step feeds back (a masked mean's token count) become arguments (ir/batch_statistics.py). What
    computes those new arguments is returned."""
    from autopar import passes

    legalize = "builtin.module(autopar-inline, func.func(chlo-legalize-to-stablehlo))"
    for module_at in (module, twice):
        passes.run(module_at, legalize)
    m, B = micro_batch_size, num_micro_batches
    try:
        index = example_index.index_examples(module, twice, m)
        prepared = None
        chosen = whole_batch.candidates(module, twice, m, B) if lower_whole is not None else None
        if chosen:  # lowered a third time only for them
            whole = passes.run(lower_whole(), legalize)
            if index is None or example_index.apply(whole, index, m * B):
                prepared = whole_batch.prepare(module, twice, whole, chosen, m)
        rounds = batch_statistics.hoist(module, twice, m, B)
        micro_batch.annotate(module, twice, m, B)
    except micro_batch.MicroBatchError as err:
        raise AutoparError(
            f"PipeshardParallel cannot split the step into micro-batches: {err}; use num_micro_batches=1"
        ) from None
    return StepInputs(rounds, B, index.argument if index else None, m * B, prepared)


def state_bytes(module: ir.Module) -> dict[int, int]:
    """Per stage k: bytes per device of the @main arguments marked autopar.parameter (parameters and
    optimizer state) that @stage_k_apply reads, under that function's argument shardings."""
    import math

    from autopar.ir.stages import stage_calls
    from autopar.passes.inter_op.graph import tensor_bytes
    from autopar.runtime import shardings as sh

    meshes = sh.module_meshes(module)
    main = sh.main_func(module)
    argument_index = {a: i for i, a in enumerate(main.regions[0].blocks[0].arguments)}
    marks = attrs.get_argument_marks(main)
    total: dict[int, int] = {}
    for op, fn in stage_calls(module):
        stage, name = attrs.get_stage(fn), ir.StringAttr(fn.attributes["sym_name"]).value
        if attrs.get_part(fn) != "apply":
            continue
        arg_attrs = sh.arg_attrs(fn)
        seen = set()
        for j, operand in enumerate(op.operands):
            index = argument_index.get(operand)
            if index is None or index in seen or not marks[index].is_parameter:
                continue
            seen.add(index)
            split = 1
            if "sdy.sharding" in arg_attrs[j]:
                rank = len(ir.RankedTensorType(operand.type).shape)
                mesh_name, spec = sh.sharding_to_spec(arg_attrs[j]["sdy.sharding"], rank, f"@{name}")
                sizes = dict(zip(meshes[mesh_name].axis_names, meshes[mesh_name].shape, strict=True))
                axes = [a for entry in spec if entry for a in ((entry,) if isinstance(entry, str) else entry)]
                split = math.prod(sizes[a] for a in axes)
            total[stage] = total.get(stage, 0) + int(tensor_bytes(operand.type)) // split
    return total
