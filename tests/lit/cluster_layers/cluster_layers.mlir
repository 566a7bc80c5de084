// RUN: autopar-opt %inputs/mlp_step.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=2})' | filecheck %s
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=40})' 2>&1 | filecheck %s --check-prefix=TOO-MANY
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers)' 2>&1 | filecheck %s --check-prefix=NO-LAYERS
// RUN: not autopar-opt %inputs/mlp_step.mlir -o %t.mlir --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=3 eps=0})' 2>&1 | filecheck %s --check-prefix=EPS

// Forward ops are cut after the first dot; each backward dot joins the layer of the parameter it
// differentiates; each parameter update joins the layer that owns the parameter.
// CHECK: module @jit_step attributes {autopar.num_layers = 2 : i64
// CHECK-LABEL: func.func public @main
// CHECK:      stablehlo.dot_general %arg2, %arg0, {{.*}}autopar.layer = 0 : i64, autopar.part = "forward"
// CHECK:      stablehlo.dot_general %1, %arg1, {{.*}}autopar.layer = 1 : i64, autopar.part = "forward"
// CHECK:      stablehlo.reduce{{.*}}autopar.layer = 1 : i64, autopar.part = "forward"
// The gradient of W1 (reads layer 0's output and the cotangent of layer 1) belongs to layer 1.
// CHECK:      %[[DW1:.*]] = stablehlo.dot_general %12, %1, {{.*}}autopar.layer = 1 : i64, autopar.part = "backward"
// CHECK:      %[[DW0:.*]] = stablehlo.dot_general %18, %arg2, {{.*}}autopar.layer = 0 : i64, autopar.part = "backward"
// CHECK:      stablehlo.subtract %arg0, {{.*}}autopar.layer = 0 : i64, autopar.part = "apply"
// CHECK:      stablehlo.subtract %arg1, {{.*}}autopar.layer = 1 : i64, autopar.part = "apply"

// TOO-MANY: error: {{.*}}cannot cluster into 40 layers: the forward pass has only 7 ops; use num-layers <= 7
// NO-LAYERS: error: {{.*}}autopar-cluster-layers needs num-layers >= 1 (or pipeline boundaries marked by hand)
// EPS: error: {{.*}}cannot cut 7 blocks into 3 layers within eps=0 of the mean FLOPs: the most balanced cut needs eps >= 0.39{{[0-9]*}} (AutoLayerOption(eps=...), or the pass option eps), or cut fewer layers
