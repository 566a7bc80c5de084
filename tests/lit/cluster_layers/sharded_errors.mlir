// A module planned by autopar-intra-op (it has an sdy.mesh) is refused by the layer pass, by name; it used
// to pass, and autopar-pipeshard failed later at "'sdy.sharding_constraint' op unknown mesh: @mesh".
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-intra-op{mesh=2x4},autopar-cluster-layers{num-layers=2})' 2>&1 | filecheck %s
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-shard{mesh=2x4},autopar-pipeshard{cluster=1x8 layers=2})' 2>&1 | filecheck %s --check-prefix=PIPELINE
// CHECK: error: {{.*}}the module already has an sdy.mesh: autopar-cluster-layers plans unannotated modules (lower without shardings)
// PIPELINE: error: pass 'autopar-pipeshard' failed: the module already has an sdy.mesh: autopar-cluster-layers plans unannotated modules
