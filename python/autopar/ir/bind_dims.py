"""A shape-polymorphic `jax.export.Exported` at given sizes (`autopar-opt --bind-dims b=32`).

An Exported written with symbolic dims (`jax.export.symbolic_shape("b")`) runs at any batch size, but its
module has dynamic shapes (`tensor<?x64xf32>`), which no planner can price or split. A plan is for one
size, so the dims are bound first: the Exported is called at the bound shapes under `jax.jit` (its
shape assertions then check the sizes, e.g. that a dim declared `2*b` is even) and JAX's own shape
refinement makes every shape static and inlines the wrapper that computed the dims. The result is the
module a `jax.jit` of the original function at those shapes lowers to, and an Exported that describes it
(its avals the bound ones), which `--emit=exported` writes.
"""

from __future__ import annotations

import dataclasses
import io as _io
import re
from typing import Any

from jaxlib.mlir import ir

from autopar.errors import AutoparError
from autopar.ir import io


class DimBindingError(AutoparError, ValueError):
    """--bind-dims is malformed, names dims the input does not have, or sizes its shapes reject."""


_ENTRY = re.compile(r"^\s*([A-Za-z_][\w]*)\s*=\s*(\d+)\s*$")


def parse_bindings(text: str) -> dict[str, int]:
    """`"b=32, seq=128"` as {"b": 32, "seq": 128}."""
    bindings: dict[str, int] = {}
    for entry in text.split(","):
        match = _ENTRY.match(entry)
        if match is None or int(match.group(2)) < 1:
            raise DimBindingError(
                f"--bind-dims entry {entry.strip()!r} is not NAME=SIZE with a positive SIZE (e.g. b=32)"
            )
        if match.group(1) in bindings:
            raise DimBindingError(f"--bind-dims gives {match.group(1)} twice")
        bindings[match.group(1)] = int(match.group(2))
    return bindings


def symbolic_dims(exported: Any) -> list[str]:
    """The names of the Exported's symbolic dims, sorted."""
    from jax._src.export import shape_poly

    return sorted(shape_poly.all_dim_vars(exported.in_avals))


def bind(exported: Any, bindings: dict[str, int], source_name: str) -> tuple[ir.Module, Any]:
    """(the module at the bound sizes, with static shapes; an Exported describing it)."""
    import jax
    from jax._src.interpreters import mlir as jax_mlir  # jax is pinned: its shape refinement entry point

    names = symbolic_dims(exported)
    if not names:
        raise DimBindingError(f"--bind-dims: {source_name} has static shapes; there is no dim to bind")
    if unknown := sorted(set(bindings) - set(names)):
        raise DimBindingError(
            f"--bind-dims names {', '.join(unknown)}, which {source_name}'s shapes do not use (its symbolic "
            f"dims: {', '.join(names)})"
        )
    if missing := [n for n in names if n not in bindings]:
        raise DimBindingError(
            f"{source_name}'s dims {', '.join(missing)} are symbolic: give each a size, e.g. --bind-dims "
            + ",".join(f"{n}=<size>" for n in names)
        )
    if exported.nr_devices != 1:
        raise DimBindingError(
            f"--bind-dims: {source_name} was exported for {exported.nr_devices} devices; bind the dims of "
            "an Exported of one device (export the function without shardings)"
        )
    shapes = [
        jax.ShapeDtypeStruct(
            tuple(d if isinstance(d, int) else int(d._evaluate(bindings)) for d in a.shape), a.dtype
        )
        for a in exported.in_avals
    ]
    args, kwargs = jax.tree.unflatten(exported.in_tree, shapes)
    try:
        # An Exported for one platform is lowered for it (a CUDA export binds on a CPU-only machine).
        platforms = tuple(exported.platforms) if len(exported.platforms) == 1 else None
        traced = jax.jit(exported.call, keep_unused=True).trace(*args, **kwargs)
        lowered = traced.lower(lowering_platforms=platforms)
        refined = jax_mlir.refine_polymorphic_shapes(lowered.compiler_ir("stablehlo"))
    except Exception as err:  # a shape assertion or JAX's refinement names what the sizes break
        raise DimBindingError(
            f"--bind-dims {_text(bindings)}: {source_name} rejects these sizes: {_reason(err)}"
        ) from None
    buffer = _io.BytesIO()
    refined.operation.write_bytecode(buffer)
    module = io.parse_bytes(buffer.getvalue(), source_name=source_name)
    out_avals = tuple(jax.core.ShapedArray(o.shape, o.dtype) for o in jax.tree.leaves(lowered.out_info))
    bound = dataclasses.replace(
        exported,
        in_avals=tuple(jax.core.ShapedArray(s.shape, s.dtype) for s in shapes),
        out_avals=out_avals,
        module_kept_var_idx=tuple(range(len(shapes))),
        uses_global_constants=False,
    )
    return module, bound


def _text(bindings: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in bindings.items())


def _reason(err: BaseException) -> str:
    """The first sentence of the innermost error (the shape assertion's, not "Error refining shapes")."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip()
    text = text.split("error: ", 1)[1] if "error: " in text else text
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(err).__name__
