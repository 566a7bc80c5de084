// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-pipeshard{mesh=2x4})' 2>&1 | filecheck %s --check-prefix=MESH
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-pipeshard{cluster=1x8 layers=2 zero-stage=1})' 2>&1 | filecheck %s --check-prefix=ZERO
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-pipeshard{layers=-1})' 2>&1 | filecheck %s --check-prefix=LAYERS
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-pipeshard{cluster=1x8})' 2>&1 | filecheck %s --check-prefix=UNMARKED
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-shard{mesh=2x0})' 2>&1 | filecheck %s --check-prefix=SHARDMESH

// The stages get their own meshes: a mesh option is refused by name.
// MESH: autopar-opt: error: pass 'autopar-pipeshard' has no option 'mesh' (its options: layers, layer-eps, cluster,
// ZERO: autopar-opt: error: option 'zero-stage' of pass 'autopar-pipeshard' must be one of 0, 2, 3, got '1'
// A step's option check names the step.
// LAYERS: autopar-opt: error: pass 'autopar-cluster-layers': num-layers must be >= 0 (0: hand-placed boundaries only), got -1
// UNMARKED: autopar-opt: error: pass 'autopar-pipeshard' failed: autopar-cluster-layers needs num-layers >= 1 (or pipeline boundaries marked by hand)
// SHARDMESH: autopar-opt: error: pass 'autopar-intra-op': mesh '2x0' must have 1 to 3 axes of size >= 1
