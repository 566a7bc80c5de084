// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 micro-batches=3 stage-cost=analytic},autopar-schedule)' | filecheck %s
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 micro-batches=3 stage-cost=analytic},autopar-schedule{schedule=gpipe})' | filecheck %s --check-prefix=GPIPE
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2},autopar-inter-op{cluster=1x2 submesh-shapes=1x1 micro-batches=3 stage-cost=analytic schedule=zb-h1},autopar-schedule{schedule=zb-h1})' | filecheck %s --check-prefix=ZB
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=4},autopar-inter-op{cluster=1x2 num-stages=2 micro-batches=2 stage-cost=analytic schedule=interleaved-1f1b},autopar-schedule{schedule=interleaved-1f1b})' | filecheck %s --check-prefix=INTER

// 1F1B over two stages and three micro-batches: stage 0 warms up with one forward, then alternates;
// stage 1 alternates from the start; each ends with its apply.
// CHECK: autopar.schedule = {micro_batches = 3 : i64, name = "1f1b", programs = {{\[}}["forward:0:0", "forward:0:1", "backward:0:0", "forward:0:2", "backward:0:1", "backward:0:2", "apply:0"], ["forward:1:0", "backward:1:0", "forward:1:1", "backward:1:1", "forward:1:2", "backward:1:2", "apply:1"]]}

// GPipe: all forwards, then all backwards.
// GPIPE: name = "gpipe", programs = {{\[}}["forward:0:0", "forward:0:1", "forward:0:2", "backward:0:0", "backward:0:1", "backward:0:2", "apply:0"],

// ZB-H1: autopar-inter-op outlines each backward as its input half (what the previous stage waits for)
// and its weight half; the first stage sends nothing back, so it has a weight half only. Stage 1 runs
// each weight half one input half late.
// ZB: autopar.schedule = {micro_batches = 3 : i64, name = "zb-h1", programs = {{\[}}["forward:0:0", "forward:0:1", "backward_weight:0:0", "forward:0:2", "backward_weight:0:1", "backward_weight:0:2", "apply:0"], ["forward:1:0", "backward_input:1:0", "forward:1:1", "backward_input:1:1", "backward_weight:1:0", "forward:1:2", "backward_input:1:2", "backward_weight:1:1", "backward_weight:1:2", "apply:1"]]}
// ZB:      %[[IN:.*]]:2 = call @stage_1_backward_input(
// ZB-NEXT: call @stage_1_backward_weight(%[[IN]]#0,
// ZB-NEXT: call @stage_0_backward_weight(%[[IN]]#1,
// ZB-NOT:  @stage_0_backward_input
// ZB:      func.func private @stage_1_backward_input({{.*}}autopar.part = "backward_input", autopar.stage = 1
// ZB:      func.func private @stage_1_backward_weight({{.*}}autopar.part = "backward_weight", autopar.stage = 1

// Interleaved 1F1B: two meshes, two chunks each; layer range j runs on mesh j mod 2, and each mesh's
// program goes through its chunks (stage 2 is mesh 0's second chunk). Stages 1 and 2 have no
// parameters here, so no apply part.
// INTER: layers = array<i64: 0, 1>, memory = {{[0-9]+}} : i64, mesh = {device_ids = array<i64: 0>
// INTER: layers = array<i64: 1, 2>, memory = {{[0-9]+}} : i64, mesh = {device_ids = array<i64: 1>
// INTER: layers = array<i64: 2, 3>, memory = {{[0-9]+}} : i64, mesh = {device_ids = array<i64: 0>
// INTER: layers = array<i64: 3, 4>, memory = {{[0-9]+}} : i64, mesh = {device_ids = array<i64: 1>
// INTER: name = "interleaved-1f1b", programs = {{\[}}["forward:0:0", "forward:0:1", "forward:2:0", "forward:2:1", "backward:2:0", "backward:2:1", "backward:0:0", "backward:0:1", "apply:0"], ["forward:1:0", "forward:1:1", "forward:3:0", "forward:3:1", "backward:3:0", "backward:3:1", "backward:1:0", "backward:1:1", "apply:3"]]}
