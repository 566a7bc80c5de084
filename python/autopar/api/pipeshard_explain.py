"""`PipeshardExecutionPlan.explain(path_or_op)`: the stages that read a @main argument, each stage's summary
(cost, memory, the transfers it receives and sends) and, per stage function reading it, why its layout
there is what it is, as `ExecutionPlan.explain` gives it for a mesh plan. Given an op's name or source
location (`dot_general`, `model.py:12`) instead, the same for every op of a stage function it matches.

autopar-shard-stages plans every stage function (@stage_k_forward / _backward / _apply) as a module of its
own on the stage's logical mesh. To explain one, that problem is rebuilt: the stage function is copied
into a module as @main (`ir.stages.stage_module`), its plan stripped (api/explain_problem.py), and the
strategy problem built and solved again with the options autopar-shard-stages gave that stage (its own
`stage-options` over the pipeline's). The argument's node is then explained as a mesh plan's is.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING, Any

from jaxlib.mlir import ir

from autopar.api import explain_problem as ep
from autopar.api.explanation import ExplainError, Explanation
from autopar.api.nnx_modules import variable_path
from autopar.api.plan_report import StageTensor
from autopar.api.transfers import StageTransfer

if TYPE_CHECKING:
    from autopar.api.pipeshard import PipeshardExecutionPlan, StagePlacement


@dataclasses.dataclass(frozen=True)
class StageSummary:
    """One stage at a glance: its placement, its estimated cost per micro-batch and memory, and the
    transfers it `receives` (dst is this stage) and `sends` (src is this stage), from the plan's transfers."""

    placement: StagePlacement
    receives: tuple[StageTransfer, ...]
    sends: tuple[StageTransfer, ...]

    def __str__(self) -> str:
        from autopar.api.plan import _bytes_text

        s = self.placement
        lines = [
            f"stage {s.index}: layers [{s.layers[0]}, {s.layers[1]}), devices {list(s.device_ids)}, logical "
            f"mesh {s.logical_mesh[0]}x{s.logical_mesh[1]}, {s.estimated_cost:.4g} s/micro-batch, "
            f"{_bytes_text(s.estimated_memory)}/device (state {_bytes_text(s.state_memory)})"
        ]
        for title, links, other in (("receives from", self.receives, "src"), ("sends to", self.sends, "dst")):
            for t in links:
                lines.append(
                    f"  {title} stage {getattr(t, other)}: {t.values} value(s), {_bytes_text(t.bytes)}, "
                    f"{t.seconds:.4g} s per micro-batch"
                )
        if not self.receives and not self.sends:
            lines.append("  no transfers")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class StagePartExplanation:
    """The argument in one stage function: `function` (`stage_1_forward`), its stage and part, and the
    `explanation` of its layout on that stage's logical mesh (None: a one-device stage, replicated with
    nothing to choose)."""

    stage: int
    part: str
    function: str
    explanation: Explanation | None


@dataclasses.dataclass(frozen=True)
class StageExplanation:
    """`PipeshardExecutionPlan.explain(path_or_op)`.

    Attributes:
      path: the @main argument explained (or the op name or source location given).
      reads: its layout in every stage that reads it (once per distinct layout per stage).
      stages: the StagePlacements of those stages.
      summaries: per such stage, its StageSummary (cost, memory, transfers received and sent).
      parts: per stage function reading it, the StagePartExplanation (chosen layout, cost split,
        alternatives on that stage's problem); for an op, one per op matched.
      ops: how many ops of the stage functions `path` matched (0: `path` is an argument).
      note: what was left out (more ops matched than are explained).
    """

    path: str
    reads: tuple[StageTensor, ...]
    stages: tuple[Any, ...]
    summaries: tuple[StageSummary, ...] = ()
    parts: tuple[StagePartExplanation, ...] = ()
    ops: int = 0
    note: str = ""

    def __str__(self) -> str:
        functions = len(self.parts) or len({(t.stage, t.part) for t in self.reads})
        if self.ops:
            count = len({p.function for p in self.parts})
            lines = [f"{self.path}: {self.ops} op(s) in {count} stage function(s)"]
        else:
            lines = [f"{self.path}: read by {functions} stage function(s)"]
        if self.note:
            lines.append(f"  note: {self.note}")
        placements = {s.index: s for s in self.stages}
        for t in self.reads:
            s = placements.get(t.stage)
            where = ""
            if s is not None:
                where = f" (layers [{s.layers[0]}, {s.layers[1]}), devices {list(s.device_ids)})"
            lines.append(
                f"  stage {t.stage} {t.part}: {t.dtype}[{','.join(map(str, t.shape))}] {t.spec} "
                f"on logical mesh {t.mesh}{where}"
            )
        for summary in self.summaries:
            lines.extend("  " + line for line in str(summary).splitlines())
        for p in self.parts:
            if p.explanation is None:
                lines.append(f"  @{p.function}: one device, replicated: nothing to choose")
                continue
            lines.extend("  " + line for line in str(p.explanation).splitlines())
        return "\n".join(lines)


def stage_rebuilt(source, function: str) -> ep.Rebuilt | None:
    """The re-solved problem of the stage function `function` (None: a one-device stage); cached."""
    key = ("stage", function)
    if key in source.cache:
        return source.cache[key]
    from autopar.api.explain_problem import pass_options, solve_module, strip_plan
    from autopar.ir import attrs
    from autopar.ir.stages import find_function, stage_module
    from autopar.passes.intra_op import config as config_lib
    from autopar.passes.shard_stages import stage_intra_op_options

    fn = find_function(source.module.operation, function)
    mesh = attrs.get_stage_mesh(fn) if fn is not None else None
    if mesh is None:
        raise ExplainError(f"the plan has no stage function @{function}")
    if len(mesh.device_ids) == 1:
        source.cache[key] = None
        return None
    options = pass_options(source.pipeline, "autopar-shard-stages")
    if options is None:
        raise ExplainError("the plan was not sharded by autopar-shard-stages: no stage problem to explain")
    logical = mesh.logical_shape if mesh.logical_shape is not None else (len(mesh.device_ids),)
    config = config_lib.from_options(stage_intra_op_options(options, attrs.get_stage(fn), logical))
    with source.module.context:
        rebuilt = solve_module(strip_plan(stage_module(fn)), config)
    source.cache[key] = rebuilt
    return rebuilt


def _explain_argument(source, function: str, j: int, path: str, planned: str, top: int) -> Explanation | None:
    rebuilt = stage_rebuilt(source, function)
    if rebuilt is None:
        return None
    chosen = rebuilt.chosen[j]
    strategy = ep.describe(rebuilt, j, chosen)
    note = ""
    if strategy != planned:
        note = (
            f"the re-solved plan reads it as {strategy}, the module as {planned}: the explanation is of "
            "the re-solved one"
        )
    axes = zip(rebuilt.config.mesh.axis_names, rebuilt.config.mesh.shape, strict=True)
    mesh = ", ".join(f"{n}={s}" for n, s in axes)
    return Explanation(
        target=f"{path} in @{function}",
        node=f"argument %arg{j} of @{function} on [{mesh}]",
        strategy=strategy,
        cost=ep.cost_split(rebuilt, j, chosen),
        objective=rebuilt.objective,
        alternatives=ep.alternatives(rebuilt, j, top),
        note=note,
        scope=f"@{function}'s",
    )


def _argument_reads(module: ir.Module, path: str) -> list[tuple[int, str, str, int, str]]:
    """(stage, part, function, argument index in it, planned spec) for every stage call reading `path`."""
    from autopar.api.plan_report import _spec_text, argument_names
    from autopar.ir import attrs
    from autopar.ir.stages import stage_calls
    from autopar.runtime import shardings as sh

    main = sh.main_func(module)
    names = argument_names(main)
    index = {a: i for i, a in enumerate(main.regions[0].blocks[0].arguments)}
    out = []
    for op, fn in stage_calls(module):
        function = ir.StringAttr(fn.attributes["sym_name"]).value
        arg_attrs = sh.arg_attrs(fn)
        for j, operand in enumerate(op.operands):
            i = index.get(operand)
            if i is None or names[i] != path:
                continue
            spec = "replicated"
            if "sdy.sharding" in arg_attrs[j]:
                rank = len(ir.RankedTensorType(operand.type).shape)
                spec = _spec_text(sh.sharding_to_spec(arg_attrs[j]["sdy.sharding"], rank, f"@{function}")[1])
            out.append((attrs.get_stage(fn), attrs.get_part(fn) or "", function, j, spec))
            break
    return out


# At most this many ops are explained for one op name or source location (each re-solves alternatives).
MAX_OPS = 8


def explain(plan: PipeshardExecutionPlan, path: str, top: int = 3) -> StageExplanation:
    ep.check_query(path, top, (str,))
    path = variable_path(path, {t.path for t in plan.tensors})
    reads = tuple(t for t in plan.tensors if t.path == path)
    if not reads:
        return explain_ops(plan, path, top)
    indices = {t.stage for t in reads}
    stages = tuple(s for s in plan.stages if s.index in indices)
    parts: tuple[StagePartExplanation, ...] = ()
    source = plan.source
    if source is not None:
        with source.module.context:
            found = _argument_reads(source.module, path)
        parts = tuple(
            StagePartExplanation(stage, part, fn, _explain_argument(source, fn, j, path, spec, top))
            for stage, part, fn, j, spec in found
        )
    return StageExplanation(path, reads, stages, _summaries(plan, stages), parts)


def explain_ops(plan: PipeshardExecutionPlan, text: str, top: int = 3) -> StageExplanation:
    """Every op of a stage function named `text` or at a source location containing it, explained on its
    stage's re-solved problem (one-device stages: nothing to choose)."""
    source = plan.source
    if source is None:
        raise ExplainError("this plan keeps no planned module to explain (build it with get_execution_plan)")
    found: list[tuple[int, str, str, int | None]] = []
    with source.module.context:
        for stage, part, function, fn in _stage_functions(source.module):
            rebuilt = stage_rebuilt(source, function)
            if rebuilt is None:
                found += [(stage, part, function, None)] if _matches_in(fn, text) else []
            else:
                found += [(stage, part, function, v) for v in ep.ops_matching(rebuilt.graph, text)]
        if not found:
            known = ", ".join(dict.fromkeys(t.path for t in plan.tensors)) or "none"
            raise ExplainError(
                f"'{text}' is no argument any stage reads (arguments: {known}), nor an op name or source "
                "location in a stage function"
            )
        # Each function's first match first, then each one's second...: a cut keeps every function.
        seen: collections.Counter = collections.Counter()
        ranked = []  # (rank within its function, position, match)
        for i, match in enumerate(found):
            ranked.append((seen[match[2]], i, match))
            seen[match[2]] += 1
        chosen = sorted(sorted(ranked)[:MAX_OPS], key=lambda r: r[1])
        parts = tuple(
            StagePartExplanation(stage, part, function, _explain_op(source, function, v, text, top))
            for _, _, (stage, part, function, v) in chosen
        )
    note = ""
    if len(found) > MAX_OPS:
        note = (
            f"{len(found)} ops match: {MAX_OPS} are explained, the first of each stage function first "
            "(a source line narrows it)"
        )
    stages = tuple(s for s in plan.stages if s.index in {p.stage for p in parts})
    return StageExplanation(text, (), stages, _summaries(plan, stages), parts, len(found), note)


def _summaries(plan: PipeshardExecutionPlan, stages) -> tuple[StageSummary, ...]:
    return tuple(
        StageSummary(
            s,
            tuple(t for t in plan.transfers if t.dst == s.index),
            tuple(t for t in plan.transfers if t.src == s.index),
        )
        for s in stages
    )


def _stage_functions(module: ir.Module) -> list[tuple[int, str, str, ir.OpView]]:
    """(stage, part, name, function) of every stage function, in module order."""
    from autopar.ir import attrs

    out = []
    for op in module.body.operations:
        if op.operation.name == "func.func" and attrs.get_stage_mesh(op) is not None:
            name = ir.StringAttr(op.attributes["sym_name"]).value
            out.append((attrs.get_stage(op), attrs.get_part(op) or "", name, op))
    return out


def _matches_in(fn: ir.OpView, text: str) -> bool:
    """Whether an op of `fn` matches `text` as `ExecutionPlan.explain` matches ops (a one-device stage,
    which has no problem to search)."""
    ops = fn.regions[0].blocks[0].operations
    return any(ep.op_matches(op.operation.name, op.location, text) for op in ops)


def _explain_op(source, function: str, v: int | None, text: str, top: int) -> Explanation | None:
    if v is None:
        return None
    rebuilt = stage_rebuilt(source, function)
    axes = zip(rebuilt.config.mesh.axis_names, rebuilt.config.mesh.shape, strict=True)
    mesh = ", ".join(f"{n}={s}" for n, s in axes)
    chosen = rebuilt.chosen[v]
    return Explanation(
        target=f"{text} in @{function}",
        node=f"{ep.node_name(rebuilt.graph, v)} of @{function} on [{mesh}]",
        strategy=ep.describe(rebuilt, v, chosen),
        cost=ep.cost_split(rebuilt, v, chosen),
        objective=rebuilt.objective,
        alternatives=ep.alternatives(rebuilt, v, top),
        scope=f"@{function}'s",
    )
