// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-shard-stages)' 2>&1 | filecheck %s --check-prefix=ORDER
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 num-stages=2 stage-cost=analytic},autopar-shard-stages,autopar-shard-stages)' 2>&1 | filecheck %s --check-prefix=TWICE
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-shard-stages{mesh=2x4})' 2>&1 | filecheck %s --check-prefix=MESH
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-shard-stages{mesh-beta=1,2,3})' 2>&1 | filecheck %s --check-prefix=BETA
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 num-stages=2 stage-cost=analytic},autopar-shard-stages{memory-budget=10})' 2>&1 | filecheck %s --check-prefix=BUDGET

// ORDER: autopar-opt: error: pass 'autopar-shard-stages' failed: the module has no stage functions (no autopar.mesh): run autopar-inter-op before autopar-shard-stages
// TWICE: autopar-opt: error: pass 'autopar-shard-stages' failed: @stage_0_forward is already sharded: autopar-shard-stages plans unsharded stage functions
// MESH: autopar-opt: error: pass 'autopar-shard-stages' has no option 'mesh' (its options: axis-names,
// BETA: autopar-opt: error: pass 'autopar-shard-stages': mesh-beta '1,2,3' gives 3 values for a 2-axis mesh (give 1 or 2)
// A stage's planning error names the stage and its mesh.
// BUDGET: autopar-opt: error: pass 'autopar-shard-stages' failed: @stage_0_forward on its 4x1 mesh: memory-budget=10 bytes per device is below the 128 bytes per device that every plan needs on mesh 4x1

// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline="builtin.module(autopar-shard-stages{stage-options='1:mesh=2x2'})" 2>&1 | filecheck %s --check-prefix=STAGE-MESH
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline="builtin.module(autopar-shard-stages{stage-options='1:zero-stage=9'})" 2>&1 | filecheck %s --check-prefix=STAGE-VALUE
// STAGE-MESH: autopar-opt: error: pass 'autopar-shard-stages': stage-options entry '1:mesh=2x2': 'mesh=2x2' is not name=value with one of autopar-intra-op's options (allow-all-gather,
// STAGE-VALUE: autopar-opt: error: pass 'autopar-shard-stages': stage-options for stage 1: option 'zero-stage' of pass 'autopar-intra-op' must be one of 0, 2, 3, got '9'
