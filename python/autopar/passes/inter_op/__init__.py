"""Helpers of the inter-op passes: the op graph of a training step, per-op costs, layer assignment,
stage costs, submeshes and stage outlining. The passes themselves are `autopar-cluster-layers`
(passes/cluster_layers.py) and `autopar-inter-op` (passes/inter_op/inter_op.py); the attributes they
write are in autopar/ir/attrs.py."""
