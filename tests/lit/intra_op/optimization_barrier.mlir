// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8})' | filecheck %s

// An optimization barrier (what mark_pipeline_boundary and jax.checkpoint lower to) has no Shardy sharding
// rule. The pass plans through it as through an identity: each value keeps its layout across the barrier
// (the batch split), nothing is gathered, nothing is remarked. Each result is constrained to the layout it
// carries right after the barrier, so that no reader's layout propagates back into it.
// CHECK: module attributes {autopar.expected_collectives = []
// CHECK-NOT: autopar.remarks
// CHECK-SAME: {
// CHECK:      %[[D:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK-NEXT: %[[C:.*]] = sdy.sharding_constraint %[[D]] <@mesh, [{"x"}, {}]>
// CHECK-NEXT: %[[T:.*]] = stablehlo.tanh %[[C]]
// CHECK-NEXT: %[[B:.*]]:2 = stablehlo.optimization_barrier %[[T]], %arg0
// CHECK-NEXT: %[[B0:.*]] = sdy.sharding_constraint %[[B]]#0 <@mesh, [{"x"}, {}]>
// CHECK-NEXT: %[[B1:.*]] = sdy.sharding_constraint %[[B]]#1 <@mesh, [{"x"}, {}]>
// CHECK-NEXT: %[[E:.*]] = stablehlo.dot_general %[[B0]], %arg2
// CHECK-NEXT: sdy.sharding_constraint %[[E]] <@mesh, [{"x"}, {}]>
// CHECK-NEXT: stablehlo.add {{.*}}, %[[B1]]
func.func public @main(%arg0: tensor<16x32xf32> {autopar.batch}, %arg1: tensor<32x32xf32> {autopar.parameter},
                       %arg2: tensor<32x32xf32> {autopar.parameter}) -> (tensor<16x32xf32>, tensor<16x32xf32>) {
  %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<16x32xf32>, tensor<32x32xf32>) -> tensor<16x32xf32>
  %1 = stablehlo.tanh %0 : tensor<16x32xf32>
  %2:2 = stablehlo.optimization_barrier %1, %arg0 : tensor<16x32xf32>, tensor<16x32xf32>
  %3 = stablehlo.dot_general %2#0, %arg2, contracting_dims = [1] x [0] : (tensor<16x32xf32>, tensor<32x32xf32>) -> tensor<16x32xf32>
  %4 = stablehlo.add %3, %2#1 : tensor<16x32xf32>
  return %4, %2#0 : tensor<16x32xf32>, tensor<16x32xf32>
}
