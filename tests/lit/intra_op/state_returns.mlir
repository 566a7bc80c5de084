// An updated state returned in another layout than its own (ZeRO-2's moments, planned replicated after a
// step that gathered them, going back to their argument's split) is constrained to its own layout before
// the return: otherwise Shardy carries the result's split backwards through the unconstrained ops before
// it, and XLA gathers the parameters it updates at every later use.
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8 zero-stage=2})' | filecheck %s

// CHECK: %arg2: tensor<256x256xf32> {autopar.parameter, sdy.sharding = #sdy.sharding<@mesh, [[STATE:[^>]*"x"[^>]*]]>}
// CHECK-SAME: -> (tensor<256x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}, tensor<256x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [[STATE]]>})
// The second step's moment update (its multiply reads the constant unconstrained, the first's does not):
// CHECK: stablehlo.multiply %{{[0-9]+}}, %cst
// CHECK-NEXT: %[[M2:[0-9]+]] = stablehlo.add
// CHECK-NEXT: %[[KEPT:[0-9]+]] = sdy.sharding_constraint %[[M2]] <@mesh, [{}, {}]>
// CHECK-NEXT: stablehlo.subtract
// CHECK-NEXT: return %{{[0-9]+}}, %[[KEPT]]
func.func public @main(%x: tensor<64x256xf32> {autopar.batch}, %w0: tensor<256x256xf32> {autopar.parameter},
                       %m0: tensor<256x256xf32> {autopar.parameter}) -> (tensor<256x256xf32>, tensor<256x256xf32>) {
  %c = stablehlo.constant dense<9.0e-01> : tensor<256x256xf32>
  %h0 = stablehlo.dot_general %x, %w0, contracting_dims = [1] x [0] : (tensor<64x256xf32>, tensor<256x256xf32>) -> tensor<64x256xf32>
  %g1 = stablehlo.dot_general %x, %h0, contracting_dims = [0] x [0] : (tensor<64x256xf32>, tensor<64x256xf32>) -> tensor<256x256xf32>
  %a1 = stablehlo.multiply %m0, %c : tensor<256x256xf32>
  %m1 = stablehlo.add %a1, %g1 : tensor<256x256xf32>
  %w1 = stablehlo.subtract %w0, %m1 : tensor<256x256xf32>
  %h1 = stablehlo.dot_general %x, %w1, contracting_dims = [1] x [0] : (tensor<64x256xf32>, tensor<256x256xf32>) -> tensor<64x256xf32>
  %g2 = stablehlo.dot_general %x, %h1, contracting_dims = [0] x [0] : (tensor<64x256xf32>, tensor<64x256xf32>) -> tensor<256x256xf32>
  %a2 = stablehlo.multiply %m1, %c : tensor<256x256xf32>
  %m2 = stablehlo.add %a2, %g2 : tensor<256x256xf32>
  %w2 = stablehlo.subtract %w1, %m2 : tensor<256x256xf32>
  return %w2, %m2 : tensor<256x256xf32>, tensor<256x256xf32>
}
