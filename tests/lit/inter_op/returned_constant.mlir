// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 device-flops=1e6})' | filecheck %s

// A returned value that needs no input (a constant metric; `x.shape[0]` as an array) is in no layer and no
// stage: the first stage computes it and returns it to @main (before, outlining stopped with "a returned
// value comes from an op that is not outlined").
// CHECK-LABEL: func.func public @main
// CHECK:         %[[S0:.*]]:2 = call @stage_0
// CHECK:         %[[S1:.*]] = call @stage_1
// CHECK:         return %[[S1]], %[[S0]]#1
// CHECK:       func.func private @stage_0
// CHECK:         %[[C:.*]] = stablehlo.constant {{.*}}dense<3.200000e+01> : tensor<f32>
// CHECK:         return %{{.*}}, %[[C]]
module {
  func.func public @main(%x: tensor<32x8xf32> {autopar.batch}, %w0: tensor<8x8xf32> {autopar.parameter}, %w1: tensor<8x8xf32> {autopar.parameter}) -> (tensor<32x8xf32>, tensor<f32>) {
    %h = stablehlo.dot_general %x, %w0, contracting_dims = [1] x [0] : (tensor<32x8xf32>, tensor<8x8xf32>) -> tensor<32x8xf32>
    %a = stablehlo.tanh %h : tensor<32x8xf32>
    %o = stablehlo.dot_general %a, %w1, contracting_dims = [1] x [0] : (tensor<32x8xf32>, tensor<8x8xf32>) -> tensor<32x8xf32>
    %n = stablehlo.constant dense<32.0> : tensor<f32>
    return %o, %n : tensor<32x8xf32>, tensor<f32>
  }
}
