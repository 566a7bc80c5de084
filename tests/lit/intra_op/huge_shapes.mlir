// A tensor of more than 2^40 elements (a shape typed wrong, or an op that blows one up): every pass that
// reads shapes names the value and its size, instead of the intra-op pass failing with "internal error:
// OverflowError" where its 64-bit byte counts overflow. 2^40 elements exactly still plans.
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8})' -o %t.out 2>&1 | filecheck %s --check-prefix=INTRA
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=1})' -o %t.out 2>&1 | filecheck %s --check-prefix=LAYERS
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-pipeshard{layers=1 cluster=1x8 micro-batches=2})' -o %t.out 2>&1 | filecheck %s --check-prefix=PIPESHARD
// RUN: not test -e %t.out
// RUN: autopar-opt %inputs/elements_2_to_40.mlir --pass-pipeline='builtin.module(autopar-intra-op{mesh=8})' | filecheck %s --check-prefix=LARGEST

// INTRA: error: pass 'autopar-intra-op' failed: {{.*}}huge_shapes.mlir:{{[0-9]+}}:{{[0-9]+}}: stablehlo.broadcast_in_dim result has 4.4e+12 elements (tensor<2097152x2097152xf32>), more than the 2^40 autopar plans (its costs count bytes and FLOPs in 64-bit integers): check the shape
// LAYERS: error: pass 'autopar-cluster-layers' failed: {{.*}}: stablehlo.broadcast_in_dim result has 4.4e+12 elements
// PIPESHARD: error: pass 'autopar-pipeshard' failed: {{.*}}: stablehlo.broadcast_in_dim result has 4.4e+12 elements
// LARGEST: stablehlo.dot_general {{.*}} -> tensor<1048576x1048576xf32>
func.func public @main(%arg0: tensor<f32> {autopar.parameter, autopar.path = "w"}) -> tensor<f32> {
  %0 = stablehlo.broadcast_in_dim %arg0, dims = [] : (tensor<f32>) -> tensor<2097152x2097152xf32>
  %1 = stablehlo.tanh %0 : tensor<2097152x2097152xf32>
  %cst = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %2 = stablehlo.reduce(%1 init: %cst) applies stablehlo.add across dimensions = [0, 1] : (tensor<2097152x2097152xf32>, tensor<f32>) -> tensor<f32>
  return %2 : tensor<f32>
}
