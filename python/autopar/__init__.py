"""autopar: automatic model parallelism for JAX, as MLIR passes over StableHLO.

See docs/ and README.md. The public API grows as the layers land: `autopar.ir` (module I/O and lowering),
`autopar.passes` (the pass registry and `run`), `autopar.opt` (the mlir-opt-like driver).
"""

from autopar import errors
from autopar.errors import AutoparError, IRLoadError, PassError, PipelineError, PluginError

__all__ = ["AutoparError", "IRLoadError", "PassError", "PipelineError", "PluginError", "errors"]
