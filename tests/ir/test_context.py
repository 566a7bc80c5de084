"""What planning prints: nothing for CHLO ops (legalized before Shardy's rules are read), and every MLIR
warning as one line naming the user's file:line."""

import types

import jax
import jax.numpy as jnp
from jaxlib.mlir import ir

import autopar
from autopar.ir.context import DiagnosticSink


def test_layer_norm_and_random_normals_plan_without_warnings(capfd) -> None:
    # jnp.square (LayerNorm variances) and jax.random.normal (erf_inv) lower to CHLO, which Shardy has no
    # rules for: it used to warn with a location several kilobytes long.
    def step(w, x, key):
        mean = x.mean(-1, keepdims=True)
        var = jnp.square(x - mean).mean(-1, keepdims=True)
        h = (x - mean) * jax.lax.rsqrt(var + 1e-5) + 0.1 * jax.random.normal(key, x.shape)
        loss = jnp.mean(jnp.square(h @ w))
        return w - 0.1 * jax.grad(lambda w: jnp.mean(jnp.square(h @ w)))(w), loss

    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=(2, 4)))
    f.lower(jnp.ones((32, 16)), jnp.ones((64, 32)), jax.random.key(1))
    err = capfd.readouterr().err
    assert "unknown to SDY" not in err and "chlo" not in err, err
    assert "autopar.clock_cut" not in err


def test_a_warning_is_one_line_with_the_users_file_and_line(capsys) -> None:
    from autopar import ir as air

    with air.context():
        inner = ir.Location.file("/home/user/model.py", 12, 5)
        lib = ir.Location.file("/venv/site-packages/autopar/api/parallelize.py", 207, 22)
        chain = ir.Location.callsite(ir.Location.name("jit(step)/square", inner), [lib])
    warning = types.SimpleNamespace(
        severity=ir.DiagnosticSeverity.WARNING, location=chain, message="op 'x.y' is\n  unknown"
    )
    DiagnosticSink()(warning)
    assert capsys.readouterr().err == "warning: /home/user/model.py:12:5: op 'x.y' is unknown\n"
