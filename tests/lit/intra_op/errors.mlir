// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8 memory-budget=10})' -o %t.out 2>&1 | filecheck %s --check-prefix=BUDGET
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8 zero-stage=3 allow-all-gather=false})' -o %t.out 2>&1 | filecheck %s --check-prefix=INFEASIBLE
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8 allow-all-gather=false memory-budget=340000})' -o %t.out 2>&1 | filecheck %s --check-prefix=OPTBUDGET
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=2x0})' -o %t.out 2>&1 | filecheck %s --check-prefix=MESH
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=2x2x2x2})' -o %t.out 2>&1 | filecheck %s --check-prefix=MESH4
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=2x4 axis-names=a})' -o %t.out 2>&1 | filecheck %s --check-prefix=NAMES
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=2x4 mesh-beta=1,2,3})' -o %t.out 2>&1 | filecheck %s --check-prefix=BETA
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=2x4 force-batch-dim-to-mesh-dim=2})' -o %t.out 2>&1 | filecheck %s --check-prefix=AXIS
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{zero-stage=1})' -o %t.out 2>&1 | filecheck %s --check-prefix=ZERO
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=3 force-data-parallel})' -o %t.out 2>&1 | filecheck %s --check-prefix=DIVIDE
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{cluster-profile=%t.missing.json})' -o %t.out 2>&1 | filecheck %s --check-prefix=PROFILE
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op,autopar-intra-op)' -o %t.out 2>&1 | filecheck %s --check-prefix=TWICE

// BUDGET: error: pass 'autopar-intra-op' failed: memory-budget=10 bytes per device is below the 335872 bytes per device that every plan needs on mesh 8; raise the budget or use a bigger mesh
// INFEASIBLE: error: pass 'autopar-intra-op' failed: no sharding plan satisfies the options (allow-all-gather=false, zero-stage=3): stablehlo.dot_general at {{.*}}errors.mlir:29:8 cannot meet any layout they allow for argument 1 without a reshard they forbid; relax them
// OPTBUDGET: error: pass 'autopar-intra-op' failed: no sharding plan satisfies the options (allow-all-gather=false) within memory-budget=340000 bytes per device: no plan that avoids the reshards they forbid fits it (the layouts they allow need 335872 bytes per device or more); raise memory-budget or relax them
// MESH: autopar-opt: error: pass 'autopar-intra-op': mesh '2x0' must have 1 to 3 axes of size >= 1 (like 8, 2x4 or 2x2x2)
// MESH-NOT: reproduce
// MESH4: mesh '2x2x2x2' must have 1 to 3 axes
// NAMES: axis-names 'a' names 1 axes, the mesh has 2
// BETA: mesh-beta '1,2,3' gives 3 values for a 2-axis mesh (give 1 or 2)
// AXIS: force-batch-dim-to-mesh-dim=2 is not a mesh axis of mesh (2, 4) (use -1 to disable)
// ZERO: option 'zero-stage' of pass 'autopar-intra-op' must be one of 0, 2, 3, got '1'
// DIVIDE: argument 0 (64x256): batch dim 0 of size 64 does not divide over the 3 devices force-data-parallel splits it over; use a batch size that is a multiple of 3
// PROFILE: cluster profile '{{.*}}missing.json' does not exist
// TWICE: the module already has an sdy.mesh: autopar-intra-op plans unannotated modules
func.func public @main(%arg0: tensor<64x256xf32> {autopar.batch}, %arg1: tensor<256x1024xf32> {autopar.parameter},
                       %arg2: tensor<1024x256xf32> {autopar.parameter}) -> (tensor<64x256xf32>) {
  %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<64x256xf32>, tensor<256x1024xf32>) -> tensor<64x1024xf32>
  %1 = stablehlo.tanh %0 : tensor<64x1024xf32>
  %2 = stablehlo.dot_general %1, %arg2, contracting_dims = [1] x [0] : (tensor<64x1024xf32>, tensor<1024x256xf32>) -> tensor<64x256xf32>
  return %2 : tensor<64x256xf32>
}
