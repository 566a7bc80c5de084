"""Static shapes and unsharded modules: what every autopar planning pass starts from.

A module exported with symbolic dims (`jax.export` with `symbolic_shape("b")`) has dynamic shapes
(`tensor<?x16xf32>`). Nothing in autopar can price or split such a value, and the first tool to meet one
fails far from its cause (Shardy's rule pass at the first op its verifier rejects, the layer DP on negative
FLOPs), so each pass that reads shapes checks them first and names the value. Likewise a module that
already has a mesh (planned before, or lowered with shardings) is refused by the pass that would plan it
again, before a later pass fails on a mesh it dropped.
"""

from __future__ import annotations

import math

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import sdy

from autopar.errors import PassError
from autopar.ir import attrs

# The most elements a tensor may have. Why: the cost model counts bytes and FLOPs in 64-bit integers, and
# with every tensor of a dot at most 2^40 elements its FLOPs (2 M N K <= 2 sqrt(MK KN MN)) stay below 2^61;
# 2^40 elements is 4 TiB of f32, beyond any device's memory and most clusters'. Before, a larger tensor
# failed deep inside the intra-op pass with "internal error: OverflowError".
MAX_ELEMENTS = 2**40


def shape_error(t: ir.Type, what: str, location: ir.Location | None) -> PassError | None:
    """The error for a value of type `t` that autopar cannot plan (unranked, dynamic, or larger than
    MAX_ELEMENTS), else None."""
    if isinstance(t, ir.RankedTensorType) and t.has_static_shape:
        elements = math.prod(t.shape)
        if elements <= MAX_ELEMENTS:
            return None
        return PassError(
            f"{what} has {elements:.3g} elements ({t}), more than the 2^40 autopar plans (its costs count "
            "bytes and FLOPs in 64-bit integers): check the shape",
            location,
        )
    if not isinstance(t, ir.ShapedType):
        return None
    kind = "dynamic shape" if isinstance(t, ir.RankedTensorType) else "unranked type"
    return PassError(
        f"{what} has {kind} {t} (symbolic dims of a jax.export?); autopar plans static shapes: export or "
        "lower with concrete shapes, or give autopar-opt --bind-dims (e.g. b=32) for a jax.export input",
        location,
    )


def check_static_shapes(op: ir.Operation) -> None:
    """Raises shape_error's PassError for the first function argument (named by its pytree path) or op
    result in `op` (a module or a function) whose shape is not static."""
    found: list[PassError] = []  # raised after the walk: an exception inside its callback comes out mangled

    def visit(inner: ir.Operation) -> ir.WalkResult:
        errors = []
        if inner.name == "func.func" and inner.regions[0].blocks:
            marks = attrs.get_argument_marks(inner)
            for i, arg in enumerate(inner.regions[0].blocks[0].arguments):
                path = marks[i].path if i < len(marks) and marks[i].path else f"argument {i}"
                errors.append(shape_error(arg.type, path, inner.location))
        errors += [shape_error(r.type, f"{inner.name} result", inner.location) for r in inner.results]
        found.extend(e for e in errors if e is not None)
        return ir.WalkResult.INTERRUPT if found else ir.WalkResult.ADVANCE

    op.walk(visit, walk_order=ir.WalkOrder.PRE_ORDER)
    if found:
        raise found[0]


def check_unsharded(module_op: ir.Operation, pass_argument: str) -> None:
    """PassError at the module's first `sdy.mesh` with axes: `pass_argument` plans modules without one."""
    for op in module_op.regions[0].blocks[0].operations:
        if op.operation.name == "sdy.mesh" and list(sdy.MeshAttr(op.attributes["mesh"]).axes):
            raise PassError(
                f"the module already has an sdy.mesh: {pass_argument} plans unannotated modules "
                "(lower without shardings)",
                op.location,
            )
