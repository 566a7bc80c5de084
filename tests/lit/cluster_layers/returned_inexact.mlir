// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=1})' | filecheck %s

// A returned value made from one without an exact combination over micro-batches is apply work: the log
// of the mean loss (labelled "unknown") and a select that a flattened conditional added after labelling
// (no label, on example data) run once per step from the combined loss. Work on examples stays forward
// (the squared distance of each example from the mean), and so does the mean loss itself.
// CHECK-LABEL: func.func public @main
// CHECK:       %[[MEAN:.*]] = stablehlo.divide {{.*}}autopar.part = "forward"
// CHECK:       stablehlo.log %[[MEAN]] {{.*}}autopar.part = "apply"
// CHECK:       stablehlo.compare {{.*}}autopar.part = "apply"
// CHECK:       stablehlo.select {{.*}}autopar.part = "apply"
// CHECK:       stablehlo.subtract %{{.*}}, %{{.*}} {{.*}}autopar.part = "forward"
module @jit_step attributes {autopar.micro_batch_size = 4 : i64} {
  func.func public @main(%w: tensor<8x8xf32> {autopar.parameter}, %best: tensor<f32> {autopar.parameter},
                         %x: tensor<4x8xf32> {autopar.batch}) -> (tensor<8x8xf32>, tensor<f32>, tensor<f32>, tensor<f32>, tensor<4x8xf32>) {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] {autopar.micro_batch = ["batch"]} : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32> loc("jit(step)/jvp()/dot_general")
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %sum = stablehlo.reduce(%h init: %zero) applies stablehlo.add across dimensions = [0, 1] {autopar.micro_batch = ["sum"]} : (tensor<4x8xf32>, tensor<f32>) -> tensor<f32> loc("jit(step)/jvp()/reduce_sum")
    %n = stablehlo.constant {autopar.micro_batch = ["const:1"]} dense<32.0> : tensor<f32>
    %mean = stablehlo.divide %sum, %n {autopar.micro_batch = ["mean"]} : tensor<f32> loc("jit(step)/jvp()/div")
    %one = stablehlo.constant dense<1.0> : tensor<4x8xf32>
    %dw = stablehlo.dot_general %x, %one, contracting_dims = [0] x [0] {autopar.micro_batch = ["sum"]} : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32> loc("jit(step)/transpose(jvp())/dot_general")
    %new_w = stablehlo.subtract %w, %dw : tensor<8x8xf32> loc("jit(step)/sub")
    %log = stablehlo.log %mean {autopar.micro_batch = ["unknown:stablehlo.log of a sum over the examples"]} : tensor<f32> loc("jit(step)/log")
    %better = stablehlo.compare LT, %mean, %best : (tensor<f32>, tensor<f32>) -> tensor<i1> loc("jit(step)/lt")
    %new_best = stablehlo.select %better, %mean, %best : tensor<i1>, tensor<f32> loc("jit(step)/select_n")
    %mean_b = stablehlo.broadcast_in_dim %mean, dims = [] {autopar.micro_batch = ["mean"]} : (tensor<f32>) -> tensor<4x8xf32>
    %dev = stablehlo.subtract %h, %mean_b {autopar.micro_batch = ["unknown:stablehlo.subtract of a batch(0) and a sum(-1) value"]} : tensor<4x8xf32> loc("jit(step)/sub")
    return %new_w, %mean, %log, %new_best, %dev : tensor<8x8xf32>, tensor<f32>, tensor<f32>, tensor<f32>, tensor<4x8xf32>
  }
}
