// RUN: not autopar-opt %s -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers)' 2>&1 | filecheck %s

// A forward pipeline boundary whose backward marker is missing (the marked value never reached the loss
// that jax.grad differentiated): markers must pair.
// CHECK: error: {{.*}}pipeline markers do not pair: 1 forward boundaries but 0 backward boundaries
module @jit_step {
  func.func public @main(%arg0: tensor<4x8xf32>, %arg1: tensor<8x8xf32>) -> (tensor<f32>, tensor<8x8xf32>) {
    %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32> loc("jit(step)/jvp(f)/dot_general")
    %1 = "stablehlo.optimization_barrier"(%0) {autopar.pipeline_boundary = "forward"} : (tensor<4x8xf32>) -> tensor<4x8xf32> loc("jit(step)/jvp(f)/autopar_pipeline_boundary")
    %2 = stablehlo.dot_general %1, %arg1, contracting_dims = [1] x [0] : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32> loc("jit(step)/jvp(g)/dot_general")
    %cst = stablehlo.constant dense<0.000000e+00> : tensor<f32>
    %3 = stablehlo.reduce(%2 init: %cst) applies stablehlo.add across dimensions = [0, 1] : (tensor<4x8xf32>, tensor<f32>) -> tensor<f32> loc("jit(step)/jvp(g)/reduce_sum")
    %4 = stablehlo.dot_general %1, %2, contracting_dims = [0] x [0] : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32> loc("jit(step)/transpose(jvp(g))/dot_general")
    return %3, %4 : tensor<f32>, tensor<8x8xf32>
  }
}
