// --plan-report=FILE writes the plan beside the IR (stdout/-o unchanged): text, or JSON for a .json FILE.
// A pipeline without a planning pass is refused: one error line, exit 1, nothing written.
// RUN: rm -rf %t && mkdir -p %t
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-shard{mesh=2x4})' --plan-report=%t/plan.txt | filecheck %s --check-prefix=IR
// RUN: filecheck %s --check-prefix=TEXT < %t/plan.txt
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-shard{mesh=2x4})' --plan-report=%t/plan.json -o %t/out.mlir
// RUN: filecheck %s --check-prefix=JSON < %t/plan.json
// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-pipeshard{cluster=1x8 layers=2 num-stages=2})' --plan-report=%t/stages.txt -o %t/stages.mlir
// RUN: filecheck %s --check-prefix=STAGES < %t/stages.txt
// RUN: not autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-inline)' --plan-report=%t/none.txt 2>&1 | filecheck %s --check-prefix=ERR
// RUN: not test -e %t/none.txt

// IR: module @jit_step
// IR: sdy.mesh @mesh = <["x"=2, "y"=4]>

// TEXT:      plan: intra-op
// TEXT-NEXT: mesh: 2x4
// TEXT-NEXT: solver: optimal, estimated cost {{.*}} s (lower bound {{.*}} s), peak memory {{.*}} per device
// TEXT-NEXT: inputs:
// TEXT-NEXT:   %arg0  float32[8,8] {{ *}}P(None, 'x')
// TEXT:      outputs:
// TEXT-NEXT:   result[0]     float32[] {{ *}}replicated
// TEXT:      planned collectives (count x bytes per device):
// TEXT:        all-reduce {{.*}} over y

// JSON:      "kind": "intra-op",
// JSON:      "solver_status": "optimal",
// JSON:      "inputs": [
// JSON:          "name": "%arg0",
// JSON:          "layout": "P(None, 'x')"
// JSON:      "planned_collectives": [
// JSON:          "kind": "all-reduce",

// STAGES:      plan: pipeshard
// STAGES-NEXT: pipeline: 2 stage(s), {{.*}} estimated latency
// STAGES:        %arg0  float32[8,8] {{ *}}per stage
// STAGES:      stage 0: layers [0, 1) on submesh 1x4 devices [0, 1, 2, 3], logical mesh {{.*}}
// STAGES:        %arg0 (forward): {{.*}} on [x={{[0-9]}}, y={{[0-9]}}]
// STAGES:      stage 1: layers [1, 2) on submesh 1x4 devices [4, 5, 6, 7]
// STAGES:        %arg1 (forward):

// ERR: autopar-opt: error: --plan-report: the pipeline ran no autopar planning pass (autopar-intra-op / autopar-pipeshard)
// ERR-NOT: error
