// --bind-dims: a shape-polymorphic jax.export input's symbolic dims at given sizes, so the planners see
// static shapes; bad entries and inputs without symbolic dims are one error line, and nothing is written.
// RUN: rm -rf %t && mkdir -p %t
// RUN: %python -c "import jax, jax.numpy as jnp; (b,) = jax.export.symbolic_shape('b'); f = jax.jit(lambda w, x: jnp.tanh(x @ w)); e = jax.export.export(f)(jax.ShapeDtypeStruct((16, 16), jnp.float32), jax.ShapeDtypeStruct((b, 16), jnp.float32)); open(r'%t/poly.exported', 'wb').write(e.serialize())"
// RUN: autopar-opt %t/poly.exported --bind-dims b=32 --pass-pipeline='builtin.module(autopar-shard{mesh=2x4})' | filecheck %s --check-prefix=BOUND
// RUN: not autopar-opt %s --bind-dims b=32 -o %t/out 2>&1 | filecheck %s --check-prefix=MLIR
// RUN: not autopar-opt %t/poly.exported --bind-dims b=0 -o %t/out 2>&1 | filecheck %s --check-prefix=ZERO
// RUN: not autopar-opt %t/poly.exported --bind-dims b=4,b=8 -o %t/out 2>&1 | filecheck %s --check-prefix=TWICE
// RUN: not autopar-opt %t/poly.exported --bind-dims x=4 -o %t/out 2>&1 | filecheck %s --check-prefix=UNKNOWN
// RUN: not test -e %t/out

// BOUND: sdy.mesh @mesh = <["x"=2, "y"=4]>
// BOUND: func.func public @main(%arg0: tensor<16x16xf32> {{.*}}, %arg1: tensor<32x16xf32>
// BOUND-NOT: ?x
// MLIR: autopar-opt: error: --bind-dims binds the symbolic dims of a serialized jax.export input; {{.*}}bind_dims.mlir is MLIR: lower it with concrete shapes
// ZERO: autopar-opt: error: --bind-dims entry 'b=0' is not NAME=SIZE with a positive SIZE (e.g. b=32)
// TWICE: autopar-opt: error: --bind-dims gives b twice
// UNKNOWN: autopar-opt: error: --bind-dims names x, which {{.*}}poly.exported's shapes do not use (its symbolic dims: b)
func.func public @main(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  return %arg0 : tensor<4xf32>
}
