// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-unroll-loops)' | filecheck %s
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-unroll-loops{max-unrolled-ops=20})' | filecheck %s --check-prefix=BUDGET
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-unroll-loops{max-unrolled-ops=-1})' 2>&1 | filecheck %s --check-prefix=NEGATIVE

// @scan: a lax.scan over 3 stacked 16x16 weights. Its body is written out three times, the counter a
// constant in each copy (each copy slices its own weight), the increments gone, and the counter's result
// is the constant 3. @on_data: a loop whose trip count depends on the data stays a loop.
// CHECK-LABEL: func.func public @scan
// CHECK-NOT:   stablehlo.while
// CHECK:       %[[I0:.*]] = stablehlo.constant dense<0> : tensor<i32>
// CHECK:       stablehlo.dynamic_slice %arg1, %[[I0]],
// CHECK:       %[[H0:.*]] = stablehlo.tanh
// CHECK:       %[[I1:.*]] = stablehlo.constant dense<1> : tensor<i32>
// CHECK:       stablehlo.dynamic_slice %arg1, %[[I1]],
// CHECK:       stablehlo.dot_general %[[H0]],
// CHECK:       %[[I2:.*]] = stablehlo.constant dense<2> : tensor<i32>
// CHECK:       stablehlo.dynamic_slice %arg1, %[[I2]],
// CHECK:       %[[H2:.*]] = stablehlo.tanh
// CHECK-NOT:   stablehlo.add
// CHECK:       %[[N:.*]] = stablehlo.constant dense<3> : tensor<i32>
// CHECK-NEXT:  return %[[N]], %[[H2]]
// CHECK-LABEL: func.func public @on_data
// CHECK:       stablehlo.while

// The copies would add 3 x 7 ops, more than max-unrolled-ops=20: the scan stays a loop.
// BUDGET-LABEL: func.func public @scan
// BUDGET:       stablehlo.while

// NEGATIVE: autopar-opt: error: pass 'autopar-unroll-loops': max-unrolled-ops must be >= 0 (0 unrolls nothing), got -1

func.func public @scan(%x: tensor<8x16xf32>, %w: tensor<3x16x16xf32>) -> (tensor<i32>, tensor<8x16xf32>) {
  %c = stablehlo.constant dense<0> : tensor<i32>
  %0:2 = stablehlo.while(%i = %c, %h = %x) : tensor<i32>, tensor<8x16xf32>
   cond {
    %n = stablehlo.constant dense<3> : tensor<i32>
    %1 = stablehlo.compare LT, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %1 : tensor<i1>
  } do {
    %z = stablehlo.constant dense<0> : tensor<i32>
    %s = stablehlo.dynamic_slice %w, %i, %z, %z, sizes = [1, 16, 16] : (tensor<3x16x16xf32>, tensor<i32>, tensor<i32>, tensor<i32>) -> tensor<1x16x16xf32>
    %r = stablehlo.reshape %s : (tensor<1x16x16xf32>) -> tensor<16x16xf32>
    %d = stablehlo.dot_general %h, %r, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
    %t = stablehlo.tanh %d : tensor<8x16xf32>
    %one = stablehlo.constant dense<1> : tensor<i32>
    %2 = stablehlo.add %i, %one : tensor<i32>
    stablehlo.return %2, %t : tensor<i32>, tensor<8x16xf32>
  }
  return %0#0, %0#1 : tensor<i32>, tensor<8x16xf32>
}

func.func public @on_data(%x: tensor<8x16xf32>) -> tensor<8x16xf32> {
  %0 = stablehlo.while(%h = %x) : tensor<8x16xf32>
   cond {
    %init = stablehlo.constant dense<0xFF800000> : tensor<f32>
    %m = stablehlo.reduce(%h init: %init) applies stablehlo.maximum across dimensions = [0, 1] : (tensor<8x16xf32>, tensor<f32>) -> tensor<f32>
    %half = stablehlo.constant dense<5.000000e-01> : tensor<f32>
    %1 = stablehlo.compare GT, %m, %half, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %1 : tensor<i1>
  } do {
    %half = stablehlo.constant dense<5.000000e-01> : tensor<8x16xf32>
    %1 = stablehlo.multiply %h, %half : tensor<8x16xf32>
    stablehlo.return %1 : tensor<8x16xf32>
  }
  return %0 : tensor<8x16xf32>
}
