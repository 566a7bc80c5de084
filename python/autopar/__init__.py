"""autopar: automatic model parallelism for JAX, as MLIR passes over StableHLO.

See docs/ and README.md. `autopar.parallelize` with its methods (`autopar.api`), `autopar.export` (a
plan as a jax.export.Exported), `autopar.ir` (module I/O and lowering), `autopar.passes` (the pass
registry and `run`), `autopar.opt` (the mlir-opt-like driver), `autopar.runtime` (compile and run
annotated modules), `autopar.init` / `autopar.shutdown` (where pipelined steps run: this machine or a Ray
cluster) and `autopar.solver` (the strategy-problem solver).

The names below are loaded on first use: `import autopar` (or `autopar.solver`, or the `autopar-opt`
driver) does not import jax until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from autopar._version import __version__
from autopar.errors import AutoparError, IRLoadError, PassError, PipelineError, PluginError

# Public name -> the module that defines it.
_LAZY = {
    "AutoShardingOption": "autopar.api.methods",
    "DataParallel": "autopar.api.methods",
    "ManualShardingOption": "autopar.api.methods",
    "ShardParallel": "autopar.api.methods",
    "Zero2Parallel": "autopar.api.methods",
    "Zero3Parallel": "autopar.api.methods",
    "ExecutionPlan": "autopar.api.plan",
    "export": "autopar.api.exported",
    "parallelize": "autopar.api.parallelize",
    "AutoLayerOption": "autopar.api.pipeshard",
    "PipeshardParallel": "autopar.api.pipeshard",
    "UniformStageOption": "autopar.api.pipeshard",
    "ManualStageOption": "autopar.api.pipeshard",
    "mark_pipeline_boundary": "autopar.pipeline_marker",
    "grad": "autopar.gradients",
    "value_and_grad": "autopar.gradients",
    "init": "autopar.runtime.cluster",
    "save_checkpoint": "autopar.api.checkpoint",
    "restore_checkpoint": "autopar.api.checkpoint",
    "shutdown": "autopar.runtime.cluster",
}

if TYPE_CHECKING:
    from autopar.api.checkpoint import restore_checkpoint, save_checkpoint
    from autopar.api.exported import export
    from autopar.api.methods import (
        AutoShardingOption,
        DataParallel,
        ManualShardingOption,
        ShardParallel,
        Zero2Parallel,
        Zero3Parallel,
    )
    from autopar.api.parallelize import parallelize
    from autopar.api.pipeshard import (
        AutoLayerOption,
        ManualStageOption,
        PipeshardParallel,
        UniformStageOption,
    )
    from autopar.api.plan import ExecutionPlan
    from autopar.gradients import grad, value_and_grad
    from autopar.pipeline_marker import mark_pipeline_boundary
    from autopar.runtime.cluster import init, shutdown


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'autopar' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AutoLayerOption",
    "AutoShardingOption",
    "AutoparError",
    "DataParallel",
    "ExecutionPlan",
    "IRLoadError",
    "ManualShardingOption",
    "ManualStageOption",
    "PassError",
    "PipelineError",
    "PipeshardParallel",
    "PluginError",
    "ShardParallel",
    "UniformStageOption",
    "Zero2Parallel",
    "Zero3Parallel",
    "__version__",
    "export",
    "grad",
    "init",
    "mark_pipeline_boundary",
    "parallelize",
    "restore_checkpoint",
    "save_checkpoint",
    "shutdown",
    "value_and_grad",
]
