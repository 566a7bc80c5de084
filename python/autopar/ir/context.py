"""The one MLIR context autopar works in: every dialect JAX emits (func, stablehlo, chlo, sdy, mhlo...)."""

from __future__ import annotations

import functools
import os
import sys

# jaxlib's MLIR extensions, loaded before JAX starts its backend, leave C++ INFO logging on: the backend's
# start then writes "PjRt-IFRT device count" lines to stderr (autopar-opt --emit=exported did). INFO only;
# warnings and errors still print, and a level the user set is kept.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from jaxlib.mlir import ir  # noqa: E402
from jaxlib.mlir._mlir_libs import _jax_mlir_ext  # noqa: E402
from jaxlib.mlir.dialects import chlo, mhlo, mpmd, sdy, stablehlo  # noqa: E402

from autopar.errors import format_location  # noqa: E402


class DiagnosticSink:
    """Catches diagnostics no narrower handler took, so MLIR never writes multi-line noise to stderr.

    Errors are kept for the caller to turn into one exception line (`take_errors`); warnings and remarks
    (a pass explaining a fallback, say) are printed as single lines.
    """

    def __init__(self) -> None:
        self._errors: list[str] = []

    def __call__(self, diagnostic: ir.Diagnostic) -> bool:
        if diagnostic.severity == ir.DiagnosticSeverity.ERROR:
            where = str(diagnostic.location)
            where = where[4:-1] if where.startswith("loc(") and where.endswith(")") else where
            line = f"{where}: {diagnostic.message}" if where and where != "unknown" else diagnostic.message
            self._errors.append(line)
        else:
            # One line with the user's file:line, not a call-site chain kilobytes long.
            where = format_location(diagnostic.location)
            message = " ".join(str(diagnostic.message).split())
            kind = "warning" if diagnostic.severity == ir.DiagnosticSeverity.WARNING else "remark"
            sys.stderr.write(f"{kind}: {where}: {message}\n" if where else f"{kind}: {message}\n")
        return True

    def take_errors(self) -> list[str]:
        errors, self._errors = self._errors, []
        return errors


class _BareContext(ir.Context):
    """A context without every dialect linked into jaxlib preloaded (`ir.Context.__init__` loads them all;
    JAX's own contexts skip it the same way)."""

    def __init__(self) -> None:
        super(ir.Context, self).__init__()


def _make_context() -> ir.Context:
    """The dialects of JAX's own IR context (`jax.interpreters.mlir.make_ir_context`), built from jaxlib
    alone: importing jax costs over a second, which every `autopar-opt` start would pay."""
    registry = ir.DialectRegistry()
    _jax_mlir_ext.register_dialects(registry)
    ctx = _BareContext()
    ctx.append_dialect_registry(registry)
    ctx.load_all_available_dialects()
    sdy.register_dialect(ctx)
    mpmd.register_dialect(ctx)
    mhlo.register_mhlo_dialect(ctx)
    chlo.register_dialect(ctx)
    stablehlo.register_dialect(ctx)
    return ctx


@functools.cache
def _context_and_sink() -> tuple[ir.Context, DiagnosticSink]:
    ctx = _make_context()
    # Registers stablehlo-legalize-to-vhlo, stablehlo-refine-shapes, ... for textual pipelines.
    stablehlo.register_stablehlo_passes()
    sink = DiagnosticSink()
    ctx.attach_diagnostic_handler(sink)
    return ctx, sink


def context() -> ir.Context:
    """The shared context. Created once: modules from different contexts cannot be mixed."""
    return _context_and_sink()[0]


def diagnostics() -> DiagnosticSink:
    return _context_and_sink()[1]
