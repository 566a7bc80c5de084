// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-schedule)' 2>&1 | filecheck %s --check-prefix=ORDER
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-schedule{schedule=pipedream})' 2>&1 | filecheck %s --check-prefix=NAME

// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 stage-cost=analytic},autopar-schedule{schedule=zb-h1})' 2>&1 | filecheck %s --check-prefix=UNSPLIT
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 stage-cost=analytic schedule=zb-h1},autopar-schedule)' 2>&1 | filecheck %s --check-prefix=SPLIT
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=4},autopar-inter-op{cluster=1x2 micro-batches=2 stage-cost=analytic schedule=interleaved-1f1b})' 2>&1 | filecheck %s --check-prefix=CHUNKS
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=4},autopar-inter-op{cluster=1x2 num-stages=2 micro-batches=2 stage-cost=analytic},autopar-schedule{schedule=interleaved-1f1b})' 2>&1 | filecheck %s --check-prefix=ONEPER
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=4},autopar-inter-op{cluster=1x2 num-stages=2 micro-batches=3 stage-cost=analytic schedule=interleaved-1f1b},autopar-schedule{schedule=interleaved-1f1b})' 2>&1 | filecheck %s --check-prefix=MULTIPLE

// ORDER: autopar-opt: error: pass 'autopar-schedule' failed: the module has no autopar.inter_op.plan: run autopar-inter-op before autopar-schedule
// NAME: autopar-opt: error: option 'schedule' of pass 'autopar-schedule' must be one of 1f1b, gpipe, zb-h1, interleaved-1f1b, got 'pipedream'
// UNSPLIT: autopar-opt: error: pass 'autopar-schedule' failed: schedule=zb-h1 needs each backward split into its input and weight halves: run autopar-inter-op{schedule=zb-h1}, which outlines the stages for it
// SPLIT: autopar-opt: error: pass 'autopar-schedule' failed: schedule=1f1b needs each backward as one part: run autopar-inter-op{schedule=1f1b}, which outlines the stages for it
// CHUNKS: autopar-opt: error: pass 'autopar-inter-op': schedule=interleaved-1f1b needs num-stages (equal meshes, each running chunks >= 2 virtual stages), got num-stages=0 chunks=2
// ONEPER: autopar-opt: error: pass 'autopar-schedule' failed: schedule=interleaved-1f1b needs several stages per mesh: run autopar-inter-op{schedule=interleaved-1f1b}, which places the stages for it
// MULTIPLE: autopar-opt: error: pass 'autopar-schedule' failed: interleaved-1f1b needs micro-batches (3) to be a multiple of the meshes (2)
