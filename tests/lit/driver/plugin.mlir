// A pass registered by a module outside the package runs next to autopar's and jaxlib's passes, by
// dotted name (found in the working directory) or by file path, and shows up in --list-passes.
// RUN: cd %inputs && autopar-opt %s --load-pass-plugin=failing_plugin --pass-pipeline='builtin.module(autopar-inline,test-tag-ops,cse)' | filecheck %s
// RUN: autopar-opt %s --load-pass-plugin=%inputs/failing_plugin.py --pass-pipeline='builtin.module(test-tag-ops{attr-name=plugin.ops})' | filecheck %s --check-prefix=OPT
// RUN: autopar-opt --load-pass-plugin=%inputs/failing_plugin.py --list-passes | filecheck %s --check-prefix=LIST

// CHECK: module attributes {test.num_ops = 2 : i64}
// OPT: module attributes {plugin.ops = 3 : i64}
// LIST: test-tag-ops: Tag the module with the number of non-func ops (plugin example)
// LIST-NEXT: attr-name: str = 'test.num_ops'  name of the module attribute to write
func.func public @main(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = call @neg(%arg0) : (tensor<2xf32>) -> tensor<2xf32>
  %1 = stablehlo.abs %0 : tensor<2xf32>
  return %1 : tensor<2xf32>
}
func.func private @neg(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = stablehlo.negate %arg0 : tensor<2xf32>
  return %0 : tensor<2xf32>
}
