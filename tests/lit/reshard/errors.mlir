// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-reshard)' 2>&1 | filecheck %s --check-prefix=ORDER
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-reshard{link-beta=-1})' 2>&1 | filecheck %s --check-prefix=LINK
// RUN: not autopar-opt %s -o %t.mlir --pass-pipeline='builtin.module(autopar-reshard)' 2>&1 | filecheck %s --check-prefix=SPLIT

// ORDER: autopar-opt: error: pass 'autopar-reshard' failed: the module has no stage functions (no autopar.stage) called from @main: run autopar-inter-op (and autopar-shard-stages) before autopar-reshard
// LINK: autopar-opt: error: pass 'autopar-reshard': link-alpha and link-beta must be >= 0 seconds, got {{.*}} and -1.0
// A layout that does not divide the value names the value and both stages.
// SPLIT: autopar-opt: error: pass 'autopar-reshard' failed: {{.*}}errors.mlir:{{[0-9]+}}:{{[0-9]+}}: result 0 of @stage_0_forward (stage 0) read by @stage_1_forward (stage 1) as argument 0: source layout: dim 0 of size 3 does not split into 2

sdy.mesh @stage_0_mesh = <["x"=2]>
func.func public @main(%arg0: tensor<3x4xf32>) -> tensor<3x4xf32> {
  %0 = call @stage_0_forward(%arg0) : (tensor<3x4xf32>) -> tensor<3x4xf32>
  %1 = call @stage_1_forward(%0) : (tensor<3x4xf32>) -> tensor<3x4xf32>
  return %1 : tensor<3x4xf32>
}
func.func private @stage_0_forward(%arg0: tensor<3x4xf32>) -> (tensor<3x4xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, [{"x"}, {}]>}) attributes {autopar.mesh = {device_ids = array<i64: 0, 1>, shape = array<i64: 1, 2>}, autopar.part = "forward", autopar.stage = 0 : i64} {
  return %arg0 : tensor<3x4xf32>
}
func.func private @stage_1_forward(%arg0: tensor<3x4xf32>) -> tensor<3x4xf32> attributes {autopar.mesh = {device_ids = array<i64: 2>, shape = array<i64: 1, 1>}, autopar.part = "forward", autopar.stage = 1 : i64} {
  return %arg0 : tensor<3x4xf32>
}
