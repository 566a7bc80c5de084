// RUN: autopar-opt %s --split-input-file --pass-pipeline='builtin.module(autopar-fold-transposes)' | filecheck %s
// RUN: autopar-opt %s --split-input-file --mlir-print-debuginfo --pass-pipeline='builtin.module(autopar-fold-transposes)' | filecheck %s --check-prefix=LOC

// A weight gradient as JAX writes it: the transpose only swaps the operands' free dims, so it folds into
// the dot, whose operands and precisions swap; the folded dot keeps the dot's location.
// CHECK-LABEL: func.func @weight_gradient
// CHECK-NEXT:    %[[D:.*]] = stablehlo.dot_general %arg1, %arg0, contracting_dims = [0] x [0], precision = [HIGHEST, DEFAULT] : (tensor<256x8xf32>, tensor<256x16xf32>) -> tensor<8x16xf32>
// CHECK-NEXT:    return %[[D]]
// LOC-LABEL: func.func @weight_gradient
// LOC:         stablehlo.dot_general {{.*}} loc(#[[DOTLOC:loc[0-9]*]])
// LOC:         #[[DOTLOC]] = loc("grad.py":3:4)
func.func @weight_gradient(%dy: tensor<256x16xf32>, %x: tensor<256x8xf32>) -> tensor<8x16xf32> {
  %0 = stablehlo.dot_general %dy, %x, contracting_dims = [0] x [0], precision = [DEFAULT, HIGHEST] : (tensor<256x16xf32>, tensor<256x8xf32>) -> tensor<16x8xf32> loc("grad.py":3:4)
  %1 = stablehlo.transpose %0, dims = [1, 0] : (tensor<16x8xf32>) -> tensor<8x16xf32> loc("grad.py":5:6)
  return %1 : tensor<8x16xf32>
}

// -----

// Batch dims stay first: (batch, lhs free, rhs free) read as (batch, rhs free, lhs free).
// CHECK-LABEL: func.func @batched
// CHECK-NEXT:    %[[D:.*]] = stablehlo.dot_general %arg1, %arg0, batching_dims = [0] x [0], contracting_dims = [1] x [2] : (tensor<4x32x8xf32>, tensor<4x16x32xf32>) -> tensor<4x8x16xf32>
// CHECK-NEXT:    return %[[D]]
func.func @batched(%a: tensor<4x16x32xf32>, %b: tensor<4x32x8xf32>) -> tensor<4x8x16xf32> {
  %0 = stablehlo.dot_general %a, %b, batching_dims = [0] x [0], contracting_dims = [2] x [1] : (tensor<4x16x32xf32>, tensor<4x32x8xf32>) -> tensor<4x16x8xf32>
  %1 = stablehlo.transpose %0, dims = [0, 2, 1] : (tensor<4x16x8xf32>) -> tensor<4x8x16xf32>
  return %1 : tensor<4x8x16xf32>
}

// -----

// Left alone: a dot with another user (folding would compute it twice), a permutation that is not the
// operand swap (it mixes one operand's free dims), and a transpose of something else.
// CHECK-LABEL: func.func @kept
// CHECK:         %[[D:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK-NEXT:    stablehlo.transpose %[[D]], dims = [1, 0]
// CHECK:         %[[E:.*]] = stablehlo.dot_general %arg2, %arg3
// CHECK-NEXT:    stablehlo.transpose %[[E]], dims = [1, 0, 2]
// CHECK:         stablehlo.transpose %arg0, dims = [1, 0]
func.func @kept(%dy: tensor<256x16xf32>, %x: tensor<256x8xf32>, %a: tensor<6x4x32xf32>, %b: tensor<32x8xf32>)
    -> (tensor<8x16xf32>, tensor<16x8xf32>, tensor<4x6x8xf32>, tensor<16x256xf32>) {
  %0 = stablehlo.dot_general %dy, %x, contracting_dims = [0] x [0] : (tensor<256x16xf32>, tensor<256x8xf32>) -> tensor<16x8xf32>
  %1 = stablehlo.transpose %0, dims = [1, 0] : (tensor<16x8xf32>) -> tensor<8x16xf32>
  %2 = stablehlo.dot_general %a, %b, contracting_dims = [2] x [0] : (tensor<6x4x32xf32>, tensor<32x8xf32>) -> tensor<6x4x8xf32>
  %3 = stablehlo.transpose %2, dims = [1, 0, 2] : (tensor<6x4x8xf32>) -> tensor<4x6x8xf32>
  %4 = stablehlo.transpose %dy, dims = [1, 0] : (tensor<256x16xf32>) -> tensor<16x256xf32>
  return %1, %0, %3, %4 : tensor<8x16xf32>, tensor<16x8xf32>, tensor<4x6x8xf32>, tensor<16x256xf32>
}

// -----

// The transpose's own marks (a micro-batch label, say) go to the folded dot, which now makes its value.
// CHECK-LABEL: func.func @marked
// CHECK-NEXT:    stablehlo.dot_general %arg1, %arg0, {{.*}}{autopar.micro_batch = ["sum"]}
func.func @marked(%dy: tensor<256x16xf32>, %x: tensor<256x8xf32>) -> tensor<8x16xf32> {
  %0 = stablehlo.dot_general %dy, %x, contracting_dims = [0] x [0] {autopar.micro_batch = ["other"]} : (tensor<256x16xf32>, tensor<256x8xf32>) -> tensor<16x8xf32>
  %1 = stablehlo.transpose %0, dims = [1, 0] {autopar.micro_batch = ["sum"]} : (tensor<16x8xf32>) -> tensor<8x16xf32>
  return %1 : tensor<8x16xf32>
}
