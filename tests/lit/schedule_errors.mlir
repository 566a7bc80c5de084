// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-schedule)' 2>&1 | filecheck %s --check-prefix=ORDER
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-schedule{schedule=pipedream})' 2>&1 | filecheck %s --check-prefix=NAME

// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 stage-cost=analytic},autopar-schedule{schedule=zb-h1})' 2>&1 | filecheck %s --check-prefix=UNSPLIT
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 stage-cost=analytic schedule=zb-h1},autopar-schedule)' 2>&1 | filecheck %s --check-prefix=SPLIT

// ORDER: autopar-opt: error: pass 'autopar-schedule' failed: the module has no autopar.inter_op.plan: run autopar-inter-op before autopar-schedule
// NAME: autopar-opt: error: option 'schedule' of pass 'autopar-schedule' must be one of 1f1b, gpipe, zb-h1, got 'pipedream'
// UNSPLIT: autopar-opt: error: pass 'autopar-schedule' failed: schedule=zb-h1 needs each backward split into its input and weight halves: run autopar-inter-op{schedule=zb-h1}, which outlines the stages for it
// SPLIT: autopar-opt: error: pass 'autopar-schedule' failed: schedule=1f1b needs each backward as one part: run autopar-inter-op{schedule=1f1b}, which outlines the stages for it
