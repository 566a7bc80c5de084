// RUN: autopar-opt %inputs/adam_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 micro-batches=2 submesh-shapes=1x1 device-flops=1e6})' | filecheck %s

// Adam's step count (%arg2) and the bias corrections derived from it are tiny values computed from state
// alone: each stage's apply part reads the count argument and recomputes them, instead of waiting for
// the apply of the stage that owns the count. Only the owner returns the new count.
// CHECK-LABEL: func.func public @main
// CHECK:         %[[A0:.*]]:4 = call @stage_0_apply(%{{.*}}, %arg2, %arg0)
// CHECK-NEXT:    %[[A1:.*]]:3 = call @stage_1_apply(%{{.*}}, %arg2, %arg1)
// CHECK-NEXT:    return {{.*}}%[[A0]]#2
// CHECK:       func.func private @stage_0_apply({{.*}}%arg3: tensor<i32>{{.*}}) -> ({{.*}}tensor<i32>
// CHECK:         stablehlo.add %arg3
// CHECK:       func.func private @stage_1_apply({{.*}}%arg3: tensor<i32>{{.*}}) -> (tensor<8x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>)
// CHECK:         stablehlo.add %arg3
// CHECK:         stablehlo.power
