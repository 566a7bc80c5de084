"""autopar.ir: the MLIR context, module I/O in every form JAX produces, and lowering of Python functions."""

from autopar.ir.context import context, diagnostics
from autopar.ir.io import Emit, load, parse_bytes, parse_text, read_input, save, to_bytes, write_atomically


def __getattr__(name: str):
    # lower() and module_from_lowered() need jax; loading them on first use keeps `autopar.ir` jax-free.
    if name in ("lower", "module_from_lowered"):
        from autopar.ir import lowering

        return getattr(lowering, name)
    raise AttributeError(f"module 'autopar.ir' has no attribute {name!r}")


__all__ = [
    "Emit",
    "context",
    "diagnostics",
    "load",
    "lower",
    "module_from_lowered",
    "parse_bytes",
    "parse_text",
    "read_input",
    "save",
    "to_bytes",
    "write_atomically",
]
