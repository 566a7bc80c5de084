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
