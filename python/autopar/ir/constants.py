"""Reading a `stablehlo.constant`'s value through jaxlib's MLIR Python bindings.

The bindings cast every attribute they hand out to its most specific class, and they have none for dense
elements of complex type (`jnp.fft` leaves `dense<(0.0,0.0)> : tensor<complex<f32>>` in a step): reading
such a constant's `value` raises TypeError, and reading it by its position in the attribute list aborts
the process. So a constant is read by name, here, and a value the bindings cannot cast comes back as its
text, which compares like the attribute's.
"""

from __future__ import annotations

import math
import re

from jaxlib.mlir import ir

_RESULT_NAMES = re.compile(r"^\s*(%[\w#:.$-]+\s*,?\s*)+=\s*")


def constant_value(op: ir.Operation) -> ir.Attribute | str:
    """The `value` attribute of constant `op`, or, when the bindings cannot cast it (complex elements), the
    op's text without its result name: equal for equal values, and never a DenseElementsAttr."""
    try:
        return op.attributes["value"]
    except TypeError:
        return _RESULT_NAMES.sub("", str(op)).strip()


def dense_value(op: ir.Operation) -> ir.DenseElementsAttr | None:
    """The value of constant `op` when the bindings read it as dense elements, else None."""
    value = constant_value(op)
    return value if isinstance(value, ir.DenseElementsAttr) else None


def splat_value(dense: ir.DenseElementsAttr) -> float:
    """The value of a splat constant (nan when it is not a number)."""
    value = dense.get_splat_value()
    for kind in (ir.FloatAttr, ir.IntegerAttr, ir.BoolAttr):
        if isinstance(value, kind):
            return float(value.value)
    return math.nan
