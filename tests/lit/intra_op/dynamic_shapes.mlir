// A module exported with a symbolic batch dim (jax.export with symbolic_shape("b")): every pass that reads
// shapes names the value and says what to do, instead of Shardy's verifier failing at the first dot or the
// layer DP rejecting negative FLOPs.
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8})' -o %t.out 2>&1 | filecheck %s --check-prefix=INTRA
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2})' -o %t.out 2>&1 | filecheck %s --check-prefix=LAYERS
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-pipeshard{layers=2 cluster=1x8 micro-batches=2})' -o %t.out 2>&1 | filecheck %s --check-prefix=PIPESHARD
// RUN: not test -e %t.out

// INTRA: error: pass 'autopar-intra-op' failed: {{.*}}dynamic_shapes.mlir:{{[0-9]+}}:1: x has dynamic shape tensor<?x16xf32> (symbolic dims of a jax.export?); autopar plans static shapes: export or lower with concrete shapes, or give autopar-opt --bind-dims (e.g. b=32) for a jax.export input
// LAYERS: error: pass 'autopar-cluster-layers' failed: {{.*}}: x has dynamic shape tensor<?x16xf32>
// PIPESHARD: error: pass 'autopar-pipeshard' failed: {{.*}}: x has dynamic shape tensor<?x16xf32>
func.func public @main(%arg0: tensor<16x16xf32> {autopar.parameter, autopar.path = "w"},
                       %arg1: tensor<?x16xf32> {autopar.batch, autopar.path = "x"}) -> tensor<f32> {
  %0 = stablehlo.dot_general %arg1, %arg0, contracting_dims = [1] x [0] : (tensor<?x16xf32>, tensor<16x16xf32>) -> tensor<?x16xf32>
  %1 = stablehlo.tanh %0 : tensor<?x16xf32>
  %cst = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %2 = stablehlo.reduce(%1 init: %cst) applies stablehlo.add across dimensions = [0, 1] : (tensor<?x16xf32>, tensor<f32>) -> tensor<f32>
  return %2 : tensor<f32>
}
