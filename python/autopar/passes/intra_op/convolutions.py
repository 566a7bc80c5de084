"""What the intra-op pass reads off a `stablehlo.convolution` beyond its Shardy rule: its FLOPs (the rule
sizes a kernel's window factors 1), its batch groups (the weight gradient of a grouped convolution), and
the strategies XLA does not carry out as the rule says: a grouped convolution runs replicated under any
sharding, and splitting a batch-grouped one's kernel window makes XLA exchange halos (docs/platform.md,
"Grouped convolutions run replicated"). Every function returns the neutral value for any other op."""

from __future__ import annotations

from jaxlib.mlir import ir

from autopar.passes.intra_op import dot_shape
from autopar.passes.intra_op.graph import Node


def flops(node: Node) -> float:
    """Multiply-add FLOPs from the shapes (dot_shape.convolution_flops); 0 for other ops."""
    if node.kind != "stablehlo.convolution" or node.op is None:
        return 0.0
    return dot_shape.convolution_flops(node.op, node.operand_shapes, node.result_shapes)


def batch_groups(node: Node) -> int:
    """batch_group_count (> 1 for the weight gradient of a grouped convolution); 1 for other ops."""
    if node.kind != "stablehlo.convolution" or node.op is None:
        return 1
    attrs = node.op.attributes
    return ir.IntegerAttr(attrs["batch_group_count"]).value if "batch_group_count" in attrs else 1


def feature_groups(node: Node) -> tuple[int, int]:
    """(feature_group_count, input features); (1, 1) for other ops."""
    if node.kind != "stablehlo.convolution" or node.op is None or not node.operand_shapes:
        return 1, 1
    from jaxlib.mlir.dialects import stablehlo

    attrs = node.op.attributes
    if "feature_group_count" not in attrs or "dimension_numbers" not in attrs:
        return 1, 1
    numbers = stablehlo.ConvDimensionNumbers(attrs["dimension_numbers"])
    features = node.operand_shapes[0][numbers.input_feature_dimension]
    return ir.IntegerAttr(attrs["feature_group_count"]).value, features


def grouped_features(node: Node) -> bool:
    """A grouped convolution that is not depthwise: 1 < feature_group_count < input features. XLA
    (jaxlib 0.10.2, Shardy) gathers such a convolution's operands and runs it whole on every device under
    any sharding of its batch, features or spatial dims, so its only strategy is the replicated one: the
    plan then prices the gathers XLA compiles, as resharding of its operands. Depthwise convolutions (one
    channel per group) and the weight gradients of grouped ones (batch_group_count) partition as their
    rules say."""
    groups, features = feature_groups(node)
    return 1 < groups < features


def grouped_features_remark(node: Node, where: str) -> str:
    groups, features = feature_groups(node)
    return (
        f"{node.kind} at {where}: its {features} input features form {groups} groups; XLA runs such "
        "a grouped convolution replicated under any sharding, so it is kept replicated"
    )


def window_factors(node: Node, rule) -> frozenset[int]:
    """The factors of a batch-grouped convolution's kernel window (spatial) dims in its sharding rule:
    splitting them made XLA exchange halos (collective-permute) on a 2x4 mesh, which no strategy prices
    (HF's FlaxRegNet). Empty for other ops, ungrouped convolutions included."""
    if batch_groups(node) <= 1:
        return frozenset()
    from jaxlib.mlir.dialects import stablehlo

    attrs = node.op.attributes
    if "dimension_numbers" not in attrs or len(rule.operand_maps) != 2:
        return frozenset()
    numbers = stablehlo.ConvDimensionNumbers(attrs["dimension_numbers"])
    kernel = rule.operand_maps[1]
    return frozenset(f for dim in numbers.kernel_spatial_dimensions if dim < len(kernel) for f in kernel[dim])
