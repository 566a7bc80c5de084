// The named pipelines run exactly their steps: the same module as the steps written out. (diff runs
// last: lit's diff builtin leaves PYTHONPATH pointing at lit for the commands after it.)
// RUN: autopar-opt %inputs/mlp_step.mlir --mlir-print-debuginfo --pass-pipeline='builtin.module(autopar-shard{mesh=2x4 zero-stage=2})' -o %t.shard.mlir
// RUN: autopar-opt %inputs/mlp_step.mlir --mlir-print-debuginfo --pass-pipeline='builtin.module(autopar-inline,autopar-unroll-loops,autopar-flatten-conditionals,autopar-fold-transposes,autopar-intra-op{mesh=2x4 zero-stage=2})' -o %t.steps.mlir
// RUN: autopar-opt %inputs/mlp_step.mlir --mlir-print-debuginfo --pass-pipeline='builtin.module(autopar-pipeshard{cluster=1x8 layers=2 num-stages=2 stage-cost=analytic axis-names=dp,tp})' -o %t.pipeshard.mlir
// RUN: autopar-opt %inputs/mlp_step.mlir --mlir-print-debuginfo --pass-pipeline='builtin.module(autopar-inline,autopar-unroll-loops,autopar-flatten-conditionals,autopar-fold-transposes,autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 num-stages=2 stage-cost=analytic},autopar-shard-stages{axis-names=dp,tp},autopar-reshard,autopar-schedule)' -o %t.pipeshard-steps.mlir
// RUN: autopar-opt --describe-pass=autopar-pipeshard | filecheck %s --check-prefix=DESCRIBE
// RUN: autopar-opt --list-passes | filecheck %s --check-prefix=LIST
// RUN: diff %t.shard.mlir %t.steps.mlir
// RUN: cat %t.shard.mlir | filecheck %s --check-prefix=SHARD
// RUN: diff %t.pipeshard.mlir %t.pipeshard-steps.mlir
// RUN: cat %t.pipeshard.mlir | filecheck %s --check-prefix=PIPESHARD

// SHARD: sdy.mesh @mesh = <["x"=2, "y"=4]>
// SHARD: func.func public @main({{.*}}sdy.sharding

// PIPESHARD:       autopar.inter_op.plan
// PIPESHARD:       sdy.mesh @stage_0_mesh = <["dp"=4, "tp"=1]>
// PIPESHARD-NEXT:  sdy.mesh @stage_1_mesh = <["dp"=4, "tp"=1]>
// PIPESHARD-LABEL: func.func public @main
// PIPESHARD:         call @stage_0_forward
// PIPESHARD-NEXT:    stablehlo.custom_call @autopar.transfer(
// PIPESHARD-LABEL: func.func private @stage_0_forward({{.*}}@stage_0_mesh

// DESCRIBE:      Steps, in order:
// DESCRIBE-NEXT:   1. autopar-inline: {{.+}}
// DESCRIBE-NEXT:   2. autopar-unroll-loops: {{.+}}
// DESCRIBE-NEXT:   3. autopar-flatten-conditionals: {{.+}}
// DESCRIBE-NEXT:   4. autopar-fold-transposes: {{.+}}
// DESCRIBE-NEXT:   5. autopar-cluster-layers: {{.+}}
// DESCRIBE-NEXT:   6. autopar-inter-op: {{.+}}
// DESCRIBE-NEXT:   7. autopar-shard-stages: {{.+}}
// DESCRIBE-NEXT:   8. autopar-reshard: {{.+}}
// DESCRIBE-NEXT:   9. autopar-schedule: {{.+}}
// DESCRIBE:      layers: int = 0
// DESCRIBE:      cluster: str = '1x8'
// DESCRIBE:      zero-stage: int = 0

// LIST: autopar-pipeshard: PipeshardParallel's pipeline
// LIST: autopar-shard: ShardParallel's pipeline
