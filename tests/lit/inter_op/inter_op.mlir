// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 micro-batches=4 submesh-shapes=1x1 device-flops=1e6})' | filecheck %s
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 micro-batches=4})' | filecheck %s --check-prefix=INTRA
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 micro-batches=4 stage-cost=analytic remat=true stage-cost-budget=0.5})' | filecheck %s --check-prefix=ONE

// Slow devices: each layer gets its own device; forward parts in stage order, backward in reverse, then
// the parameter updates, each on the mesh of the stage that owns the parameter.
// CHECK: module @jit_step attributes {autopar.inter_op.latency = {{.*}} : f64, autopar.inter_op.micro_batches = 4 : i64, autopar.inter_op.plan = [{cost = {{.*}}, layers = array<i64: 0, 1>, {{.*}}mesh = {device_ids = array<i64: 0>, {{.*}}}, {cost = {{.*}}, layers = array<i64: 1, 2>, {{.*}}mesh = {device_ids = array<i64: 1>,
// CHECK-LABEL: func.func public @main
// CHECK-NEXT:    %[[F0:.*]] = call @stage_0_forward(%arg2, %arg0)
// CHECK-NEXT:    %[[F1:.*]]:5 = call @stage_1_forward(%[[F0]], %arg1)
// CHECK-NEXT:    %[[B1:.*]]:2 = call @stage_1_backward(
// CHECK-NEXT:    %[[B0:.*]] = call @stage_0_backward(%[[B1]]#1, %arg2)
// CHECK-NEXT:    %[[A0:.*]] = call @stage_0_apply(%[[B0]], %arg0)
// CHECK-NEXT:    %[[A1:.*]] = call @stage_1_apply(%[[B1]]#0, %arg1)
// CHECK-NEXT:    return %[[F1]]#4, %[[A0]], %[[A1]]
// CHECK:       func.func private @stage_0_forward({{.*}}) -> tensor<4x8xf32> attributes {autopar.mesh = {device_ids = array<i64: 0>, logical_shape = array<i64: 1, 1>, shape = array<i64: 1, 1>}, autopar.part = "forward", autopar.stage = 0 : i64}
// CHECK-NEXT:    stablehlo.dot_general %arg0, %arg1
// CHECK:       func.func private @stage_1_forward({{.*}}autopar.mesh = {device_ids = array<i64: 1>
// Constants are cloned into the stage that uses them, not passed between stages.
// CHECK:         stablehlo.constant
// CHECK:       func.func private @stage_1_backward
// CHECK:       func.func private @stage_0_backward
// CHECK:       func.func private @stage_0_apply
// CHECK:       func.func private @stage_1_apply

// Fast devices, one host: the tiny model is best as one data-parallel stage over the whole host (the
// gradient all-reduce is amortised over the micro-batches; two stages would each pay one too).
// With stage costs from the intra-op pass (the default) this batch-4 micro-batch cannot be split over more
// devices, every mesh costs the same, and the plan may pipeline; the single-stage property is tested in
// tests/passes/inter_op/test_inter_op.py on a model where one mesh is best. Here: a well-formed plan starting at layer 0.
// INTRA: autopar.inter_op.plan = [{cost = {{.*}}, layers = array<i64: 0, {{[12]}}>
// INTRA-LABEL: func.func public @main
// INTRA: call @stage_0_forward
// ONE: autopar.inter_op.plan = [{cost = {{.*}}, layers = array<i64: 0, 2>, {{.*}}mesh = {device_ids = array<i64: 0, 1, 2, 3, 4, 5, 6, 7>, logical_shape = array<i64: 8, 1>, shape = array<i64: 1, 8>}}]
// ONE: call @stage_0_forward
// ONE-NOT: call @stage_1

// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 manual-stages=0-1:1x4:2x2,1-2:1x2:1x2 stage-cost=analytic})' | filecheck %s --check-prefix=MANUAL
// Hand-placed stages (ManualStageOption): the given layers, submeshes and logical meshes, placed on the
// cluster's devices in order; two devices stay unused.
// MANUAL: autopar.inter_op.plan = [{cost = {{.*}}, layers = array<i64: 0, 1>, memory = {{[0-9]+}} : i64, mesh = {device_ids = array<i64: 0, 1, 2, 3>, logical_shape = array<i64: 2, 2>, shape = array<i64: 1, 4>}}, {cost = {{.*}}, layers = array<i64: 1, 2>, memory = {{[0-9]+}} : i64, mesh = {device_ids = array<i64: 4, 5>, logical_shape = array<i64: 1, 2>, shape = array<i64: 1, 2>}}]
