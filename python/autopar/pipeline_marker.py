"""`mark_pipeline_boundary`: a hand-placed pipeline stage boundary that survives `jax.grad`.

    x = autopar.mark_pipeline_boundary(x)      # between two layers; returns its arguments unchanged

The marker is an identity JAX primitive on the values that cross the boundary (a nullary marker would be
removed by JAX as dead code, and JAX could not transpose it). Its transpose marks the cotangents with a
backward marker, so `jax.grad` leaves a matching boundary in the backward pass. Both lower to
`stablehlo.optimization_barrier` tagged `autopar.pipeline_boundary = "forward" | "backward"`: XLA compiles
it (so a marked function still runs under plain `jax.jit`), and every autopar pass sees it.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.extend import core as jex_core
from jax.interpreters import ad, batching, mlir
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from autopar.ir import attrs

pipeline_boundary_p = jex_core.Primitive("autopar_pipeline_boundary")
pipeline_boundary_p.multiple_results = True


def mark_pipeline_boundary(*values: Any) -> Any:
    """Marks a pipeline stage boundary on the pytree(s) `values` and returns them unchanged.

    With one argument the result is that argument; with several, a tuple. Place it on the activations
    flowing from one layer to the next. Calling it with no arguments is an error: a boundary needs the
    values that cross it.
    """
    if not values:
        raise TypeError(
            "mark_pipeline_boundary() needs the values that cross the boundary: write x = "
            "mark_pipeline_boundary(x)"
        )
    leaves, tree = jax.tree.flatten(values)
    if not leaves:
        return values[0] if len(values) == 1 else values
    marked = pipeline_boundary_p.bind(*leaves, kind="forward")
    out = jax.tree.unflatten(tree, marked)
    return out[0] if len(values) == 1 else out


def _abstract_eval(*avals: Any, kind: str) -> list[Any]:
    return list(avals)


def _impl(*values: Any, kind: str) -> list[Any]:
    return list(values)


def _jvp(primals: list[Any], tangents: list[Any], *, kind: str) -> tuple[list[Any], list[Any]]:
    out = pipeline_boundary_p.bind(*primals, kind=kind)
    tangents = [ad.instantiate_zeros(t) for t in tangents]
    # The tangent marker is linear in the tangents; transposing it yields the backward boundary.
    return out, pipeline_boundary_p.bind(*tangents, kind=kind)


def _transpose(cotangents: list[Any], *primals: Any, kind: str) -> list[Any]:
    cotangents = [ad.instantiate_zeros(ct) if type(ct) is ad.Zero else ct for ct in cotangents]
    backward = "backward" if kind == "forward" else "forward"
    return pipeline_boundary_p.bind(*cotangents, kind=backward)


def _batch(args: list[Any], dims: list[Any], *, kind: str) -> tuple[list[Any], list[Any]]:
    return pipeline_boundary_p.bind(*args, kind=kind), dims


def _lower(ctx: Any, *values: ir.Value, kind: str) -> list[ir.Value]:
    barrier = stablehlo.OptimizationBarrierOp(list(values))
    # The attribute every pass reads; its value says which pass of the training step the marker is in.
    attrs.set_pipeline_boundary(barrier.operation, kind)
    return list(barrier.results)


pipeline_boundary_p.def_impl(_impl)
pipeline_boundary_p.def_abstract_eval(_abstract_eval)
ad.primitive_jvps[pipeline_boundary_p] = _jvp
ad.primitive_transposes[pipeline_boundary_p] = _transpose
batching.primitive_batchers[pipeline_boundary_p] = _batch
mlir.register_lowering(pipeline_boundary_p, _lower)
