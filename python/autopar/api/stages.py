"""What `parallelize` caches per input signature, and the jax.stages-like objects over it: `f.lower(...)`
(Lowered) and `f.lower(...).compile()` (Compiled)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax
from jaxlib.mlir import ir

from autopar.api.arguments import keywords_to_positions
from autopar.api.nnx_modules import write_back
from autopar.runtime import executable as rt_exe
from autopar.runtime.processes import ProcessExecutor
from autopar.runtime.sequential import SequentialExecutor

if TYPE_CHECKING:
    from autopar.api.parallelize import ParallelizedFunction


@dataclasses.dataclass
class Entry:
    """Everything cached for one input signature."""

    in_tree: Any
    out_tree: Any
    roles: tuple[str, ...]
    paths: tuple[str, ...]
    module: ir.Module  # the planned (annotated) module
    out_keys: tuple[Any, ...]  # per output leaf: the PRNG implementation of a key output, else None
    host_callbacks: tuple[Any, ...] = ()  # Python callbacks JAX's lowering registered (jax.debug.print)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds: lower, plan, compile
    executable: rt_exe.ShardedExecutable | SequentialExecutor | ProcessExecutor | None = None
    remarks: tuple[str, ...] = ()  # what parallelize changed before planning (user_shardings.py)
    appended_modules: tuple[int, ...] = ()  # NNX module arguments the step returns for write-back
    appended_names: tuple[str, ...] = ()  # and their names in the user's arguments
    statistics: Any = None  # runtime/statistics.py: the batch's statistics the pipelined step reads


class Lowered:
    """`f.lower(*args)`: the planned module for one signature (jax.stages.Lowered's role)."""

    def __init__(self, function: ParallelizedFunction, entry: Entry):
        self._function = function
        self._entry = entry

    @property
    def module(self) -> ir.Module:
        return self._entry.module

    @property
    def timings(self) -> dict[str, float]:
        """Seconds spent on this signature: `lower` (JAX tracing and lowering), `plan` (the method's
        passes), and `compile` (XLA) once compiled."""
        return dict(self._entry.timings)

    def as_text(self, *, debug_info: bool = False) -> str:
        """The annotated StableHLO: `sdy.mesh`, `sdy.sharding` on @main, constraints, plan attributes."""
        return self._entry.module.operation.get_asm(enable_debug_info=debug_info)

    def compile(self) -> Compiled:
        return Compiled(self._function, self._entry, self._function._executable(self._entry))


class Compiled:
    """`f.lower(*args).compile()`: the XLA executable for one signature; callable with concrete args."""

    def __init__(self, function: ParallelizedFunction, entry: Entry, executable: rt_exe.ShardedExecutable):
        self._function = function
        self._entry = entry
        self.executable = executable

    def as_text(self) -> str:
        """XLA's compiled, partitioned HLO."""
        return self.executable.as_text()

    def cost_analysis(self) -> dict[str, float]:
        return self.executable.cost_analysis()

    def memory_analysis(self) -> Any:
        return self.executable.memory_analysis()

    @property
    def input_shardings(self) -> Any:
        return jax.tree.unflatten(self._entry.in_tree, self.executable.in_shardings)

    @property
    def output_shardings(self) -> Any:
        return jax.tree.unflatten(self._entry.out_tree, self.executable.out_shardings)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Runs as the parallelized function does: keywords at their positions, NNX modules written back."""
        args, kwargs = keywords_to_positions(self._function.fn, args, kwargs)
        key = self._function._signature(args, kwargs)
        if self._function._cache.get(key) is not self._entry:
            raise TypeError("arguments do not match the signature this executable was compiled for")
        return write_back(
            args, kwargs, self._function._run(self._entry, args, kwargs), self._entry.appended_modules
        )
