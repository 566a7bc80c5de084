// Text, bytecode and VHLO (with sdy attributes carried through) round-trip to the same module.
// RUN: autopar-opt %s --pass-pipeline='builtin.module(func.func(sdy-populate-op-sharding-rules))' -o %t.txt
// RUN: autopar-opt %t.txt --emit=bytecode -o %t.bc
// RUN: autopar-opt %t.txt --emit=vhlo -o %t.vhlo
// RUN: autopar-opt %t.bc -o %t.from_bc.txt
// RUN: autopar-opt %t.vhlo -o %t.from_vhlo.txt
// RUN: diff %t.txt %t.from_bc.txt
// RUN: diff %t.txt %t.from_vhlo.txt
// RUN: filecheck %s < %t.from_vhlo.txt
// The binary forms really are binary (MLIR bytecode magic), not text.
// RUN: %python -c "import sys; d=open(sys.argv[1],'rb').read(); sys.exit(0 if d[:4]==b'ML\xefR' else 1)" %t.vhlo

// CHECK: sdy.mesh @mesh = <["x"=2]>
// CHECK: func.func public @main(%arg0: tensor<8x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>})
// CHECK: stablehlo.tanh %arg0 {sdy.sharding_rule = #sdy.op_sharding_rule<([i, j])->([i, j]) {i=8, j=4}>}
sdy.mesh @mesh = <["x"=2]>
func.func public @main(%arg0: tensor<8x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}) -> tensor<8x4xf32> {
  %0 = stablehlo.tanh %arg0 : tensor<8x4xf32>
  return %0 : tensor<8x4xf32>
}
