// A pipeline mixing autopar's pass with jaxlib's canonicalize, cse and a nested Shardy pass.
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-inline,canonicalize,cse,func.func(sdy-populate-op-sharding-rules))' | filecheck %s
// The same pipeline from stdin, written to a file with -o.
// RUN: autopar-opt - --pass-pipeline='builtin.module(autopar-inline,cse)' -o %t.mlir < %s && filecheck %s --check-prefix=STDIN < %t.mlir

// CHECK-LABEL: func.func public @main
// CHECK-NOT:     call
// CHECK:         %[[DOT:.*]] = stablehlo.dot_general %arg0, %arg1{{.*}}sdy.sharding_rule = #sdy.op_sharding_rule<([i, k], [k, j])->([i, j]) {i=4, j=16, k=8} reduction={k}>
// CHECK:         %[[MAX:.*]] = stablehlo.maximum %[[DOT]]{{.*}}sdy.sharding_rule
// cse merged the two identical adds into one.
// CHECK:         %[[ADD:.*]] = stablehlo.add %[[MAX]], %[[MAX]]
// CHECK-NOT:     stablehlo.add
// CHECK:         stablehlo.multiply %[[ADD]], %[[ADD]]
// CHECK-NOT:   func.func private @relu
// STDIN-LABEL: func.func public @main
// STDIN-COUNT-1: stablehlo.add
// STDIN-NOT:   call @relu
func.func public @main(%arg0: tensor<4x8xf32>, %arg1: tensor<8x16xf32>) -> tensor<4x16xf32> {
  %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<4x8xf32>, tensor<8x16xf32>) -> tensor<4x16xf32>
  %1 = call @relu(%0) : (tensor<4x16xf32>) -> tensor<4x16xf32>
  %2 = stablehlo.add %1, %1 : tensor<4x16xf32>
  %3 = stablehlo.add %1, %1 : tensor<4x16xf32>
  %4 = stablehlo.multiply %2, %3 : tensor<4x16xf32>
  return %4 : tensor<4x16xf32>
}
func.func private @relu(%arg0: tensor<4x16xf32>) -> tensor<4x16xf32> {
  %cst = stablehlo.constant dense<0.0> : tensor<4x16xf32>
  %0 = stablehlo.maximum %arg0, %cst : tensor<4x16xf32>
  return %0 : tensor<4x16xf32>
}
