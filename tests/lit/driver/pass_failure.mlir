// When a pass fails: one error line with the location, the IR the pass started from saved in a new
// temporary directory (never beside the input or the output), a one-line reproducer, exit code 1, and no
// output file.
// RUN: rm -rf %t && mkdir -p %t/tmp %t/out
// RUN: not env TMPDIR=%t/tmp autopar-opt %s --load-pass-plugin=%inputs/failing_plugin.py --pass-pipeline='builtin.module(autopar-inline,test-fail-on-multiply)' -o %t/out/out.mlir 2>&1 | filecheck %s
// RUN: not test -e %t/out/out.mlir
// RUN: %python -c "import os, sys; sys.exit(len(os.listdir(r'%t/out')))"
// The saved IR is the input of the failing pass (already inlined), and the reproducer reproduces.
// RUN: %python -c "import glob, shutil; shutil.copy(*glob.glob(r'%t/tmp/autopar-repro-*/pass_failure.before-test-fail-on-multiply.mlir'), r'%t/saved.mlir')"
// RUN: filecheck %s --check-prefix=SAVED < %t/saved.mlir
// RUN: not autopar-opt %t/saved.mlir --load-pass-plugin=%inputs/failing_plugin.py --pass-pipeline='builtin.module(test-fail-on-multiply)' 2>&1 | filecheck %s --check-prefix=REPRO
// With -o /dev/null nothing is written beside the device either.
// RUN: not env TMPDIR=%t/tmp autopar-opt %s --load-pass-plugin=%inputs/failing_plugin.py --pass-pipeline='builtin.module(test-fail-on-multiply)' -o /dev/null 2>&1 | filecheck %s --check-prefix=DEVNULL

// CHECK: autopar-opt: error: pass 'test-fail-on-multiply' failed: {{.*}}pass_failure.mlir:{{[0-9]+}}:8: multiply is not allowed here; rewrite it as an add
// CHECK-NEXT: autopar-opt: note: its input IR is saved in {{.*}}/tmp/autopar-repro-{{[^/]+}}/pass_failure.before-test-fail-on-multiply.mlir; reproduce with: autopar-opt {{.*}}pass_failure.before-test-fail-on-multiply.mlir --pass-pipeline='builtin.module(test-fail-on-multiply)'
// DEVNULL: note: its input IR is saved in {{.*}}/tmp/autopar-repro-{{[^/]+}}/pass_failure.before-test-fail-on-multiply.mlir
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
