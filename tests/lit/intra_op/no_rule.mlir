// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8})' 2>/dev/null | filecheck %s

// An op Shardy has no sharding rule for (a custom call to an unknown kernel) is kept replicated and
// remarked, naming it and its location. An iota has no rule either, but like a constant every device
// makes it whole and its readers slice it where they need a split: nothing to remark.
// CHECK: autopar.remarks = ["stablehlo.custom_call at {{.*}}:13:8 has no Shardy sharding rule: kept replicated"]
// CHECK: %[[K:.*]] = stablehlo.custom_call @my_kernel
// CHECK-NEXT: sdy.sharding_constraint %[[K]] <@mesh, [{}, {}]>
// CHECK: %[[I:.*]] = stablehlo.iota
// CHECK-NEXT: sdy.sharding_constraint %[[I]] <@mesh, [{}, {}]>
func.func public @main(%arg0: tensor<16x32xf32> {autopar.batch}, %arg1: tensor<32x32xf32> {autopar.parameter}) -> (tensor<16x32xf32>, tensor<16x32xf32>) {
  %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<16x32xf32>, tensor<32x32xf32>) -> tensor<16x32xf32>
  %1 = stablehlo.custom_call @my_kernel(%0) : (tensor<16x32xf32>) -> tensor<16x32xf32>
  %2 = stablehlo.iota dim = 1 : tensor<16x32xi32>
  %3 = stablehlo.convert %2 : (tensor<16x32xi32>) -> tensor<16x32xf32>
  %4 = stablehlo.add %0, %3 : tensor<16x32xf32>
  return %1, %4 : tensor<16x32xf32>, tensor<16x32xf32>
}
