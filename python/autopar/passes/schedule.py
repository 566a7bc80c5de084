"""autopar-schedule: the pipeline schedule as a static program per stage mesh, written into the module."""

from __future__ import annotations

import types

from jaxlib.mlir import ir

from autopar import _core
from autopar.errors import PassError
from autopar.ir import attrs
from autopar.passes.registry import Option, register_pass

SCHEDULES = ("1f1b", "gpipe", "zb-h1", "interleaved-1f1b")
SPLIT = ("backward_input", "backward_weight")

DESCRIPTION = """
Orders the parts `autopar-inter-op` outlined (@stage_k_forward, @stage_k_backward, @stage_k_apply) over
its micro-batches as a static program per stage mesh, and writes it as `autopar.schedule` on the module:
`{name, micro_batches, programs}`, where `programs[k]` lists stage k's instructions in execution order as
"forward:<stage>:<micro-batch>", "backward:<stage>:<micro-batch>" (zb-h1: "backward_input:..." and
"backward_weight:...") and "apply:<stage>". The runtime walks
the programs and runs each instruction once its inputs exist, freeing a micro-batch's values after its
last reader and accumulating gradients as they come. `1f1b` (Alpa's default; PipeDream-Flush): stage k
runs (stages - k - 1) forwards, then one forward and one backward in turn, holding at most (stages - k)
micro-batches. `gpipe`: all forwards, then all backwards, holding all B. Both take 2 (stages + B - 1) + 1
clocks when every part takes one. `zb-h1` (Zero Bubble, ICLR'24) needs the backward of each stage outlined
as @stage_k_backward_input (the cotangents the previous stage waits for) and @stage_k_backward_weight
(the weight gradients), which autopar-inter-op{schedule=zb-h1} does: 1F1B over forwards and input halves,
with stage k's weight halves k input halves late, filling the cool-down (instructions of parts with no
ops, such as the first stage's input half, are left out); a third of 1F1B's bubble when the
three parts take equal time, and no stage holds more micro-batches than there are stages. The C++ core
is passes/schedule/. `interleaved-1f1b` (Megatron-LM) needs several stages per mesh, stage j on mesh
j mod the number of meshes, which autopar-inter-op{schedule=interleaved-1f1b num-stages=S chunks=v}
plans: each mesh runs v chunks of layers, and the bubble is 1/v of 1F1B's.

Before (after autopar-inter-op{cluster=1x2 micro-batches=2 num-stages=2}):
  module attributes {autopar.inter_op.micro_batches = 2 : i64, autopar.inter_op.plan = [...]} {...}

After (schedule=1f1b):
  module attributes {autopar.schedule = {micro_batches = 2 : i64, name = "1f1b", programs = [
      ["forward:0:0", "forward:0:1", "backward:0:0", "backward:0:1", "apply:0"],
      ["forward:1:0", "backward:1:0", "forward:1:1", "backward:1:1", "apply:1"]]}, ...} {...}
"""


@register_pass(
    argument="autopar-schedule",
    summary="Write the pipeline schedule (1F1B, GPipe, ZB-H1, interleaved 1F1B) as a program per stage mesh",
    description=DESCRIPTION,
    options=[Option("schedule", str, "1f1b", "the pipeline schedule", choices=SCHEDULES)],
)
def schedule(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
    plan = attrs.get_inter_op_plan(module_op)
    if plan is None:
        raise PassError(
            f"the module has no {attrs.INTER_OP_PLAN}: run autopar-inter-op before autopar-schedule"
        )
    outlined = {
        (attrs.get_part(op), attrs.get_stage(op))
        for op in module_op.regions[0].blocks[0].operations
        if op.operation.name == "func.func" and attrs.get_stage(op) is not None
    }
    split = any(part in SPLIT for part, _ in outlined)
    # A forward-only program (an evaluation step) has no backward to split: every schedule runs its
    # forwards, in that schedule's order.
    backward = split or any(part == "backward" for part, _ in outlined)
    if backward and split != (options.schedule == "zb-h1"):
        needs = (
            "each backward as one part" if split else "each backward split into its input and weight halves"
        )
        raise PassError(
            f"schedule={options.schedule} needs {needs}: run "
            f"autopar-inter-op{{schedule={options.schedule}}}, which outlines the stages for it"
        )
    meshes = _meshes(plan)
    chunks = len(plan.stages) // len(meshes)
    if (chunks > 1) != (options.schedule == "interleaved-1f1b"):
        layout = "one stage per mesh" if chunks > 1 else "several stages per mesh"
        raise PassError(
            f"schedule={options.schedule} needs {layout}: run "
            f"autopar-inter-op{{schedule={options.schedule}}}, which places the stages for it"
        )
    try:
        built = _core.build_schedule(options.schedule, len(meshes), plan.micro_batches, chunks)
    except ValueError as err:
        raise PassError(str(err)) from None
    # A part with no ops is not outlined (the first stage sends no cotangent back): nothing to run.
    programs = tuple(
        tuple(_text(ins) for ins in program if (ins.part, ins.stage) in outlined) for program in built.program
    )
    attrs.set_schedule(module_op, attrs.PipelineSchedule(built.name, built.micro_batches, programs))


def _meshes(plan: attrs.InterOpPlan) -> list[tuple[int, ...]]:
    """The distinct device sets of the plan's stages; stage j must run on mesh j mod (their number)."""
    meshes: list[tuple[int, ...]] = []
    for stage in plan.stages:
        if stage.mesh.device_ids not in meshes:
            meshes.append(stage.mesh.device_ids)
    for j, stage in enumerate(plan.stages):
        if stage.mesh.device_ids != meshes[j % len(meshes)]:
            raise PassError(
                f"stage {j} runs on devices {list(stage.mesh.device_ids)}, not on mesh {j % len(meshes)}'s: "
                "a schedule runs stage j on mesh j mod the number of meshes"
            )
    return meshes


def _text(ins: _core.Instruction) -> str:
    return attrs.ScheduleStep(ins.part, ins.stage, ins.micro_batch).text()
