// ZeRO-2 shards the optimizer-state argument (read only elementwise); prefer-reduce-scatter then leaves the
// gradient reduce-scattered straight into that layout instead of all-reducing it.
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8 zero-stage=2})' | filecheck %s --check-prefix=ZERO2
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8 zero-stage=2 prefer-reduce-scatter})' | filecheck %s --check-prefix=RS

// The state is square, so splitting its rows or its columns costs the same: check the split, not the tie.
// ZERO2: %arg2: tensor<256x256xf32> {autopar.parameter, sdy.sharding = #sdy.sharding<@mesh, {{\[\{"x"\}, \{\}\]|\[\{\}, \{"x"\}\]}}>}
// ZERO2: %[[G:.*]] = stablehlo.dot_general
// ZERO2-NEXT: sdy.sharding_constraint %[[G]] <@mesh, [{}, {}]>

// RS: %arg2: tensor<256x256xf32> {autopar.parameter, sdy.sharding = #sdy.sharding<@mesh, [[STATE:[^>]*"x"[^>]*]]>}
// RS: %[[G:.*]] = stablehlo.dot_general
// RS-NEXT: sdy.sharding_constraint %[[G]] <@mesh, [[STATE]]>
func.func public @main(%arg0: tensor<64x256xf32> {autopar.batch}, %arg1: tensor<64x256xf32> {autopar.batch},
                       %arg2: tensor<256x256xf32> {autopar.parameter}) -> tensor<256x256xf32> {
  %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [0] x [0] : (tensor<64x256xf32>, tensor<64x256xf32>) -> tensor<256x256xf32>
  %1 = stablehlo.add %arg2, %0 : tensor<256x256xf32>
  return %1 : tensor<256x256xf32>
}
