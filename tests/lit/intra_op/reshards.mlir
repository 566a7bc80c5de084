// Where an op needs an operand in another layout than its producer's, the operand is constrained to that
// layout right before its users (one constraint per value and layout): XLA reshards exactly there, as
// priced, and the plan lists what it expects XLA to emit in autopar.expected_collectives.
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8 zero-stage=3})' | filecheck %s

// ZeRO-3 keeps both weights split and gathers each whole before its matmul: two all-gathers of 1 MiB.
// CHECK: autopar.expected_collectives = [{axes = "x", bytes = 2097152 : i64, count = 2 : i64, kind = "all-gather"}]
// CHECK: %arg1: tensor<256x1024xf32> {autopar.parameter, sdy.sharding = #sdy.sharding<@mesh, [{}, {"x"}]>}
// CHECK-SAME: %arg2: tensor<1024x256xf32> {autopar.parameter, sdy.sharding = #sdy.sharding<@mesh, [{{.*}}"x"{{.*}}]>}
// CHECK-DAG: %[[W2:.*]] = sdy.sharding_constraint %arg2 <@mesh, [{}, {}]> : tensor<1024x256xf32>
// CHECK-DAG: %[[W1:.*]] = sdy.sharding_constraint %arg1 <@mesh, [{}, {}]> : tensor<256x1024xf32>
// CHECK: stablehlo.dot_general %arg0, %[[W1]]
// CHECK: stablehlo.dot_general %{{.*}}, %[[W2]]
func.func public @main(%arg0: tensor<64x256xf32> {autopar.batch}, %arg1: tensor<256x1024xf32> {autopar.parameter},
                       %arg2: tensor<1024x256xf32> {autopar.parameter}) -> (tensor<64x256xf32>) {
  %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<64x256xf32>, tensor<256x1024xf32>) -> tensor<64x1024xf32>
  %1 = stablehlo.tanh %0 : tensor<64x1024xf32>
  %2 = stablehlo.dot_general %1, %arg2, contracting_dims = [1] x [0] : (tensor<64x1024xf32>, tensor<1024x256xf32>) -> tensor<64x256xf32>
  return %2 : tensor<64x256xf32>
}
