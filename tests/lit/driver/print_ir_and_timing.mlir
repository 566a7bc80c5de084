// RUN: autopar-opt %s --mlir-print-ir-before-all --mlir-print-ir-after-all --mlir-timing --pass-pipeline='builtin.module(autopar-inline,cse)' 2>&1 >/dev/null | filecheck %s

// CHECK: IR Dump Before autopar-inline
// CHECK: call @id
// CHECK: IR Dump After autopar-inline
// CHECK-NOT: call @id
// CHECK: IR Dump Before CSE
// CHECK: IR Dump After CSE
// CHECK: Execution time report
// CHECK: autopar-inline
// CHECK: CSEPass
func.func public @main(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = call @id(%arg0) : (tensor<2xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32>
}
func.func private @id(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  return %arg0 : tensor<2xf32>
}
