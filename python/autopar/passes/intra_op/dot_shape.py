"""How much work a convolution is (`convolution_flops`), and how narrow a dot is on each device: a
matmul whose smallest GEMM dimension (rows M, columns N or the contracted K, per device, after the
strategy's split) is a few dozen elements runs well below the peak rate the device is calibrated at
(512 x 512 matmuls): on the CPU devices of docs/cost_model.md a width of 32 runs at ~70 % of it. Under a
profile with `device.dot_half_rate_width` (c, elements; written by `python -m autopar.calibrate`) a dot's
compute time is multiplied by `1 + c / max(d, c)` (d its smallest per-device GEMM dimension): full rate
for wide dots, half rate at or below c. Tensor parallelism over many devices makes dots narrow, which the
plain FLOP count cannot see."""

from __future__ import annotations

import math

import numpy as np

GEMM_OPS = frozenset({"stablehlo.dot_general", "stablehlo.dot"})


def slowdown(rule, assignment, mesh_shape: tuple[int, ...], half_rate_width: float) -> float:
    """The factor (>= 1) on a dot's compute time for one strategy (`assignment`: per mesh axis, the factor
    it shards, -1 none)."""
    if half_rate_width <= 0 or len(rule.operand_maps) != 2:
        return 1.0
    split = {}
    for axis, factor in enumerate(np.asarray(assignment).tolist()):
        if factor >= 0:
            split[factor] = split.get(factor, 1) * mesh_shape[axis]
    lhs, rhs = ({f for dim in maps for f in dim} for maps in rule.operand_maps)
    out = {f for maps in rule.result_maps for dim in maps for f in dim}
    size = lambda factors: math.prod(rule.factor_sizes[f] // split.get(f, 1) for f in factors)  # noqa: E731
    m, n, k = size((lhs & out) - rhs), size((rhs & out) - lhs), size((lhs & rhs) - out)
    return gemm_slowdown(m, n, k, half_rate_width)


def gemm_slowdown(m: int, n: int, k: int, half_rate_width: float) -> float:
    """The factor on the compute time of an m x k by k x n matmul on one device (module docstring)."""
    if half_rate_width <= 0:
        return 1.0
    return 1.0 + half_rate_width / max(min(m, n, k), half_rate_width)


def convolution_flops(op, operand_shapes, result_shapes) -> float:
    """Multiply-add FLOPs of a `stablehlo.convolution` op, from its shapes: Shardy's rule gives a kernel's
    window dims factors of size 1 (a 3 x 3 conv of 16 channels reads as a 1 x 1 one, 9x too few FLOPs).
    Every result element sums kh * kw * (input features per group) products; an input dilated by d (the
    input gradient of a stride-d conv) is mostly holes, so the count is scaled by its real share of
    elements, which gives the forward conv's FLOPs. Padding taps are counted (a conv that pads computes
    them). 0 when the op is not one this reads."""
    from jaxlib.mlir import ir
    from jaxlib.mlir.dialects import stablehlo

    attrs = op.attributes
    if len(operand_shapes) != 2 or len(result_shapes) != 1 or "dimension_numbers" not in attrs:
        return 0.0
    numbers = stablehlo.ConvDimensionNumbers(attrs["dimension_numbers"])
    kernel, lhs = operand_shapes[1], operand_shapes[0]
    flops = 2.0 * math.prod(result_shapes[0]) * math.prod(kernel)
    flops /= max(kernel[numbers.kernel_output_feature_dimension], 1)
    if "lhs_dilation" in attrs:
        dilation = list(ir.DenseI64ArrayAttr(attrs["lhs_dilation"]))
        for dim, d in zip(numbers.input_spatial_dimensions, dilation, strict=True):
            flops *= lhs[dim] / max((lhs[dim] - 1) * d + 1, 1)
    return flops
