"""autopar's passes: one module per pass, all registered in `autopar.passes.registry`.

`run(module, "builtin.module(autopar-inline,canonicalize)")` runs a pipeline from Python exactly as
`autopar-opt --pass-pipeline=...` does.
"""

from __future__ import annotations

import importlib

from jaxlib.mlir import ir

from autopar.passes import pipeline, registry
from autopar.passes.registry import Option, PassInfo, register_pass, registered_passes

# The built-in passes, in pipeline order. Importing a module registers its pass.
# `pipelines` comes last: its pipelines copy the options of the passes they run.
_BUILTIN_PASS_MODULES = (
    "inline",
    "unroll_loops",
    "flatten_conditionals",
    "fold_transposes",
    "cluster_layers",
    "inter_op.inter_op",
    "intra_op",
    "shard_stages",
    "reshard",
    "schedule",
    "pipelines",
)

for _name in _BUILTIN_PASS_MODULES:
    importlib.import_module(f"autopar.passes.{_name}")


def run(module: ir.Module, pipeline_text: str) -> ir.Module:
    """Runs `pipeline_text` on `module` in place and returns it. Raises PipelineError or PassError."""
    pipeline.run_elements(module, pipeline.parse_pipeline(pipeline_text))
    return module


__all__ = ["Option", "PassInfo", "register_pass", "registered_passes", "registry", "run"]
