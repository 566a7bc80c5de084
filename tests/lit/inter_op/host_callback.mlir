// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 device-flops=1e6})' | filecheck %s
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-pipeshard{cluster=1x2 layers=2})' | filecheck %s --check-prefix=PIPESHARD

// A host callback (`jax.debug.print`) arrives placed on a maximal mesh of device 0. The stages are planned
// unsharded and each runs on a submesh of its own, so the pass keeps the callback in its stage with the
// mark autopar.host_callback instead, and drops the maximal mesh; the runtime places the callback on its
// stage's first device when it compiles the stage (before, the pass stopped on "unknown mesh:
// @maximal_mesh_0").
// A callback that reads only constants (a print in an unrolled loop) is read by nobody; it stays in its
// layer's stage rather than vanishing with the ops no stage reads (before, outlining erased it).
// CHECK-NOT:   @maximal_mesh_0
// CHECK-LABEL: func.func private @stage_1_forward
// CHECK:         stablehlo.custom_call @xla_ffi_python_cpu_callback
// CHECK-SAME:      autopar.host_callback
// CHECK-NOT:       sdy.sharding
// CHECK-SAME:      : (tensor<f32>) -> ()
// CHECK:         %[[ONE:.*]] = stablehlo.constant {{.*}}dense<1.000000e+00>
// CHECK:         stablehlo.custom_call @xla_ffi_python_cpu_callback(%[[ONE]])
// CHECK-SAME:      autopar.host_callback
// CHECK-NOT:   @maximal_mesh_0

// Planning every stage after it leaves the mark and the callback as they are.
// PIPESHARD-NOT: @maximal_mesh_0
// PIPESHARD:     stablehlo.custom_call @xla_ffi_python_cpu_callback
// PIPESHARD-SAME:  autopar.host_callback
// PIPESHARD-NOT:   sdy.sharding_per_value
// PIPESHARD-SAME:  : (tensor<f32>) -> ()
// PIPESHARD-NOT: @maximal_mesh_0
module {
  sdy.mesh @maximal_mesh_0 = <[], device_ids=[0]>
  func.func public @main(%x: tensor<32x8xf32> {autopar.batch}, %w0: tensor<8x8xf32> {autopar.parameter}, %w1: tensor<8x8xf32> {autopar.parameter}) -> (tensor<32x8xf32>) {
    %h = stablehlo.dot_general %x, %w0, contracting_dims = [1] x [0] : (tensor<32x8xf32>, tensor<8x8xf32>) -> tensor<32x8xf32>
    %a = stablehlo.tanh %h : tensor<32x8xf32>
    %o = stablehlo.dot_general %a, %w1, contracting_dims = [1] x [0] : (tensor<32x8xf32>, tensor<8x8xf32>) -> tensor<32x8xf32>
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %s = stablehlo.reduce(%o init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<32x8xf32>, tensor<f32>) -> tensor<f32>
    stablehlo.custom_call @xla_ffi_python_cpu_callback(%s) {backend_config = "", has_side_effect = true, mhlo.backend_config = {index = 0 : ui64}, operand_layouts = [dense<> : tensor<0xindex>], result_layouts = [], sdy.sharding = #sdy.sharding_per_value<[<@maximal_mesh_0, []>]>} : (tensor<f32>) -> ()
    %step = stablehlo.constant dense<1.0> : tensor<f32>
    stablehlo.custom_call @xla_ffi_python_cpu_callback(%step) {backend_config = "", has_side_effect = true, mhlo.backend_config = {index = 1 : ui64}, operand_layouts = [dense<> : tensor<0xindex>], result_layouts = [], sdy.sharding = #sdy.sharding_per_value<[<@maximal_mesh_0, []>]>} : (tensor<f32>) -> ()
    return %o : tensor<32x8xf32>
  }
}
