// widen-collectives prices collectives in the element types XLA's CPU compiler runs them in: a bf16
// gradient is all-reduced as f32 (twice the bytes), an f8 one as f16; f32 stays. Data parallel on 8
// devices: each 256x256 weight gradient is a partial sum over "x", all-reduced whole on every device.
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8 force-data-parallel})' | filecheck %s --check-prefix=NARROW
// RUN: autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8 force-data-parallel widen-collectives})' | filecheck %s --check-prefix=WIDE
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=8 widen-collectives=maybe})' 2>&1 | filecheck %s --check-prefix=ERR

// bf16: 256 x 256 x 2 bytes, f8E4M3FN: 256 x 256 x 1, f32: 256 x 256 x 4 (together 458752)
// NARROW: autopar.expected_collectives = [{axes = "x", bytes = 458752 : i64, count = 3 : i64, kind = "all-reduce"}]
// bf16 as f32 (x 4), f8E4M3FN as f16 (x 2), f32 as it is (together 655360)
// WIDE: autopar.expected_collectives = [{axes = "x", bytes = 655360 : i64, count = 3 : i64, kind = "all-reduce"}]
// ERR: error: {{.*}}widen-collectives{{.*}}maybe
func.func public @main(%x: tensor<64x256xbf16> {autopar.batch}, %dy: tensor<64x256xbf16> {autopar.batch},
                       %x8: tensor<64x256xf8E4M3FN> {autopar.batch}, %dy8: tensor<64x256xf8E4M3FN> {autopar.batch},
                       %xf: tensor<64x256xf32> {autopar.batch}, %dyf: tensor<64x256xf32> {autopar.batch})
    -> (tensor<256x256xbf16>, tensor<256x256xf8E4M3FN>, tensor<256x256xf32>) {
  %0 = stablehlo.dot_general %x, %dy, contracting_dims = [0] x [0] : (tensor<64x256xbf16>, tensor<64x256xbf16>) -> tensor<256x256xbf16>
  %1 = stablehlo.dot_general %x8, %dy8, contracting_dims = [0] x [0] : (tensor<64x256xf8E4M3FN>, tensor<64x256xf8E4M3FN>) -> tensor<256x256xf8E4M3FN>
  %2 = stablehlo.dot_general %xf, %dyf, contracting_dims = [0] x [0] : (tensor<64x256xf32>, tensor<64x256xf32>) -> tensor<256x256xf32>
  return %0, %1, %2 : tensor<256x256xbf16>, tensor<256x256xf8E4M3FN>, tensor<256x256xf32>
}
