"""Lowering Python functions to StableHLO in autopar's context."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jaxlib.mlir import ir

from autopar.ir.io import parse_bytes


def lower(
    fn: Callable[..., Any], *args: Any, static_argnums: tuple[int, ...] = (), **kwargs: Any
) -> ir.Module:
    """`jax.jit(fn).lower(*args)` as a module in autopar's context.

    Arguments may be `jax.ShapeDtypeStruct`s, so a model of any size lowers without allocating it. The
    module keeps JAX's name-stack locations (later passes pair forward and backward ops with them).
    """
    lowered = jax.jit(fn, static_argnums=static_argnums).lower(*args, **kwargs)
    return module_from_lowered(lowered)


def module_from_lowered(lowered: Any) -> ir.Module:
    import io

    buffer = io.BytesIO()
    lowered.compiler_ir("stablehlo").operation.write_bytecode(buffer)
    return parse_bytes(buffer.getvalue(), source_name="<lowered function>")
