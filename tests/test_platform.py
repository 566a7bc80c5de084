"""Facts of docs/platform.md that a user's workaround depends on."""

import os
import subprocess
import sys
import textwrap

# A reduction fused with the broadcast feeding it (docs/platform.md, "XLA's CPU numerics").
_PROGRAM = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    y = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (64, 32)))
    got = [
        float(jax.jit(lambda y: jnp.sum(y @ jnp.ones((32, 512))))(y)),
        float(jax.jit(lambda y: jnp.max(y @ jnp.ones((32, 512))))(y)),
        float(jax.jit(lambda a: jnp.sum(jnp.broadcast_to(a, (2, 1024, 1024))))(jnp.ones((1024, 1)))),
    ]
    want = [float(y.sum(dtype=np.float64)) * 512, float(y.sum(1, dtype=np.float64).max()), 2.0**21]
    print(all(abs(g - w) <= 1e-4 * abs(w) for g, w in zip(got, want)))
    """
)


def test_keeping_reductions_out_of_ynnpack_makes_fused_broadcast_reductions_right():
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=-reduce", JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.split()[-1] == "True", done.stdout + done.stderr


def test_cpu_collectives_move_narrow_floats_at_the_sizes_widen_collectives_prices():
    """XLA's CPU compiler runs bf16 collectives in f32 and 8- and 4-bit floats in f16 (docs/platform.md,
    "Collectives of narrow floats on CPU"); graph.collective_element_size, which widen-collectives
    prices, must give each type the size the compiled all-gather and all-reduce move."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P
    from jaxlib.mlir import ir

    from autopar.ir.context import context
    from autopar.passes.intra_op.graph import collective_element_size
    from autopar.runtime.hlo import parse_collectives

    mesh = jax.make_mesh((8,), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    types = {
        jnp.bfloat16: "bf16",
        jnp.float16: "f16",
        jnp.float32: "f32",
        jnp.float8_e4m3fn: "f8E4M3FN",
        jnp.float8_e5m2: "f8E5M2",
        jnp.float8_e8m0fnu: "f8E8M0FNU",
        jnp.float4_e2m1fn: "f4E2M1FN",
        jnp.int8: "i8",
    }
    gather = jax.shard_map(
        lambda a: jax.lax.all_gather(a, "d", tiled=True),
        mesh=mesh,
        in_specs=P("d"),
        out_specs=P(),
        check_vma=False,
    )
    total = jax.shard_map(lambda a: jax.lax.psum(a, "d"), mesh=mesh, in_specs=P("d"), out_specs=P())
    with context(), ir.Location.unknown():
        for dtype, name in types.items():
            want = collective_element_size(ir.RankedTensorType.get([64, 32], ir.Type.parse(name)))
            for program, elements in ((gather, 64 * 32), (total, 8 * 32)):
                text = jax.jit(program).lower(jnp.ones((64, 32), dtype)).compile().as_text()
                (compiled,) = parse_collectives(text)
                assert compiled.bytes == elements * want, (name, compiled)
