// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 num-stages=2 stage-cost=analytic},autopar-shard-stages{zero-stage=3})' | filecheck %s
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 num-stages=2 stage-cost=analytic},autopar-shard-stages)' | filecheck %s --check-prefix=FREE

// Options that restrict parameters (ZeRO, allow-replicated-parameters=false) shard `autopar.parameter`
// arguments. A stage's forward and backward parts are planned alone: the parameters @main passes them are
// marked `autopar.parameter` first (the forward parts read them whole before), and the part is marked
// `autopar.no_updates` so that its activations and gradients are not paired with them as their updates.
// The apply part, which updates them, is planned as before.
// CHECK-LABEL: func.func private @stage_0_forward(%arg0: tensor<4x8xf32> {autopar.batch, sdy.sharding = #sdy.sharding<@stage_0_mesh, [{"x"}, {}]>}, %arg1: tensor<8x8xf32> {autopar.parameter, sdy.sharding = #sdy.sharding<@stage_0_mesh, [{{.*}}"x"{{.*}}]>})
// CHECK-SAME:  autopar.no_updates
// CHECK-LABEL: func.func private @stage_1_forward(%arg0: tensor<4x8xf32> {autopar.batch, sdy.sharding = #sdy.sharding<@stage_1_mesh, [{"x"}, {}]>}, %arg1: tensor<8x8xf32> {autopar.parameter, sdy.sharding = #sdy.sharding<@stage_1_mesh, [{{.*}}"x"{{.*}}]>})
// CHECK-LABEL: func.func private @stage_0_apply(
// CHECK-NOT:   autopar.parameter
// CHECK-SAME:  autopar.part = "apply"

// Without such options nothing is marked.
// FREE-LABEL: func.func private @stage_0_forward(%arg0: tensor<4x8xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, [{{.*}}]>}, %arg1: tensor<8x8xf32> {sdy.sharding
// FREE-NOT:   autopar.no_updates

// The MLP step of Inputs/mlp_step.mlir, its parameters and batch marked as parallelize marks them and the first
// layer's ops labelled.
#loc = loc(unknown)
module @jit_step attributes {mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32} {
  func.func public @main(%arg0: tensor<8x8xf32> {autopar.parameter} loc(unknown), %arg1: tensor<8x8xf32> {autopar.parameter} loc(unknown), %arg2: tensor<4x8xf32> {autopar.batch} loc(unknown)) -> (tensor<f32> {jax.result_info = "result[0]"}, tensor<8x8xf32> {jax.result_info = "result[1][0]"}, tensor<8x8xf32> {jax.result_info = "result[1][1]"}) {
    %0 = stablehlo.dot_general %arg2, %arg0, contracting_dims = [1] x [0], precision = [DEFAULT, DEFAULT] {autopar.micro_batch = ["concat:0"]} : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32> loc(#loc1)
    %1 = stablehlo.tanh %0 {autopar.micro_batch = ["concat:0"]} : tensor<4x8xf32> loc(#loc2)
    %cst = stablehlo.constant dense<1.000000e+00> : tensor<f32> loc(#loc3)
    %2 = stablehlo.broadcast_in_dim %cst, dims = [] : (tensor<f32>) -> tensor<4x8xf32> loc(#loc4)
    %3 = stablehlo.subtract %2, %1 {autopar.micro_batch = ["concat:0"]} : tensor<4x8xf32> loc(#loc4)
    %4 = stablehlo.dot_general %1, %arg1, contracting_dims = [1] x [0], precision = [DEFAULT, DEFAULT] : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32> loc(#loc1)
    %5 = stablehlo.tanh %4 : tensor<4x8xf32> loc(#loc2)
    %cst_0 = stablehlo.constant dense<1.000000e+00> : tensor<f32> loc(#loc3)
    %6 = stablehlo.broadcast_in_dim %cst_0, dims = [] : (tensor<f32>) -> tensor<4x8xf32> loc(#loc4)
    %7 = stablehlo.subtract %6, %5 : tensor<4x8xf32> loc(#loc4)
    %cst_1 = stablehlo.constant dense<0.000000e+00> : tensor<f32> loc(#loc5)
    %8 = stablehlo.reduce(%5 init: %cst_1) applies stablehlo.add across dimensions = [0, 1] : (tensor<4x8xf32>, tensor<f32>) -> tensor<f32> loc(#loc5)
    %cst_2 = stablehlo.constant dense<1.000000e+00> : tensor<f32> loc(#loc3)
    %9 = stablehlo.broadcast_in_dim %cst_2, dims = [] : (tensor<f32>) -> tensor<4x8xf32> loc(#loc6)
    %10 = stablehlo.multiply %9, %7 : tensor<4x8xf32> loc(#loc7)
    %11 = stablehlo.multiply %10, %5 : tensor<4x8xf32> loc(#loc7)
    %12 = stablehlo.add %10, %11 : tensor<4x8xf32> loc(#loc8)
    %13 = stablehlo.dot_general %12, %1, contracting_dims = [0] x [0], precision = [DEFAULT, DEFAULT] : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32> loc(#loc9)
    %14 = stablehlo.transpose %13, dims = [1, 0] : (tensor<8x8xf32>) -> tensor<8x8xf32> loc(#loc10)
    %15 = stablehlo.dot_general %12, %arg1, contracting_dims = [1] x [1], precision = [DEFAULT, DEFAULT] : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32> loc(#loc9)
    %16 = stablehlo.multiply %15, %3 : tensor<4x8xf32> loc(#loc7)
    %17 = stablehlo.multiply %16, %1 : tensor<4x8xf32> loc(#loc7)
    %18 = stablehlo.add %16, %17 : tensor<4x8xf32> loc(#loc8)
    %19 = stablehlo.dot_general %18, %arg2, contracting_dims = [0] x [0], precision = [DEFAULT, DEFAULT] : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32> loc(#loc9)
    %20 = stablehlo.transpose %19, dims = [1, 0] : (tensor<8x8xf32>) -> tensor<8x8xf32> loc(#loc10)
    %cst_3 = stablehlo.constant dense<5.000000e-01> : tensor<f32> loc(#loc3)
    %21 = stablehlo.broadcast_in_dim %cst_3, dims = [] : (tensor<f32>) -> tensor<8x8xf32> loc(#loc11)
    %22 = stablehlo.multiply %21, %20 : tensor<8x8xf32> loc(#loc11)
    %23 = stablehlo.subtract %arg0, %22 : tensor<8x8xf32> loc(#loc12)
    %cst_4 = stablehlo.constant dense<5.000000e-01> : tensor<f32> loc(#loc3)
    %24 = stablehlo.broadcast_in_dim %cst_4, dims = [] : (tensor<f32>) -> tensor<8x8xf32> loc(#loc11)
    %25 = stablehlo.multiply %24, %14 : tensor<8x8xf32> loc(#loc11)
    %26 = stablehlo.subtract %arg1, %25 : tensor<8x8xf32> loc(#loc12)
    return %8, %23, %26 : tensor<f32>, tensor<8x8xf32>, tensor<8x8xf32> loc(#loc3)
  } loc(#loc)
} loc(#loc)
#loc1 = loc("jit(step)/jvp()/dot_general")
#loc2 = loc("jit(step)/jvp()/tanh")
#loc3 = loc("jit(step)")
#loc4 = loc("jit(step)/jvp()/sub")
#loc5 = loc("jit(step)/jvp()/reduce_sum")
#loc6 = loc("jit(step)/transpose(jvp())/broadcast_in_dim")
#loc7 = loc("jit(step)/transpose(jvp())/mul")
#loc8 = loc("jit(step)/transpose(jvp())/add_any")
#loc9 = loc("jit(step)/transpose(jvp())/dot_general")
#loc10 = loc("jit(step)/transpose(jvp())/transpose")
#loc11 = loc("jit(step)/mul")
#loc12 = loc("jit(step)/sub")

