"""Scatter layouts stock XLA miscompiles.

A scatter that writes one window (`x.at[:, 3].set(v)`, `x.at[i].add(1)`: one index vector, which XLA
turns into a dynamic-update-slice) into an operand split along a dim the index addresses comes out wrong
when the operand reaches it in another layout and is resharded just before (jaxlib 0.10.2, Shardy; from
replicated, or from a split along another dim or mesh axis): each device writes the window at its own
offset clamped into its shard, so a device that does not hold the window overwrites its first row or
column. Found through the backward pass of
`h.at[:, 0].set(h[:, 1])` under PipeshardParallel (a stage function's argument arrives replicated), where
the gradient was 0.6 % off on 8 devices with no error. Scatters of many index vectors (an embedding's
gradient) partition correctly. tests/passes/intra_op/test_strategies_xla_miscompiles.py reruns the
pattern through XLA.

Since the emitter cannot promise that no reshard lands right before the scatter, such a scatter keeps the
dims its index addresses whole in every strategy; its other dims (a batch) still split.
"""

from __future__ import annotations

import math

from autopar.passes.intra_op.graph import Node, Rule


def indexed_factors(node: Node, rule: Rule) -> frozenset[int]:
    """The rule's factors of the operand dims a one-window scatter's index addresses; empty for any other
    op."""
    if node.kind != "stablehlo.scatter" or len(node.operand_shapes) != 3 or not rule.operand_maps:
        return frozenset()
    from jaxlib.mlir.dialects import stablehlo

    numbers = stablehlo.ScatterDimensionNumbers(node.op.attributes["scatter_dimension_numbers"])
    indices = node.operand_shapes[1]
    vector_dim = numbers.index_vector_dim
    if math.prod(n for d, n in enumerate(indices) if d != vector_dim) != 1:
        return frozenset()  # many windows: partitioned correctly
    operand = rule.operand_maps[0]
    dims = numbers.scattered_dims_to_operand_dims
    return frozenset(f for d in dims if d < len(operand) for f in operand[d])
