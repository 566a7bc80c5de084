// When a pass fails: one error line with the location, the IR the pass started from saved next to the
// output, a one-line reproducer, exit code 1, and no output file.
// RUN: rm -rf %t && mkdir -p %t
// RUN: not autopar-opt %s --load-pass-plugin=%inputs/failing_plugin.py --pass-pipeline='builtin.module(autopar-inline,test-fail-on-multiply)' -o %t/out.mlir 2>&1 | filecheck %s
// RUN: not test -e %t/out.mlir
// The saved IR is the input of the failing pass (already inlined), and the reproducer reproduces.
// RUN: filecheck %s --check-prefix=SAVED < %t/out.before-test-fail-on-multiply.mlir
// RUN: not autopar-opt %t/out.before-test-fail-on-multiply.mlir --load-pass-plugin=%inputs/failing_plugin.py --pass-pipeline='builtin.module(test-fail-on-multiply)' 2>&1 | filecheck %s --check-prefix=REPRO

// CHECK: autopar-opt: error: pass 'test-fail-on-multiply' failed: {{.*}}pass_failure.mlir:20:8: multiply is not allowed here; rewrite it as an add
// CHECK-NEXT: autopar-opt: note: its input IR is saved in {{.*}}out.before-test-fail-on-multiply.mlir; reproduce with: autopar-opt {{.*}}out.before-test-fail-on-multiply.mlir --pass-pipeline='builtin.module(test-fail-on-multiply)'
// SAVED-NOT: call @
// SAVED: stablehlo.multiply
// REPRO: multiply is not allowed here
func.func public @main(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = call @square(%arg0) : (tensor<2xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32>
}
func.func private @square(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = stablehlo.multiply %arg0, %arg0 : tensor<2xf32>
  return %0 : tensor<2xf32>
}
