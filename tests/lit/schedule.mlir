// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 micro-batches=3 stage-cost=analytic},autopar-schedule)' | filecheck %s
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 micro-batches=3 stage-cost=analytic},autopar-schedule{schedule=gpipe})' | filecheck %s --check-prefix=GPIPE

// 1F1B over two stages and three micro-batches: stage 0 warms up with one forward, then alternates;
// stage 1 alternates from the start; each ends with its apply.
// CHECK: autopar.schedule = {micro_batches = 3 : i64, name = "1f1b", programs = {{\[}}["forward:0:0", "forward:0:1", "backward:0:0", "forward:0:2", "backward:0:1", "backward:0:2", "apply:0"], ["forward:1:0", "backward:1:0", "forward:1:1", "backward:1:1", "forward:1:2", "backward:1:2", "apply:1"]]}

// GPipe: all forwards, then all backwards.
// GPIPE: name = "gpipe", programs = {{\[}}["forward:0:0", "forward:0:1", "forward:0:2", "backward:0:0", "backward:0:1", "backward:0:2", "apply:0"],
