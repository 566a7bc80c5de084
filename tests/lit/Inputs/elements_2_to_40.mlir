// The largest tensors autopar plans: 2^40 elements each (tests/lit/intra_op/huge_shapes.mlir).
func.func public @main(%arg0: tensor<1048576x1048576xf32> {autopar.parameter, autopar.path = "a"},
                       %arg1: tensor<1048576x1048576xf32> {autopar.parameter, autopar.path = "b"}) -> tensor<1048576x1048576xf32> {
  %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<1048576x1048576xf32>, tensor<1048576x1048576xf32>) -> tensor<1048576x1048576xf32>
  return %0 : tensor<1048576x1048576xf32>
}
