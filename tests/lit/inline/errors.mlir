// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-inline)' -o %t.out 2>&1 | filecheck %s
// RUN: not test -e %t.out

// CHECK: autopar-opt: error: pass 'autopar-inline' failed: {{.*}}inline/errors.mlir:11:8: recursive call to @loop cannot be inlined
// CHECK: note: its input IR is saved in {{.*}}.before-autopar-inline.mlir; reproduce with: autopar-opt {{.*}} --pass-pipeline='builtin.module(autopar-inline)'
func.func public @main(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = call @loop(%arg0) : (tensor<2xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32>
}
func.func private @loop(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = call @loop(%arg0) : (tensor<2xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32>
}
