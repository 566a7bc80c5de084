// A callee's result the caller drops is dead once inlined (flax's nn.RNN computes its last carry even
// when only its outputs are read): its ops go, a chain of them included, as XLA would drop them. Ops
// with effects (a host callback's custom_call) stay; keep-dead-ops keeps everything.
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-inline)' | filecheck %s
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-inline{keep-dead-ops=true})' | filecheck %s --check-prefix=KEEP

// CHECK-LABEL: func.func public @main
// CHECK-NEXT:    %[[Y:.*]] = stablehlo.tanh %arg0
// CHECK-NEXT:    stablehlo.custom_call @host_callback(%arg0) {has_side_effect = true}
// CHECK-NEXT:    return %[[Y]]
// KEEP-LABEL: func.func public @main
// KEEP:         stablehlo.tanh
// KEEP:         stablehlo.gather
// KEEP:         stablehlo.negate
// KEEP:         stablehlo.exponential
func.func public @main(%arg0: tensor<8x4xf32>, %arg1: tensor<8x1xi32>) -> tensor<8x4xf32> {
  %0:2 = call @outputs_and_last(%arg0, %arg1) : (tensor<8x4xf32>, tensor<8x1xi32>) -> (tensor<8x4xf32>, tensor<8x4xf32>)
  %1 = stablehlo.exponential %arg0 : tensor<8x4xf32>
  stablehlo.custom_call @host_callback(%arg0) {has_side_effect = true} : (tensor<8x4xf32>) -> ()
  return %0#0 : tensor<8x4xf32>
}
func.func private @outputs_and_last(%arg0: tensor<8x4xf32>, %arg1: tensor<8x1xi32>) -> (tensor<8x4xf32>, tensor<8x4xf32>) {
  %0 = stablehlo.tanh %arg0 : tensor<8x4xf32>
  %1 = "stablehlo.gather"(%0, %arg1) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, slice_sizes = array<i64: 1, 4>}> : (tensor<8x4xf32>, tensor<8x1xi32>) -> tensor<8x4xf32>
  %2 = stablehlo.negate %1 : tensor<8x4xf32>
  return %0, %2 : tensor<8x4xf32>, tensor<8x4xf32>
}
