// JAX writes meshes without axes into modules that shard nothing: @empty_mesh with a constraint for a
// typed PRNG key argument, @maximal_mesh_0 for the device a jax.debug.print callback runs on. The pass
// plans such modules: the empty mesh and its constraint go, the maximal mesh and the callback stay.
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8})' | filecheck %s

// CHECK-NOT: @empty_mesh
// CHECK: sdy.mesh @mesh = <["x"=8]>
// CHECK: sdy.mesh @maximal_mesh_0 = <[], device_ids=[0]>
// CHECK: func.func public @main(%arg0: tensor<2xui32> {sdy.sharding = #sdy.sharding<@mesh, [{}]>}
// CHECK-NOT: @empty_mesh
// CHECK: stablehlo.custom_call @xla_ffi_python_cpu_callback
// CHECK-SAME: sdy.sharding = #sdy.sharding_per_value<[<@maximal_mesh_0, []>]>
module @jit_f attributes {mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32} {
  sdy.mesh @empty_mesh = <[]>
  sdy.mesh @maximal_mesh_0 = <[], device_ids=[0]>
  func.func public @main(%arg0: tensor<2xui32>, %arg1: tensor<64x32xf32> {autopar.batch}) -> (tensor<2xui32>, tensor<64x32xf32>) {
    %0 = sdy.sharding_constraint %arg0 <@empty_mesh, [{}]> : tensor<2xui32>
    %cst = stablehlo.constant dense<0.000000e+00> : tensor<f32>
    %1 = stablehlo.reduce(%arg1 init: %cst) applies stablehlo.add across dimensions = [0, 1] : (tensor<64x32xf32>, tensor<f32>) -> tensor<f32>
    stablehlo.custom_call @xla_ffi_python_cpu_callback(%1) {backend_config = "", has_side_effect = true, mhlo.backend_config = {index = 0 : ui64}, operand_layouts = [dense<> : tensor<0xindex>], result_layouts = [], sdy.sharding = #sdy.sharding_per_value<[<@maximal_mesh_0, []>]>} : (tensor<f32>) -> ()
    %2 = stablehlo.add %arg1, %arg1 : tensor<64x32xf32>
    return %0, %2 : tensor<2xui32>, tensor<64x32xf32>
  }
}
