// Each chunk is processed alone; an error in one chunk is reported with its line in this file, the
// other chunks still produce output, and the exit code is 1.
// RUN: not autopar-opt %s --split-input-file --pass-pipeline='builtin.module(autopar-inline)' -o %t.out 2> %t.err
// RUN: filecheck %s < %t.out
// RUN: filecheck %s --check-prefix=ERR < %t.err

// CHECK-LABEL: func.func public @first
// CHECK:       // -----
// CHECK-LABEL: func.func public @third
// ERR: autopar-opt: error: {{.*}}split_input_file.mlir:20:8: recursive call to @self cannot be inlined
func.func public @first(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  return %arg0 : tensor<2xf32>
}
// -----
func.func public @second(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = call @self(%arg0) : (tensor<2xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32>
}
func.func private @self(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = call @self(%arg0) : (tensor<2xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32>
}
// -----
func.func public @third(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  return %arg0 : tensor<2xf32>
}
