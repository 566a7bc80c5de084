// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-reshard)' | filecheck %s
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-reshard{local-all-gather=false link-alpha=1.0 link-beta=0.5})' | filecheck %s --check-prefix=NOGATHER
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 num-stages=2 stage-cost=analytic},autopar-shard-stages,autopar-reshard)' | filecheck %s --check-prefix=PIPE

// Stage 0 on devices 0-1 splits dim 0 over "x"; stage 1 on devices 2-3 replicates its argument, so with
// the local all-gather each half is sent once (device 0 -> 2, 1 -> 3) and devices 2, 3 all-gather it.
// The value is read twice by stage 1 with one layout: one transfer. Stage 2's mesh lists its devices
// in the order 5, 4 (sdy device ids [1, 0] over autopar.mesh devices 4, 5) and splits dim 1.
// CHECK-LABEL: func.func public @main
// CHECK:      %[[X:.*]] = call @stage_0_forward(%arg0)
// CHECK-NEXT: %[[T1:.*]] = stablehlo.custom_call @autopar.transfer(%[[X]]) {autopar.transfer = {bytes = 64 : i64, dst = {devices = array<i64: 2, 3>, dim_axes = [array<i64>, array<i64>], mesh = array<i64: 2>, stage = 1 : i64}, gather_groups = {{\[}}array<i64: 2, 3>], seconds = {{[0-9.E+-]+}} : f64, sends = [{dst = 2 : i64, limit = array<i64: 2, 4>, src = 0 : i64, start = array<i64: 0, 0>}, {dst = 3 : i64, limit = array<i64: 4, 4>, src = 1 : i64, start = array<i64: 2, 0>}], shape = array<i64: 4, 4>, src = {devices = array<i64: 0, 1>, dim_axes = [array<i64: 0>, array<i64>], mesh = array<i64: 2>, stage = 0 : i64}}} : (tensor<4x4xf32>) -> tensor<4x4xf32>
// CHECK-NEXT: %[[Y:[0-9]+]]:2 = call @stage_1_forward(%[[T1]], %[[T1]])
// CHECK-NEXT: %[[T2:.*]] = stablehlo.custom_call @autopar.transfer(%[[X]]) {autopar.transfer = {bytes = 64 : i64, dst = {devices = array<i64: 5, 4>, dim_axes = [array<i64>, array<i64: 0>], mesh = array<i64: 2>, stage = 2 : i64}, gather_groups = [], seconds = {{.*}}, sends = [{dst = 5 : i64, limit = array<i64: 2, 2>, src = 0 : i64, start = array<i64: 0, 0>}, {dst = 5 : i64, limit = array<i64: 4, 2>, src = 1 : i64, start = array<i64: 2, 0>}, {dst = 4 : i64, limit = array<i64: 2, 4>, src = 0 : i64, start = array<i64: 0, 2>}, {dst = 4 : i64, limit = array<i64: 4, 4>, src = 1 : i64, start = array<i64: 2, 2>}]
// CHECK-NEXT: %[[T3:.*]] = stablehlo.custom_call @autopar.transfer(%[[Y]]#1) {autopar.transfer = {bytes = {{.*}} stage = 2 : i64}, {{.*}} stage = 1 : i64
// CHECK-NEXT: call @stage_2_forward(%[[T2]], %[[T3]])
// A value read by its own stage stays as it is.
// CHECK-NEXT: call @stage_1_backward(%[[Y]]#0)
// CHECK-NEXT: return

// Without the all-gather every replica receives its whole tile; alpha and beta price the plan.
// NOGATHER: %[[T1:.*]] = stablehlo.custom_call @autopar.transfer({{.*}}) {autopar.transfer = {bytes = 128 : i64, dst = {devices = array<i64: 2, 3>, {{.*}} gather_groups = [], seconds = 3.400000e+01 : f64, sends = [{dst = 2 : i64, limit = array<i64: 2, 4>, src = 0 : i64, start = array<i64: 0, 0>}, {dst = 2 : i64, limit = array<i64: 4, 4>, src = 1 : i64, start = array<i64: 2, 0>}, {dst = 3 : i64, limit = array<i64: 2, 4>, src = 0 : i64, start = array<i64: 0, 0>}, {dst = 3 : i64, limit = array<i64: 4, 4>, src = 1 : i64, start = array<i64: 2, 0>}]

// The pipeline's modules: the activation goes forward and its cotangent back, each through a transfer.
// PIPE-LABEL: func.func public @main
// PIPE:      %[[A:.*]] = call @stage_0_forward(
// PIPE-NEXT: %[[TA:.*]] = stablehlo.custom_call @autopar.transfer(%[[A]]) {autopar.transfer = {bytes = {{.*}} src = {devices = array<i64: 0, 1, 2, 3>, {{.*}} stage = 0 : i64
// PIPE-NEXT: %[[F:.*]]:{{[0-9]+}} = call @stage_1_forward(%[[TA]],
// PIPE-NEXT: %[[B:.*]]:2 = call @stage_1_backward(
// PIPE-NEXT: %[[TB:.*]] = stablehlo.custom_call @autopar.transfer(%[[B]]#1) {autopar.transfer = {bytes = {{.*}} stage = 0 : i64}, {{.*}} stage = 1 : i64
// PIPE-NEXT: call @stage_0_backward(%[[TB]],

sdy.mesh @stage_0_mesh = <["x"=2]>
sdy.mesh @stage_1_mesh = <["x"=2]>
sdy.mesh @stage_2_mesh = <["x"=2], device_ids=[1, 0]>
func.func public @main(%arg0: tensor<4x4xf32>) -> tensor<4x4xf32> {
  %0 = call @stage_0_forward(%arg0) : (tensor<4x4xf32>) -> tensor<4x4xf32>
  %1:2 = call @stage_1_forward(%0, %0) : (tensor<4x4xf32>, tensor<4x4xf32>) -> (tensor<4x4xf32>, tensor<4x4xf32>)
  %2 = call @stage_2_forward(%0, %1#1) : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
  %3 = call @stage_1_backward(%1#0) : (tensor<4x4xf32>) -> tensor<4x4xf32>
  return %2 : tensor<4x4xf32>
}
func.func private @stage_0_forward(%arg0: tensor<4x4xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, [{"x"}, {}]>}) -> (tensor<4x4xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, [{"x"}, {}]>}) attributes {autopar.mesh = {device_ids = array<i64: 0, 1>, logical_shape = array<i64: 2, 1>, shape = array<i64: 1, 2>}, autopar.part = "forward", autopar.stage = 0 : i64} {
  return %arg0 : tensor<4x4xf32>
}
func.func private @stage_1_forward(%arg0: tensor<4x4xf32> {sdy.sharding = #sdy.sharding<@stage_1_mesh, [{}, {}]>}, %arg1: tensor<4x4xf32> {sdy.sharding = #sdy.sharding<@stage_1_mesh, [{}, {}]>}) -> (tensor<4x4xf32> {sdy.sharding = #sdy.sharding<@stage_1_mesh, [{}, {}]>}, tensor<4x4xf32> {sdy.sharding = #sdy.sharding<@stage_1_mesh, [{}, {}]>}) attributes {autopar.mesh = {device_ids = array<i64: 2, 3>, logical_shape = array<i64: 2, 1>, shape = array<i64: 1, 2>}, autopar.part = "forward", autopar.stage = 1 : i64} {
  return %arg0, %arg1 : tensor<4x4xf32>, tensor<4x4xf32>
}
func.func private @stage_2_forward(%arg0: tensor<4x4xf32> {sdy.sharding = #sdy.sharding<@stage_2_mesh, [{}, {"x"}]>}, %arg1: tensor<4x4xf32> {sdy.sharding = #sdy.sharding<@stage_2_mesh, [{}, {"x"}]>}) -> (tensor<4x4xf32> {sdy.sharding = #sdy.sharding<@stage_2_mesh, [{}, {"x"}]>}) attributes {autopar.mesh = {device_ids = array<i64: 4, 5>, logical_shape = array<i64: 2, 1>, shape = array<i64: 1, 2>}, autopar.part = "forward", autopar.stage = 2 : i64} {
  return %arg0 : tensor<4x4xf32>
}
func.func private @stage_1_backward(%arg0: tensor<4x4xf32> {sdy.sharding = #sdy.sharding<@stage_1_mesh, [{"x"}, {}]>}) -> (tensor<4x4xf32> {sdy.sharding = #sdy.sharding<@stage_1_mesh, [{"x"}, {}]>}) attributes {autopar.mesh = {device_ids = array<i64: 2, 3>, logical_shape = array<i64: 2, 1>, shape = array<i64: 1, 2>}, autopar.part = "backward", autopar.stage = 1 : i64} {
  return %arg0 : tensor<4x4xf32>
}
