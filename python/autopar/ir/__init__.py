"""autopar.ir: the MLIR context, module I/O in every form JAX produces, and lowering of Python functions."""

from autopar.ir.context import context, diagnostics
from autopar.ir.io import Emit, load, parse_bytes, parse_text, read_input, save, to_bytes, write_atomically
from autopar.ir.lower import lower, module_from_lowered

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
