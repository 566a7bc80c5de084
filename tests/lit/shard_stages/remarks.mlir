// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 num-stages=2 stage-cost=analytic},autopar-shard-stages)' | filecheck %s

// What autopar-intra-op remarks about a stage's plan stays on that stage's function (the stage module's
// own attributes do not): stage 0 keeps its grouped convolution whole, so its mesh axis splits nothing and
// the remark says why; stage 1's dense layer splits the batch and remarks nothing.
// CHECK-LABEL: func.func private @stage_0_forward
// CHECK-SAME:    autopar.remarks = ["stablehlo.convolution at {{.*}}: its 16 input features form 2 groups; XLA runs such a grouped convolution replicated under any sharding, so it is kept replicated", "mesh axis 'x' (4 devices) splits nothing: no dot or convolution has a dimension that 4 divides, or those that do are kept replicated (see the remarks above)"]
// CHECK-LABEL: func.func private @stage_1_forward
// CHECK-NOT:     autopar.remarks
// CHECK-SAME:    autopar.stage = 1
func.func public @main(%arg0: tensor<8x16x16x16xf32> {autopar.batch}, %arg1: tensor<3x3x8x16xf32> {autopar.parameter},
                       %arg2: tensor<16x16xf32> {autopar.parameter}) -> tensor<8x16x16x16xf32> {
  %0 = stablehlo.convolution(%arg0, %arg1) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], window = {stride = [1, 1], pad = [[1, 1], [1, 1]], lhs_dilate = [1, 1], rhs_dilate = [1, 1], reverse = [false, false]} {batch_group_count = 1 : i64, feature_group_count = 2 : i64} : (tensor<8x16x16x16xf32>, tensor<3x3x8x16xf32>) -> tensor<8x16x16x16xf32>
  %1 = stablehlo.tanh %0 : tensor<8x16x16x16xf32>
  %2 = stablehlo.dot_general %1, %arg2, contracting_dims = [3] x [0] : (tensor<8x16x16x16xf32>, tensor<16x16xf32>) -> tensor<8x16x16x16xf32>
  %3 = stablehlo.tanh %2 : tensor<8x16x16x16xf32>
  return %3 : tensor<8x16x16x16xf32>
}
