// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-fold-transposes{nope=1})' -o %t.out 2>&1 | filecheck %s
// RUN: not test -e %t.out

// CHECK: autopar-opt: error: pass 'autopar-fold-transposes' has no option 'nope'
func.func @main(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  return %arg0 : tensor<2xf32>
}
