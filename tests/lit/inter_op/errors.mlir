// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=2x4 submesh-shapes=1x3})' 2>&1 | filecheck %s --check-prefix=TILE
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x4 num-stages=4})' 2>&1 | filecheck %s --check-prefix=STAGES
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x3 num-stages=2})' 2>&1 | filecheck %s --check-prefix=DIVIDE
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=3},autopar-inter-op{cluster=1x6 num-stages=2})' 2>&1 | filecheck %s --check-prefix=UNIFORM
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 submesh-shapes=1x1,1x2 num-stages=2})' 2>&1 | filecheck %s --check-prefix=OFFERED
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 device-memory=100})' 2>&1 | filecheck %s --check-prefix=MEMORY
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-inter-op{cluster=1x2})' 2>&1 | filecheck %s --check-prefix=ORDER
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=two})' 2>&1 | filecheck %s --check-prefix=CLUSTER
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 intra-op-options="mesh=2x4"})' 2>&1 | filecheck %s --check-prefix=INTRA
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 intra-op-options="zero-stage=2 allow-all-gather=maybe"})' 2>&1 | filecheck %s --check-prefix=INTRATYPE
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 device-tflops=100})' 2>&1 | filecheck %s --check-prefix=TFLOPS

// TILE: error: {{.*}}submesh shape 1x3 does not tile the 2x4 cluster: use 1xK with K a power of two dividing 4, or Nx4 with N <= 2
// STAGES: error: {{.*}}num-stages=4 is more than the 2 layers: use at most 2 stages or cluster into more layers
// DIVIDE: error: {{.*}}num-stages=2 does not divide the 3 devices of the cluster: use num-stages 1{{$}}
// UNIFORM: error: {{.*}}num-stages=2 needs submeshes of 3 devices, which the submesh shapes (1x1, 1x2, 1x6) do not offer: use num-stages 1 or 3{{$}}
// OFFERED: error: {{.*}}num-stages=2 needs submeshes of 4 devices, which the submesh shapes (1x1, 1x2) do not offer: use num-stages 0 (the DP chooses), or add 1x4 to submesh-shapes
// MEMORY: error: {{.*}}the 1x2 cluster cannot hold the model: it needs at least {{[0-9]+}} B per device ({{.*}} in all) but devices have 100 B; use more devices, smaller (more) micro-batches, remat=true or a larger device-memory (bytes)
// ORDER: error: {{.*}}{{.*}}has no autopar.layer/autopar.part: run autopar-cluster-layers before autopar-inter-op
// CLUSTER: error: {{.*}}cluster 'two' is not of the form HxD with positive H and D (e.g. 2x8)
// INTRA: error: pass 'autopar-inter-op': intra-op-options: 'mesh' does not reach the stage costs (they take force-data-parallel, force-batch-dim-to-mesh-dim, allow-all-gather, allow-all-to-all, prefer-reduce-scatter, zero-stage, allow-replicated-parameters, allow-recompute-heavy-op, widen-collectives)
// INTRATYPE: error: pass 'autopar-inter-op': intra-op-options: option 'allow-all-gather' of pass 'autopar-intra-op' expects bool, got 'maybe'
// TFLOPS: error: {{.*}}option 'device-tflops' of pass 'autopar-inter-op' was removed: give device-flops in FLOP/s (device-tflops=100 is device-flops=1e14)

// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-inter-op{manual-stages=0-1})' 2>&1 | filecheck %s --check-prefix=MANUAL-FORM
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-inter-op{manual-stages=0-1:1x4:4x2})' 2>&1 | filecheck %s --check-prefix=MANUAL-MESH
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x8 manual-stages=0-2:1x4:2x2,1-2:1x2:1x2 stage-cost=analytic})' 2>&1 | filecheck %s --check-prefix=MANUAL-GAP
// MANUAL-FORM: autopar-opt: error: pass 'autopar-inter-op': manual-stages entry '0-1' is not start-end:HxD:PxQ (layers [start, end) on an HxD submesh with a PxQ logical mesh, e.g. 0-2:1x4:2x2)
// MANUAL-MESH: autopar-opt: error: pass 'autopar-inter-op': manual-stages entry '0-1:1x4:4x2': the logical mesh 4x2 must have the submesh's 4 devices
// MANUAL-GAP: autopar-opt: error: pass 'autopar-inter-op' failed: manual-stages must cover layers 0..2 in order without gaps: a stage starts at 1 (expected 2) and ends at 2
