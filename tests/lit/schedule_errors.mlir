// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-schedule)' 2>&1 | filecheck %s --check-prefix=ORDER
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-schedule{schedule=pipedream})' 2>&1 | filecheck %s --check-prefix=NAME

// ORDER: autopar-opt: error: pass 'autopar-schedule' failed: the module has no autopar.inter_op.plan: run autopar-inter-op before autopar-schedule
// NAME: autopar-opt: error: option 'schedule' of pass 'autopar-schedule' must be one of 1f1b, gpipe, got 'pipedream'
