"""The order the executor runs a pipelined step's parts in, and how it gathers values over micro-batches.

`autopar-schedule` writes one program per stage mesh (`autopar.schedule`). The executor merges them into
one dispatch order: round by round, every mesh takes its next instruction once the parts that produce
its inputs have run for the same micro-batch (read from @main's data flow), so meshes interleave as the
schedule's clocks say and each mesh keeps its program order. Without a schedule (or when the caller runs
another number of micro-batches than the schedule's), micro-batches run one after the other in @main's
call order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from autopar.errors import AutoparError
from autopar.ir import attrs

Instruction = attrs.ScheduleStep  # (part, stage, micro-batch), as autopar-schedule writes it


def _parse(text: str) -> Instruction:
    try:
        return Instruction.parse(text)
    except ValueError as err:
        raise AutoparError(str(err)) from None


def dispatch_order(
    schedule: attrs.PipelineSchedule | None,
    parts: Sequence[tuple[str, int]],
    micro_batches: int,
    needs: Mapping[tuple[str, int], set[tuple[str, int]]],
) -> list[Instruction]:
    """The forward and backward instructions in the order to run them. `parts` are the (part, stage) of
    @main's calls in call order (a stage whose backward has no ops has no backward part); `needs[part]`
    the parts whose results it reads for the same micro-batch."""
    present = set(parts)
    if schedule is None or schedule.micro_batches != micro_batches:  # none, or for another B
        return [Instruction(p, k, m) for m in range(micro_batches) for p, k in parts if p != "apply"]
    programs = [
        [ins for ins in map(_parse, program) if ins.part != "apply" and (ins.part, ins.stage) in present]
        for program in schedule.programs
    ]
    done: set[tuple[str, int, int]] = set()

    def ready(ins: Instruction) -> bool:
        return all((p, k, ins.micro_batch) in done for p, k in needs.get((ins.part, ins.stage), ()))

    order: list[Instruction] = []
    cursor = [0] * len(programs)
    total = sum(len(p) for p in programs)
    while len(order) < total:
        progressed = False
        for mesh, program in enumerate(programs):
            # One instruction per mesh per round: the meshes advance together, clock by clock.
            if cursor[mesh] < len(program) and ready(program[cursor[mesh]]):
                ins = program[cursor[mesh]]
                order.append(ins)
                done.add((ins.part, ins.stage, ins.micro_batch))
                cursor[mesh] += 1
                progressed = True
        if not progressed:
            raise AutoparError(f"the module's {attrs.SCHEDULE} ({schedule.name}) deadlocks")
    expected = {(p, k, m) for p, k in parts if p != "apply" for m in range(micro_batches)}
    if done != expected:
        missing = sorted(expected - done)[:3]
        raise AutoparError(f"the module's {attrs.SCHEDULE} ({schedule.name}) never runs {missing}")
    return order


class Gathered:
    """One value's micro-batch results combined as its label says, as they arrive: sums, means, maxima and
    minima keep a running total on the value's devices (gradient accumulation); concatenations keep every
    piece."""

    def __init__(self, label: str, micro_batches: int):
        self.label, self.micro_batches = label, micro_batches
        self.total: Any = None
        self.pieces: dict[int, Any] = {}

    def add(self, micro_batch: int, value: Any) -> None:
        if self.label.startswith("concat:"):
            self.pieces[micro_batch] = value
        elif self.label == "same" or self.total is None:
            self.total = value
        elif self.label == "max":  # `jnp.any` over the batch is a max of booleans
            self.total = jnp.maximum(self.total, value)
        elif self.label == "min":
            self.total = jnp.minimum(self.total, value)
        else:  # sums, means, "sum:<p>"
            self.total = self.total + value

    def result(self) -> Any:
        B = self.micro_batches
        if self.label.startswith("concat:"):
            axis = int(self.label.split(":")[1])
            return jnp.concatenate([self.pieces[m] for m in range(B)], axis=axis)
        if self.label in ("same", "sum", "max", "min"):
            return self.total
        if self.label == "mean":
            total = self.total
            return total / B if jnp.issubdtype(total.dtype, jnp.inexact) else total // B
        power = int(self.label.split(":")[1])  # "sum:<p>": B**p times the sum
        return self.total * (float(B) ** power)
