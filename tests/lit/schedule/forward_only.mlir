// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 micro-batches=2 stage-cost=analytic schedule=zb-h1},autopar-schedule{schedule=zb-h1})' | filecheck %s
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 micro-batches=2 stage-cost=analytic},autopar-schedule{schedule=gpipe})' | filecheck %s --check-prefix=GPIPE

// A forward-only program (an evaluation step: a 2-layer tanh MLP) has no backward to split, so
// ZB-H1, like every schedule, runs its forwards in the schedule's order.
// CHECK: autopar.schedule = {micro_batches = 2 : i64, name = "zb-h1", programs = {{\[}}["forward:0:0", "forward:0:1"], ["forward:1:0", "forward:1:1"]]}
// GPIPE: autopar.schedule = {micro_batches = 2 : i64, name = "gpipe", programs = {{\[}}["forward:0:0", "forward:0:1"], ["forward:1:0", "forward:1:1"]]}
module @jit_evaluate {
  func.func public @main(%arg0: tensor<8x8xf32>, %arg1: tensor<8x8xf32>, %arg2: tensor<4x8xf32>) -> (tensor<4x8xf32> {jax.result_info = "result"}) {
    %0 = stablehlo.dot_general %arg2, %arg0, contracting_dims = [1] x [0] : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32> loc(#loc1)
    %1 = stablehlo.tanh %0 : tensor<4x8xf32> loc(#loc2)
    %2 = stablehlo.dot_general %1, %arg1, contracting_dims = [1] x [0] : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32> loc(#loc1)
    %3 = stablehlo.tanh %2 : tensor<4x8xf32> loc(#loc2)
    return %3 : tensor<4x8xf32>
  }
}
#loc1 = loc("jit(evaluate)/dot_general")
#loc2 = loc("jit(evaluate)/tanh")
