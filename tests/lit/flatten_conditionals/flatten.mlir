// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-flatten-conditionals)' | filecheck %s
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-flatten-conditionals{max-branch-ops=0})' | filecheck %s --check-prefix=NONE
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-flatten-conditionals{max-branch-ops=-2})' 2>&1 | filecheck %s --check-prefix=NEGATIVE

// @cond (lax.cond): both branches are written out before the conditional, and the result is the
// taken branch's, selected on the index.
// CHECK-LABEL: func.func public @cond
// CHECK-NOT:   stablehlo.case
// CHECK:       %[[M:.*]] = stablehlo.multiply %arg0, %arg0
// CHECK:       %[[Z:.*]] = stablehlo.constant dense<0> : tensor<i32>
// CHECK-NEXT:  %[[IS0:.*]] = stablehlo.compare EQ, %arg1, %[[Z]], SIGNED
// CHECK-NEXT:  %[[R:.*]] = stablehlo.select %[[IS0]], %arg0, %[[M]]
// CHECK-NEXT:  return %[[R]]

// @switch (lax.switch, three branches): index 0 and 1 select their branch, anything else the last one.
// CHECK-LABEL: func.func public @switch
// CHECK:       %[[A:.*]] = stablehlo.add %arg0, %arg0
// CHECK:       %[[S:.*]] = stablehlo.subtract %arg0, %arg0
// CHECK:       %[[N:.*]] = stablehlo.negate %arg0
// CHECK:       %[[IS1:.*]] = stablehlo.compare EQ, %arg1, {{.*}}
// CHECK-NEXT:  %[[T:.*]] = stablehlo.select %[[IS1]], %[[S]], %[[N]]
// CHECK:       %[[IS0:.*]] = stablehlo.compare EQ, %arg1, {{.*}}
// CHECK-NEXT:  %[[U:.*]] = stablehlo.select %[[IS0]], %[[A]], %[[T]]
// CHECK-NEXT:  return %[[U]]

// @heavy: a branch with a dot would cost its work on every step when not taken: it stays a conditional.
// CHECK-LABEL: func.func public @heavy
// CHECK:       stablehlo.case

// NONE-LABEL: func.func public @cond
// NONE:       stablehlo.case

// NEGATIVE: autopar-opt: error: pass 'autopar-flatten-conditionals': max-branch-ops must be >= 0 (0 flattens nothing), got -2

func.func public @cond(%arg0: tensor<4xf32>, %arg1: tensor<i32>) -> tensor<4xf32> {
  %0 = "stablehlo.case"(%arg1) ({
    stablehlo.return %arg0 : tensor<4xf32>
  }, {
    %1 = stablehlo.multiply %arg0, %arg0 : tensor<4xf32>
    stablehlo.return %1 : tensor<4xf32>
  }) : (tensor<i32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

func.func public @switch(%arg0: tensor<4xf32>, %arg1: tensor<i32>) -> tensor<4xf32> {
  %0 = "stablehlo.case"(%arg1) ({
    %1 = stablehlo.add %arg0, %arg0 : tensor<4xf32>
    stablehlo.return %1 : tensor<4xf32>
  }, {
    %1 = stablehlo.subtract %arg0, %arg0 : tensor<4xf32>
    stablehlo.return %1 : tensor<4xf32>
  }, {
    %1 = stablehlo.negate %arg0 : tensor<4xf32>
    stablehlo.return %1 : tensor<4xf32>
  }) : (tensor<i32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

func.func public @heavy(%arg0: tensor<4x4xf32>, %arg1: tensor<i32>) -> tensor<4x4xf32> {
  %0 = "stablehlo.case"(%arg1) ({
    stablehlo.return %arg0 : tensor<4x4xf32>
  }, {
    %1 = stablehlo.dot_general %arg0, %arg0, contracting_dims = [1] x [0] : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
    stablehlo.return %1 : tensor<4x4xf32>
  }) : (tensor<i32>) -> tensor<4x4xf32>
  return %0 : tensor<4x4xf32>
}
