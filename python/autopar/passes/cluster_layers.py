"""autopar-cluster-layers: cut a training step into layers and pair backward and optimizer ops with them."""

from __future__ import annotations

import types

from jaxlib.mlir import ir

from autopar.ir import attrs
from autopar.ir.shapes import check_unsharded
from autopar.passes.inter_op.graph import build_graph, main_func
from autopar.passes.inter_op.layers import assign_layers
from autopar.passes.registry import Option, register_pass

DESCRIPTION = """
Alpa's layer construction over StableHLO. The forward ops of `@main` are cut into `num-layers` contiguous
layers whose FLOPs stay within (1 + eps) of the mean (or within the heaviest indivisible block, when
that is bigger: an LM-head matmul then is a layer of its own) while the bytes crossing layer boundaries
are minimal (a DP in the C++ core; cuts fall after dot/convolution ops). Backward ops (JAX's name stack
`transpose(jvp(...))`) join the forward layer they differentiate: by name stack when it names a single
layer, else by the activations and parameters they read, else by the cotangents they read. The
apply-gradient (optimizer) part stays separate and follows the layer that owns each parameter.
Boundaries placed by hand with `autopar.mark_pipeline_boundary` replace the DP (markers must pair with
their backward markers). Every top-level op gets `autopar.layer` (i64) and `autopar.part`
("forward", "backward" or "apply"); the module gets `autopar.num_layers`. A module that already has an
`sdy.mesh` (planned, or lowered with shardings) is refused: stages are planned from the unsharded step.

Before:
  %0 = stablehlo.dot_general %arg2, %arg0 ... loc("jit(step)/jvp(mlp)/dot_general")
  %1 = stablehlo.tanh %0 ...
  %2 = stablehlo.dot_general %1, %arg1 ...
  ...
  %9 = stablehlo.dot_general %8, %arg1 ... loc("jit(step)/transpose(jvp(mlp))/dot_general")

After (num-layers=2):
  %0 = stablehlo.dot_general %arg2, %arg0 {autopar.layer = 0 : i64, autopar.part = "forward"} ...
  %1 = stablehlo.tanh %0 {autopar.layer = 1 : i64, autopar.part = "forward"} ...
  %2 = stablehlo.dot_general %1, %arg1 {autopar.layer = 1 : i64, autopar.part = "forward"} ...
  %9 = stablehlo.dot_general %8, %arg1 {autopar.layer = 1 : i64, autopar.part = "backward"} ...
"""


@register_pass(
    argument="autopar-cluster-layers",
    summary="Cut @main into layers of balanced FLOPs; pair backward and optimizer ops with them",
    description=DESCRIPTION,
    options=[
        Option("num-layers", int, 0, "number of layers (0: only with hand-placed pipeline boundaries)"),
        Option("eps", float, 0.6, "a layer may have up to (1 + eps) times the mean layer FLOPs"),
    ],
    check=lambda options: _check_options(options),
)
def cluster_layers(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
    check_unsharded(module_op, "autopar-cluster-layers")
    fn = main_func(module_op)
    graph = build_graph(fn)
    assignment = assign_layers(graph, options.num_layers, options.eps)
    for node, layer, part in zip(graph.nodes, assignment.layer, assignment.part, strict=True):
        attrs.set_layer(node.op, layer)
        attrs.set_part(node.op, part)
    attrs.set_num_layers(module_op, assignment.num_layers)


def _check_options(options: types.SimpleNamespace) -> None:
    if options.num_layers < 0:
        raise ValueError(
            f"num-layers must be >= 0 (0: hand-placed boundaries only), got {options.num_layers}"
        )
    if not options.eps >= 0:
        raise ValueError(f"eps must be >= 0, got {options.eps}")
