"""The one MLIR context autopar works in: every dialect JAX emits (func, stablehlo, chlo, sdy, mhlo...)."""

from __future__ import annotations

import functools

from jax.interpreters import mlir as jax_mlir
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo


@functools.cache
def context() -> ir.Context:
    """The shared context. Created once: modules from different contexts cannot be mixed."""
    ctx = jax_mlir.make_ir_context()
    # Registers stablehlo-legalize-to-vhlo, stablehlo-refine-shapes, ... for textual pipelines.
    stablehlo.register_stablehlo_passes()
    return ctx
