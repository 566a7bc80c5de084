"""autopar: automatic model parallelism for JAX, as MLIR passes over StableHLO.

See docs/ and README.md. The public API grows as the layers land: `autopar.ir` (module I/O and lowering),
`autopar.passes` (the pass registry and `run`), `autopar.opt` (the mlir-opt-like driver),
`autopar.runtime` (compile and run annotated modules) and `parallelize` with its methods (`autopar.api`).
"""

from autopar import errors
from autopar.api import (
    AutoShardingOption,
    DataParallel,
    ExecutionPlan,
    ManualShardingOption,
    ShardParallel,
    Zero2Parallel,
    Zero3Parallel,
    parallelize,
)
from autopar.api.pipeshard import AutoLayerOption, PipeshardParallel, UniformStageOption
from autopar.errors import AutoparError, IRLoadError, PassError, PipelineError, PluginError
from autopar.pipeline_marker import mark_pipeline_boundary

__all__ = [
    "AutoLayerOption",
    "AutoShardingOption",
    "AutoparError",
    "DataParallel",
    "ExecutionPlan",
    "IRLoadError",
    "ManualShardingOption",
    "PassError",
    "PipelineError",
    "PipeshardParallel",
    "PluginError",
    "ShardParallel",
    "Zero2Parallel",
    "UniformStageOption",
    "Zero3Parallel",
    "errors",
    "mark_pipeline_boundary",
    "parallelize",
]
