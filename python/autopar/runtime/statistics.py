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
from jax.sharding import PartitionSpec
from jaxlib.mlir import ir

from autopar.ir.batch_statistics import StatisticsRound
from autopar.runtime import executable as rt_exe
from autopar.runtime import shardings as sh
from autopar.runtime.program import Gathered


class BatchStatistics:
    """`BatchStatistics(rounds, B)(args)`: `args` with what the planned step reads beyond them appended:
    first, when `example_index` gives its position, each example's index in the whole batch of
    `examples` (ir/example_index.py, a batch argument: the runtime cuts it into micro-batches); then the
    statistics of every round."""

    def __init__(
        self,
        rounds: Sequence[StatisticsRound],
        num_micro_batches: int,
        example_index: int | None = None,
        examples: int = 0,
        device: Any = None,
    ):
        self.rounds = tuple(rounds)
        self.num_micro_batches = num_micro_batches
        self.example_index, self.examples = example_index, examples
        self._device = device
        self._compiled: list[rt_exe.ShardedExecutable] = []

    def __bool__(self) -> bool:
        return bool(self.rounds) or self.example_index is not None

    def __call__(self, args: Sequence[Any]) -> list[Any]:
        values = list(args)
        if self.example_index is not None:
            if len(values) != self.example_index:
                raise ValueError(
                    f"the step's example index is argument {self.example_index}, not {len(values)}"
                )
            values.append(np.arange(self.examples, dtype=np.uint32))
        if not self.rounds:
            return values
        if not self._compiled:
            self._compiled = [self._compile(r.module) for r in self.rounds]
        B = self.num_micro_batches
        for r, exe in zip(self.rounds, self._compiled, strict=True):
            if len(values) != r.first:
                raise ValueError(f"the step's statistics start at argument {r.first}, not {len(values)}")
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
        main = sh.main_func(module)
        sh.annotate_main(
            module,
            sh.MeshSpec("statistics", ("x",), (1,)),
            [PartitionSpec()] * len(main.type.inputs),
            [PartitionSpec()] * len(main.type.results),
        )
        return rt_exe.compile(module, [self._device or jax.local_devices()[0]])


def _slice(x: Any, k: int, m: int) -> Any:
    return x[k * m : (k + 1) * m]
