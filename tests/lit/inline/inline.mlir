// RUN: autopar-opt %s --split-input-file --pass-pipeline='builtin.module(autopar-inline)' | filecheck %s
// RUN: autopar-opt %s --split-input-file --pass-pipeline='builtin.module(autopar-inline{keep-dead-funcs=true})' | filecheck %s --check-prefix=KEEP
// RUN: autopar-opt %s --split-input-file --mlir-print-debuginfo --pass-pipeline='builtin.module(autopar-inline)' | filecheck %s --check-prefix=LOC

// Nested calls are inlined innermost first; the dead private funcs are erased.
// CHECK-LABEL: func.func public @main
// CHECK-NOT:     call
// CHECK:         %[[MAX:.*]] = stablehlo.maximum %arg0
// CHECK:         %[[NEG:.*]] = stablehlo.negate %[[MAX]]
// CHECK:         stablehlo.add %[[NEG]], %[[NEG]]
// CHECK-NOT:   func.func private
// KEEP-LABEL: func.func public @main
// KEEP-NOT:     call @
// KEEP:       func.func private @relu_neg(
// KEEP:       func.func private @relu(
// The inlined op keeps the location of the callee's op, as a call site of the call's location.
// LOC: stablehlo.maximum {{.*}} loc(#[[L:loc[0-9]*]])
// LOC: #[[NAMED:loc[0-9]*]] = loc("relu/max"
// LOC: #[[SITE:loc[0-9]*]] = loc(callsite(#[[NAMED]] at
// LOC: #[[L]] = loc({{.*}}(#[[SITE]]))
func.func public @main(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %0 = call @relu_neg(%arg0) : (tensor<4xf32>) -> tensor<4xf32>
  %1 = stablehlo.add %0, %0 : tensor<4xf32>
  return %1 : tensor<4xf32>
}
func.func private @relu_neg(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %0 = call @relu(%arg0) : (tensor<4xf32>) -> tensor<4xf32>
  %1 = stablehlo.negate %0 : tensor<4xf32>
  return %1 : tensor<4xf32>
}
func.func private @relu(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %cst = stablehlo.constant dense<0.0> : tensor<4xf32>
  %0 = stablehlo.maximum %arg0, %cst : tensor<4xf32> loc("relu/max")
  return %0 : tensor<4xf32>
}

// -----

// A module without calls is left unchanged, public functions are never erased.
// CHECK-LABEL: func.func public @other
// CHECK-NEXT:    stablehlo.abs
// CHECK-LABEL: func.func public @main
// CHECK-NEXT:    stablehlo.abs
func.func public @other(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = stablehlo.abs %arg0 : tensor<2xf32>
  return %0 : tensor<2xf32>
}
func.func public @main(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = stablehlo.abs %arg0 : tensor<2xf32>
  return %0 : tensor<2xf32>
}

// -----

// A callee used at two sites is inlined at both.
// CHECK-LABEL: func.func public @main
// CHECK-COUNT-2: stablehlo.sine
// CHECK-NOT:   func.func private @sin
func.func public @main(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = call @sin(%arg0) : (tensor<2xf32>) -> tensor<2xf32>
  %1 = call @sin(%0) : (tensor<2xf32>) -> tensor<2xf32>
  return %1 : tensor<2xf32>
}
func.func private @sin(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = stablehlo.sine %arg0 : tensor<2xf32>
  return %0 : tensor<2xf32>
}
