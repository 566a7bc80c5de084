// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 num-stages=2 stage-cost=analytic},autopar-shard-stages)' | filecheck %s
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 num-stages=2 stage-cost=analytic},autopar-shard-stages{axis-names=dp,tp})' | filecheck %s --check-prefix=NAMES
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 device-flops=1e6},autopar-shard-stages)' | filecheck %s --check-prefix=ONE

// Two stages of 4 devices (data parallel: the activations crossing between the stages are batch-split,
// cheaper to move than replicated): each stage's parts share one mesh named after the stage, every argument and
// result of a stage function has a sharding on it, in-body decisions are sharding constraints, and the
// stage attributes stay.
// CHECK:       sdy.mesh @stage_0_mesh = <["x"=4, "y"=1]>
// CHECK-NEXT:  sdy.mesh @stage_1_mesh = <["x"=4, "y"=1]>
// CHECK-LABEL: func.func public @main
// CHECK-NOT:     sdy.sharding
// CHECK:         call @stage_0_forward
// CHECK-LABEL: func.func private @stage_0_forward(%arg0: tensor<4x8xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, [{{.*}}]>}, %arg1: tensor<8x8xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, {{.*}}>}) -> (tensor<4x8xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, {{.*}}>}) attributes {autopar.mesh = {device_ids = array<i64: 0, 1, 2, 3>, logical_shape = array<i64: 4, 1>, shape = array<i64: 1, 4>}, autopar.part = "forward", autopar.stage = 0 : i64}
// CHECK:         sdy.sharding_constraint {{.*}} <@stage_0_mesh,
// CHECK-LABEL: func.func private @stage_1_forward({{.*}}@stage_1_mesh{{.*}}autopar.mesh = {device_ids = array<i64: 4, 5, 6, 7>
// CHECK-LABEL: func.func private @stage_1_backward({{.*}}@stage_1_mesh
// CHECK-LABEL: func.func private @stage_0_backward({{.*}}@stage_0_mesh
// CHECK-LABEL: func.func private @stage_0_apply({{.*}}@stage_0_mesh{{.*}}autopar.part = "apply", autopar.stage = 0 : i64}
// CHECK-LABEL: func.func private @stage_1_apply({{.*}}@stage_1_mesh{{.*}}autopar.part = "apply", autopar.stage = 1 : i64}
// CHECK-NOT:   autopar.objective

// The intra-op options reach every stage's plan.
// NAMES: sdy.mesh @stage_0_mesh = <["dp"=4, "tp"=1]>
// NAMES: sdy.mesh @stage_1_mesh = <["dp"=4, "tp"=1]>

// One device per stage: replicated on a one-device mesh, no solver run.
// ONE:       sdy.mesh @stage_0_mesh = <["x"=1]>
// ONE-NEXT:  sdy.mesh @stage_1_mesh = <["x"=1]>
// ONE-LABEL: func.func private @stage_0_forward(%arg0: tensor<4x8xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, [{}, {}]>}, %arg1: tensor<8x8xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, [{}, {}]>}) -> (tensor<4x8xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, [{}, {}]>})
// ONE-NOT:     sdy.sharding_constraint
// ONE-LABEL: func.func private @stage_1_forward

// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline="builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 num-stages=2 stage-cost=analytic},autopar-shard-stages{stage-options='1:axis-names=dp,tp'})" | filecheck %s --check-prefix=PER-STAGE
// Per-stage options (ManualStageOption's option dicts) reach only their stage.
// PER-STAGE:      sdy.mesh @stage_0_mesh = <["x"=4, "y"=1]>
// PER-STAGE-NEXT: sdy.mesh @stage_1_mesh = <["dp"=4, "tp"=1]>
