// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8 force-batch-dim-to-mesh-dim=0})' | filecheck %s
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8})' --plan-report=%t.txt -o %t.mlir && filecheck %s --check-prefix=REPORT < %t.txt

// A grouped convolution (16 input features in 2 groups) and a depthwise one (16 groups of one channel)
// on a batch split over 8 devices. XLA gathers a grouped convolution's operands and runs it whole under
// any sharding (docs/platform.md), so the pass keeps it replicated and prices the gather of its input as
// XLA compiles it; the depthwise one splits the batch and needs no collective.
// CHECK: autopar.expected_collectives = [{axes = "x", bytes = 131072 : i64, count = 1 : i64, kind = "all-gather"}]
// CHECK-SAME: autopar.remarks = ["stablehlo.convolution at {{.*}}: its 16 input features form 2 groups; XLA runs such a grouped convolution replicated under any sharding, so it is kept replicated"]
// CHECK-LABEL: func.func public @main(
// CHECK-SAME: %arg0: tensor<8x16x16x16xf32> {autopar.batch, sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}, {}, {}]>}
// CHECK-NEXT: %[[A:.*]] = sdy.sharding_constraint %arg0 <@mesh, [{}, {}, {}, {}]>
// CHECK-NEXT: %[[G:.*]] = stablehlo.convolution(%[[A]], %arg1)
// CHECK-SAME: feature_group_count = 2
// CHECK-NEXT: sdy.sharding_constraint %[[G]] <@mesh, [{}, {}, {}, {}]>
// CHECK-NEXT: %[[D:.*]] = stablehlo.convolution(%arg0, %arg2)
// CHECK-SAME: feature_group_count = 16
// CHECK-NEXT: sdy.sharding_constraint %[[D]] <@mesh, [{"x"}, {}, {}, {}]>
// Without the batch forced, the report names the grouped convolution and why it stays whole.
// REPORT: remark: stablehlo.convolution at {{.*}}: its 16 input features form 2 groups; XLA runs such a grouped convolution replicated under any sharding, so it is kept replicated
func.func public @main(%arg0: tensor<8x16x16x16xf32> {autopar.batch}, %arg1: tensor<3x3x8x16xf32> {autopar.parameter},
                       %arg2: tensor<3x3x1x16xf32> {autopar.parameter}) -> (tensor<8x16x16x16xf32>, tensor<8x16x16x16xf32>) {
  %0 = stablehlo.convolution(%arg0, %arg1) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], window = {stride = [1, 1], pad = [[1, 1], [1, 1]], lhs_dilate = [1, 1], rhs_dilate = [1, 1], reverse = [false, false]} {batch_group_count = 1 : i64, feature_group_count = 2 : i64} : (tensor<8x16x16x16xf32>, tensor<3x3x8x16xf32>) -> tensor<8x16x16x16xf32>
  %1 = stablehlo.convolution(%arg0, %arg2) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], window = {stride = [1, 1], pad = [[1, 1], [1, 1]], lhs_dilate = [1, 1], rhs_dilate = [1, 1], reverse = [false, false]} {batch_group_count = 1 : i64, feature_group_count = 16 : i64} : (tensor<8x16x16x16xf32>, tensor<3x3x1x16xf32>) -> tensor<8x16x16x16xf32>
  return %0, %1 : tensor<8x16x16x16xf32>, tensor<8x16x16x16xf32>
}
