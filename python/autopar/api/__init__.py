"""autopar.api: `parallelize`, the parallel methods and execution plans (see docs/api.md)."""

from autopar.api.methods import (
    AutoShardingOption,
    DataParallel,
    ManualShardingOption,
    ShardParallel,
    Zero2Parallel,
    Zero3Parallel,
)
from autopar.api.parallelize import Compiled, Lowered, ParallelizedFunction, parallelize
from autopar.api.plan import ExecutionPlan, TensorPlacement

__all__ = [
    "AutoShardingOption",
    "Compiled",
    "DataParallel",
    "ExecutionPlan",
    "Lowered",
    "ManualShardingOption",
    "ParallelizedFunction",
    "ShardParallel",
    "TensorPlacement",
    "Zero2Parallel",
    "Zero3Parallel",
    "parallelize",
]
