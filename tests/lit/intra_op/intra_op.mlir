// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op)' | filecheck %s
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=2x4})' | filecheck %s --check-prefix=MESH2D

// A two-layer MLP with a large batch: data parallel on the default 1x8 mesh, weights replicated.
// CHECK: module attributes {autopar.expected_collectives = [], autopar.lower_bound = {{.*}} : f64, autopar.mesh_shape = array<i64: 1, 8>,
// CHECK-SAME: autopar.objective = {{.*}} : f64, autopar.peak_memory = {{[0-9]+}} : i64,
// CHECK-SAME: autopar.solver_status = "optimal", mhlo.num_partitions = 8 : i32, mhlo.num_replicas = 1 : i32}
// CHECK: sdy.mesh @mesh = <["x"=1, "y"=8]>
// CHECK-LABEL: func.func public @main(
// CHECK-SAME: %arg0: tensor<64x256xf32> {autopar.batch, sdy.sharding = #sdy.sharding<@mesh, [{"y"}, {}]>}
// CHECK-SAME: %arg1: tensor<256x1024xf32> {autopar.parameter, sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// CHECK-SAME: %arg2: tensor<1024x256xf32> {autopar.parameter, sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// CHECK-SAME: -> (tensor<64x256xf32> {jax.result_info = "result", sdy.sharding = #sdy.sharding<@mesh, [{"y"}, {}]>})
// CHECK-NEXT: %[[D0:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK-NOT: sdy.sharding_rule
// CHECK-NEXT: %[[C0:.*]] = sdy.sharding_constraint %[[D0]] <@mesh, [{"y"}, {}]> : tensor<64x1024xf32>
// The elementwise tanh keeps its operand's layout: no constraint needed.
// CHECK-NEXT: %[[T:.*]] = stablehlo.tanh %[[C0]]
// CHECK-NEXT: %[[D1:.*]] = stablehlo.dot_general %[[T]], %arg2
// CHECK-NEXT: %[[C1:.*]] = sdy.sharding_constraint %[[D1]] <@mesh, [{"y"}, {}]>
// CHECK-NEXT: return %[[C1]]

// On a 2-D mesh both axes split the dots (allow-recompute-heavy-op=false): the batch over both, so the
// inference step needs no collective at all.
// MESH2D: autopar.expected_collectives = []
// MESH2D-SAME: autopar.mesh_shape = array<i64: 2, 4>
// MESH2D: sdy.mesh @mesh = <["x"=2, "y"=4]>
// MESH2D: %arg0: tensor<64x256xf32> {autopar.batch, sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// MESH2D: sdy.sharding_constraint %{{.*}} <@mesh, [{"x", "y"}, {}]> : tensor<64x1024xf32>
// MESH2D: sdy.sharding_constraint %{{.*}} <@mesh, [{"x", "y"}, {}]> : tensor<64x256xf32>
func.func public @main(%arg0: tensor<64x256xf32> {autopar.batch}, %arg1: tensor<256x1024xf32> {autopar.parameter},
                       %arg2: tensor<1024x256xf32> {autopar.parameter}) -> (tensor<64x256xf32> {jax.result_info = "result"}) {
  %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<64x256xf32>, tensor<256x1024xf32>) -> tensor<64x1024xf32>
  %1 = stablehlo.tanh %0 : tensor<64x1024xf32>
  %2 = stablehlo.dot_general %1, %arg2, contracting_dims = [1] x [0] : (tensor<64x1024xf32>, tensor<1024x256xf32>) -> tensor<64x256xf32>
  return %2 : tensor<64x256xf32>
}
