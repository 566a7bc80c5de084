"""Computing what a pipelined step reads beyond its arguments, before its micro-batches run: the batch
statistics of ir/batch_statistics.py and the example indices of ir/example_index.py.

Each round's module runs on every micro-batch's slice of the batch arguments, on one device, and its
results are combined over the micro-batches as their labels say (runtime/program.py `Gathered`, the same
combination the stages' values get): the whole batch's count, mean, maximum... They are appended to the
step's arguments, where the planned @main expects them, and a later round may read an earlier one's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jaxlib.mlir import ir

from autopar.ir.batch_statistics import StatisticsRound
from autopar.ir.whole_batch import PreparedInputs
from autopar.runtime import executable as rt_exe
from autopar.runtime import shardings as sh
from autopar.runtime.program import Gathered


class StepInputs:
    """`StepInputs(rounds, B)(args)`: `args` with what the planned step reads beyond them appended:
    first, when `example_index` gives its position, each example's index in the whole batch of
    `examples` (ir/example_index.py, a batch argument: the runtime cuts it into micro-batches); then the
    `prepared` inputs, computed once from the whole batch (ir/whole_batch.py); then the statistics of
    every round."""

    def __init__(
        self,
        rounds: Sequence[StatisticsRound],
        num_micro_batches: int,
        example_index: int | None = None,
        examples: int = 0,
        prepared: PreparedInputs | None = None,
        device: Any = None,
    ):
        self.rounds = tuple(rounds)
        self.num_micro_batches = num_micro_batches
        self.example_index, self.examples = example_index, examples
        self.prepared = prepared
        self._device = device
        self._compiled: list[rt_exe.ShardedExecutable] = []
        self._prepare: rt_exe.ShardedExecutable | None = None

    def __bool__(self) -> bool:
        return bool(self.rounds) or self.example_index is not None or self.prepared is not None

    def __call__(self, args: Sequence[Any]) -> list[Any]:
        values = list(args)
        if self.example_index is not None:
            _check_position("the example index", self.example_index, values)
            values.append(np.arange(self.examples, dtype=np.uint32))
        if self.prepared is not None:  # once, over the whole batch (ir/whole_batch.py)
            _check_position("the inputs prepared over the whole batch", self.prepared.first, values)
            if self._prepare is None:
                self._prepare = self._compile(self.prepared.module)
            values += self._prepare([values[i] for i in self.prepared.sources])
        if not self.rounds:
            return values
        if not self._compiled:
            self._compiled = [self._compile(r.module) for r in self.rounds]
        B = self.num_micro_batches
        for r, exe in zip(self.rounds, self._compiled, strict=True):
            _check_position("the step's statistics", r.first, values)
            gathered = [Gathered(label, B) for label in r.labels]
            for k in range(B):
                operands = [
                    _slice(values[i], k, aval.shape[0]) if i in r.batch_sources else values[i]
                    for i, aval in zip(r.sources, exe.in_avals, strict=True)
                ]
                for g, out in zip(gathered, exe(operands), strict=True):
                    g.add(k, out)
            values += [g.result() for g in gathered]
        return values

    def _compile(self, module: ir.Module) -> rt_exe.ShardedExecutable:
        module = rt_exe.clone(module)
        sh.replicate_main(module, "statistics", 1)
        return rt_exe.compile(module, [self._device or jax.local_devices()[0]])


def _check_position(what: str, expected: int, values: list[Any]) -> None:
    if len(values) != expected:
        raise ValueError(f"{what} start at argument {expected}, not {len(values)}")


def _slice(x: Any, k: int, m: int) -> Any:
    return x[k * m : (k + 1) * m]
