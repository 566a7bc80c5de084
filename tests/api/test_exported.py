"""Sharded jax.export out: `autopar.export` and `autopar-opt --emit=exported` write a `jax.export.Exported`
that a fresh process with only jax deserializes and calls on a mesh of the planned shape; an input
Exported that carries shardings is re-planned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import autopar
from autopar.api.exported import ExportError
from autopar.runtime import shardings as sh
from autopar.runtime.executable import clone
from numeric import assert_trees_close, normal

PYTHON_DIR = Path(autopar.__file__).resolve().parents[1]
CPU = autopar.AutoShardingOption(device_flops=1e10, device_memory_bandwidth=1e11)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(PYTHON_DIR), JAX_PLATFORMS="cpu")


def _mesh(shape, names=None):
    names = names or ("x", "y", "z")[: len(shape)]
    return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(shape))


def mlp_step(params, x):
    def loss(p):
        h = x
        for i, w in enumerate(p):
            h = h @ w
            if i + 1 < len(p):
                h = jax.nn.relu(h)
        return jnp.mean(h**2)

    value, grads = jax.value_and_grad(loss)(params)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value


def transformer_step(p, x):
    def layer(p, x):
        def norm(v):
            v = v - v.mean(-1, keepdims=True)
            return v * jax.lax.rsqrt((v**2).mean(-1, keepdims=True) + 1e-5)

        h = norm(x)
        q, k, v = (jnp.einsum("bsd,dhk->bshk", h, p[n]) for n in ("wq", "wk", "wv"))
        attn = jax.nn.softmax(jnp.einsum("bqhk,bshk->bhqs", q, k) / 4.0, axis=-1)
        x = x + jnp.einsum("bqhk,hkd->bqd", jnp.einsum("bhqs,bshk->bqhk", attn, v), p["wo"])
        return x + jax.nn.gelu(norm(x) @ p["w1"]) @ p["w2"]

    grads = jax.grad(lambda p: jnp.mean(layer(p, x) ** 2))(p)
    return jax.tree.map(lambda a, g: a - 0.1 * g, p, grads)


def _mlp_args():
    return [normal((64, 256), 0) / 8, normal((256, 64), 1) / 16], normal((16, 64), 2)


def _transformer_args():
    d, heads, ffn = 64, 4, 256
    p = {
        "wq": normal((d, heads, d // heads), 3) / 8,
        "wk": normal((d, heads, d // heads), 4) / 8,
        "wv": normal((d, heads, d // heads), 5) / 8,
        "wo": normal((heads, d // heads, d), 6) / 8,
        "w1": normal((d, ffn), 7) / 8,
        "w2": normal((ffn, d), 8) / 16,
    }
    return p, normal((4, 16, d), 9)


CASES = {
    "mlp_2x4": (mlp_step, _mlp_args, (2, 4)),
    "transformer_8": (transformer_step, _transformer_args, (8,)),
}

# Runs in a fresh process that imports only jax: deserialize, place the inputs with the Exported's own
# input shardings on a mesh of the planned shape, call, save the outputs and their shardings.
CALLER = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from jax.sharding import AxisType
    for blob, shape, names, inputs, outputs in json.loads(sys.argv[1]):
        exp = jax.export.deserialize(bytearray(open(blob, "rb").read()))
        mesh = jax.make_mesh(tuple(shape), tuple(names), axis_types=(AxisType.Auto,) * len(shape))
        data = np.load(inputs)
        leaves = [jax.device_put(data[f"a{i}"], s)
                  for i, s in enumerate(exp.in_shardings_jax(mesh))]
        args, kwargs = jax.tree.unflatten(exp.in_tree, leaves)
        out = jax.tree.leaves(exp.call(*args, **kwargs))
        np.savez(outputs, *[np.asarray(o) for o in out])
        with open(outputs + ".json", "w") as f:
            json.dump([str(o.sharding.spec) for o in out], f)
    """
)


def _call_in_fresh_process(jobs) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CALLER, json.dumps(jobs)], capture_output=True, env=_env(), timeout=600
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]


def _plan_specs(fn, args, shape):
    """The argument and result specs of the plan `parallelize` makes for the same function and mesh."""
    f = autopar.parallelize(fn, method=autopar.ShardParallel(mesh_shape=shape, auto_sharding_option=CPU))
    layout = sh.close_main_shardings(clone(f.lower(*args).module))
    return list(layout.arg_specs), list(layout.result_specs)


def _specs(shardings):
    return [_canonical(s.spec) for s in shardings]


def _canonical(spec):
    entries = list(spec)
    while entries and entries[-1] is None:
        entries.pop()
    return P(*entries)


def test_exported_plans_run_in_a_fresh_process(tmp_path):
    jobs, expected = [], {}
    for name, (fn, make_args, shape) in CASES.items():
        args = make_args()
        exp = autopar.export(
            fn, *args, method=autopar.ShardParallel(mesh_shape=shape, auto_sharding_option=CPU)
        )
        assert exp.nr_devices == 8 and exp.fun_name == fn.__name__
        mesh = _mesh(shape)
        # The Exported's layouts are exactly the plan's, argument by argument and result by result.
        arg_specs, result_specs = _plan_specs(fn, args, shape)
        assert _specs(exp.in_shardings_jax(mesh)) == arg_specs
        assert _specs(exp.out_shardings_jax(mesh)) == result_specs
        assert any(s != P() for s in arg_specs + result_specs), f"{name}: the plan shards nothing"
        blob = tmp_path / f"{name}.jax_exported"
        blob.write_bytes(exp.serialize())
        leaves = jax.tree.leaves(args)
        np.savez(tmp_path / f"{name}.in.npz", **{f"a{i}": np.asarray(a) for i, a in enumerate(leaves)})
        out = str(tmp_path / f"{name}.out.npz")
        jobs.append([str(blob), list(shape), list(mesh.axis_names), str(tmp_path / f"{name}.in.npz"), out])
        expected[name] = (jax.tree.leaves(jax.jit(fn)(*args)), result_specs, out)
    _call_in_fresh_process(jobs)
    for name, (reference, result_specs, out) in expected.items():
        got = np.load(out)
        assert_trees_close([got[f"arr_{i}"] for i in range(len(reference))], reference, atol=1e-5)
        specs = json.loads(Path(out + ".json").read_text())
        assert [str(_canonical(eval(s, {"PartitionSpec": P, "P": P}))) for s in specs] == [
            str(s) for s in result_specs
        ], name


def test_export_takes_a_mesh_and_needs_no_devices():
    params, x = _mlp_args()
    exp = autopar.export(mlp_step, params, x, mesh=_mesh((2, 4), ("data", "model")))
    named = exp.in_shardings_jax(_mesh((2, 4), ("data", "model")))
    assert {a for s in named for e in s.spec if e for a in ((e,) if isinstance(e, str) else e)} <= {
        "data",
        "model",
    }
    # 16 devices in a process that has 8: planning counts devices, it does not use them.
    big = autopar.export(
        mlp_step,
        [jax.ShapeDtypeStruct((64, 256), np.float32), jax.ShapeDtypeStruct((256, 64), np.float32)],
        jax.ShapeDtypeStruct((16, 64), np.float32),
        mesh=16,
    )
    assert big.nr_devices == 16
    assert jax.export.deserialize(big.serialize()).nr_devices == 16


def test_platforms_are_names_and_one_name_is_one_platform():
    params, x = _mlp_args()
    # jax.export reads platforms="cuda" as the platforms c, u, d, a.
    assert autopar.export(mlp_step, params, x, mesh=8, platforms="cuda").platforms == ("cuda",)
    both = autopar.export(mlp_step, params, x, mesh=8, platforms=["cpu", "cuda"])
    assert both.platforms == ("cpu", "cuda")
    with pytest.raises(TypeError, match=r"platforms must be platform names such as \('cpu', 'cuda'\), got"):
        autopar.export(mlp_step, params, x, mesh=8, platforms=[None])


def test_export_with_static_weak_typed_and_key_arguments():
    def f(w, x, lr, n, key):
        return w - lr * n * jnp.tanh(x @ w).sum() + jax.random.normal(key, w.shape)

    w, x, key = normal((16, 32), 1), normal((8, 16), 2), jax.random.key(0)
    planned = autopar.export(f, w, x, 0.1, 3, key, static_argnums=(3,), mesh=8)
    assert planned.in_avals[2].weak_type  # as jax.export records it (its serialization drops weak types)
    exp = jax.export.deserialize(planned.serialize())
    assert jax.dtypes.issubdtype(exp.in_avals[3].dtype, jax.dtypes.prng_key)
    got = _call_on_mesh(exp, _mesh((8,)), w, x, np.float32(0.1), key)
    assert_trees_close(got, jax.jit(f, static_argnums=(3,))(w, x, 0.1, 3, key), atol=1e-5)


def test_export_refuses_what_one_exported_cannot_hold():
    params, x = _mlp_args()
    with pytest.raises(ExportError, match="PipeshardParallel"):
        autopar.export(mlp_step, params, x, method=autopar.PipeshardParallel(num_micro_batches=2))
    with pytest.raises(ValueError, match="disagree"):
        autopar.export(mlp_step, params, x, mesh=(2, 4), method=autopar.ShardParallel(mesh_shape=8))

    def noisy(params, x):
        jax.debug.print("{}", x.sum())
        return mlp_step(params, x)

    with pytest.raises(ExportError, match="host callbacks"):
        autopar.export(noisy, params, x)


# ---- autopar-opt --emit=exported ---------------------------------------------------------------------


def _opt(*argv, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "autopar.opt", *map(str, argv)],
        capture_output=True,
        env=_env(),
        cwd=cwd,
        timeout=300,
    )


def _one_error_line(result) -> str:
    assert result.returncode == 1, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autopar-opt: error: "), lines
    return lines[0]


def _call_on_mesh(exp, mesh, *args):
    shardings = exp.in_shardings_jax(mesh)
    placed = [
        a if s is None else jax.device_put(a, s)
        for a, s in zip(jax.tree.leaves(args), shardings, strict=True)
    ]
    call_args, kwargs = jax.tree.unflatten(exp.in_tree, placed)
    return exp.call(*call_args, **kwargs)


def test_cli_emit_exported_writes_a_file_that_deserializes(tmp_path):
    params, x = _mlp_args()
    source = tmp_path / "step.mlir"
    source.write_text(jax.jit(mlp_step).lower(params, x).as_text())
    out = tmp_path / "step.exported"
    result = _opt(
        source,
        "--pass-pipeline=builtin.module(autopar-inline,autopar-intra-op{mesh=2x4 device-flops=1e10})",
        "--emit=exported",
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"" and result.stderr == b"", result.stderr.decode()
    exp = jax.export.deserialize(bytearray(out.read_bytes()))
    assert exp.nr_devices == 8 and exp.platforms == ("cpu",)
    # A text module has no pytrees: the Exported takes @main's arguments flat and returns a tuple.
    got = _call_on_mesh(exp, _mesh((2, 4)), *jax.tree.leaves((params, x)))
    assert_trees_close(list(got), jax.tree.leaves(jax.jit(mlp_step)(params, x)), atol=1e-5)


def test_cli_replans_a_sharded_jax_export(tmp_path):
    mesh = _mesh((2, 4))

    def f(w, unused, x):
        h = jax.lax.with_sharding_constraint(jnp.tanh(x @ w), NamedSharding(mesh, P("x", "y")))
        return {"out": h @ w.T}

    w, u, x = normal((64, 128), 1), normal((3,), 3), normal((32, 64), 2)
    given = jax.export.export(
        jax.jit(f, in_shardings=(NamedSharding(mesh, P(None, "y")), None, NamedSharding(mesh, P("x"))))
    )(w, u, x)
    assert given.module_kept_var_idx == (0, 2)  # jax drops the unused argument from the module
    source = tmp_path / "given.exported"
    source.write_bytes(given.serialize())
    out = tmp_path / "replanned.exported"
    pipeline = "--pass-pipeline=builtin.module(autopar-inline,autopar-intra-op{mesh=8})"
    result = _opt(source, pipeline, "--emit=exported", "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    exp = jax.export.deserialize(bytearray(out.read_bytes()))
    # Re-planned for a one-axis mesh of 8; the signature (pytrees, name) is the input Exported's.
    assert exp.in_tree == given.in_tree and exp.out_tree == given.out_tree and exp.fun_name == "f"
    assert exp.module_kept_var_idx == (0, 2) and exp.in_shardings_jax(_mesh((8,)))[1] is None
    assert '"y"' not in exp.mlir_module() and '["x"=8]' in exp.mlir_module()
    got = _call_on_mesh(exp, _mesh((8,)), w, u, x)
    assert_trees_close(got, jax.jit(f)(w, u, x), atol=1e-5)
    # Dropped (the default): the text shows the program without the input's mesh.
    text = _opt(source).stdout.decode()
    assert "sdy.mesh" not in text and "sharding_constraint" not in text and "mhlo.num_partitions" not in text
    # Kept: as stored without a planner; with one, each input keeps its layout and the rest is planned.
    kept = _opt(source, "--input-shardings=keep").stdout.decode()
    assert 'sdy.mesh @mesh = <["x"=2, "y"=4]>' in kept and "sharding_constraint" in kept
    same_mesh = "--pass-pipeline=builtin.module(autopar-shard{mesh=2x4})"
    result = _opt(source, "--input-shardings=keep", same_mesh, "--emit=exported", "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    exp = jax.export.deserialize(bytearray(out.read_bytes()))
    shardings = exp.in_shardings_jax(mesh)
    assert shardings[0].spec == P(None, "y") and shardings[2].spec == P("x")
    assert_trees_close(_call_on_mesh(exp, mesh, w, u, x), jax.jit(f)(w, u, x), atol=1e-5)
    failed = _opt(source, "--input-shardings=keep", pipeline)
    line = failed.stderr.decode().splitlines()[0]  # then the note with the reproducer
    assert failed.returncode == 1 and "argument 0 (64x128): its kept sharding is on a mesh [x=2, y=4]" in line
    assert "planned [x=8]" in line and "=drop" in line
    stages = "--pass-pipeline=builtin.module(autopar-pipeshard{cluster=1x8})"
    line = _one_error_line(_opt(source, "--input-shardings=keep", stages))
    assert "autopar-pipeshard cannot plan around" in line and "autopar-shard" in line


def test_cli_emit_exported_errors_are_one_line_and_write_nothing(tmp_path):
    unplanned = tmp_path / "unplanned.mlir"
    unplanned.write_text(jax.jit(lambda a: jnp.tanh(a)).lower(np.ones((8, 4), np.float32)).as_text())
    out = tmp_path / "out.exported"
    line = _one_error_line(_opt(unplanned, "--emit=exported", "-o", out))
    assert "no sdy.mesh" in line and "autopar-intra-op" in line
    assert not out.exists() and not list(tmp_path.glob(".out.exported*"))
    inputs = Path(__file__).resolve().parents[1] / "lit" / "Inputs" / "mlp_step.mlir"
    pipeshard = (
        "--pass-pipeline=builtin.module(autopar-cluster-layers{num-layers=2},"
        "autopar-inter-op{cluster=1x2 micro-batches=4 submesh-shapes=1x1 device-flops=1e6})"
    )
    line = _one_error_line(_opt(inputs, pipeshard, "--emit=exported", "-o", out))
    assert "pipeshard plan" in line
    assert not out.exists()
    # A print's callback is named by an index into this process's functions: the file, once called,
    # segfaulted the process that loaded it.
    printing = tmp_path / "printing.mlir"
    printing.write_text(
        jax.jit(lambda a: jax.debug.print("{}", a.sum()) or a * 2).lower(np.ones((8, 4))).as_text()
    )
    line = _one_error_line(
        _opt(
            printing, "--pass-pipeline=builtin.module(autopar-shard{mesh=2x4})", "--emit=exported", "-o", out
        )
    )
    assert "calls back into Python" in line and "remove the callbacks" in line
    assert not out.exists()


def test_cli_names_why_an_input_exported_cannot_be_re_exported(tmp_path):
    # The line said "multi-platform, shape-polymorphic or has ordered effects" whichever it was.
    step = jax.jit(lambda w, x: jnp.tanh(x @ w))
    source = tmp_path / "two_platforms.exported"
    args = np.ones((16, 8), np.float32), np.ones((32, 16), np.float32)
    source.write_bytes(jax.export.export(step, platforms=("cpu", "cuda"))(*args).serialize())
    out = tmp_path / "out.exported"
    line = _one_error_line(
        _opt(source, "--pass-pipeline=builtin.module(autopar-shard{mesh=2x4})", "--emit=exported", "-o", out)
    )
    assert "is for 2 platforms (cpu, cuda)" in line and "export it for one platform" in line
    assert not out.exists()


def test_cli_binds_the_symbolic_dims_of_a_shape_polymorphic_export(tmp_path):
    # An Exported for any batch and sequence length is planned at given sizes and runs there like jax.jit
    # (before, every planner stopped at its dynamic shapes, with no way to give sizes).
    params, x = _transformer_args()
    b, s = jax.export.symbolic_shape("b, s")
    shapes = (jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params),)
    given = jax.export.export(jax.jit(transformer_step))(
        *shapes, jax.ShapeDtypeStruct((b, s, x.shape[2]), x.dtype)
    )
    source, out = tmp_path / "any_size.exported", tmp_path / "sized.exported"
    source.write_bytes(given.serialize())
    pipeline = "--pass-pipeline=builtin.module(autopar-shard{mesh=2x4})"
    sizes = f"--bind-dims=b={x.shape[0]}, s={x.shape[1]}"
    env = {k: v for k, v in _env().items() if k not in ("JAX_PLATFORMS", "TF_CPP_MIN_LOG_LEVEL")}
    result = subprocess.run(
        [sys.executable, "-m", "autopar.opt", source, pipeline, sizes, "--emit=exported", "-o", out],
        capture_output=True,
        env=env,
        timeout=300,
    )
    # Quiet: JAX's backend start wrote "PjRt-IFRT device count" INFO lines once jaxlib's MLIR had loaded.
    assert result.returncode == 0 and result.stdout == b"" and result.stderr == b"", result.stderr.decode()
    exp = jax.export.deserialize(bytearray(out.read_bytes()))
    assert (
        exp.in_avals[-1].shape == x.shape
        and exp.in_tree == given.in_tree
        and exp.fun_name == "transformer_step"
    )
    assert_trees_close(
        _call_on_mesh(exp, _mesh((2, 4)), params, x), jax.jit(transformer_step)(params, x), atol=1e-5
    )
    # Unbound, the planner's error names the option; a dim the input lacks, or a missing one, is named.
    line = _opt(source, pipeline).stderr.decode().splitlines()[0]
    assert "has dynamic shape tensor<?x?x64xf32>" in line and "--bind-dims (e.g. b=32)" in line
    line = _one_error_line(_opt(source, pipeline, "--bind-dims=b=4,t=16"))
    assert "--bind-dims names t, which" in line and "(its symbolic dims: b, s)" in line
    line = _one_error_line(_opt(source, pipeline, "--bind-dims=b=4"))
    assert "dims s are symbolic: give each a size, e.g. --bind-dims b=<size>,s=<size>" in line
    # Sizes the export's constraints reject are refused with the constraint.
    (at_least,) = jax.export.symbolic_shape("n", constraints=("n >= 16",))
    bounded = jax.export.export(jax.jit(jnp.tanh))(jax.ShapeDtypeStruct((at_least, 8), jnp.float32))
    source.write_bytes(bounded.serialize())
    line = _one_error_line(_opt(source, "--bind-dims=n=8", "-o", out))
    assert "rejects these sizes: Input shapes do not match the symbolic shape constraint n >= 16" in line
    assert _opt(source, "--bind-dims=n=16", "-o", tmp_path / "n16.mlir").returncode == 0
    assert "tensor<16x8xf32>" in (tmp_path / "n16.mlir").read_text()
    # An Exported for another platform binds here too, lowered for its own platform.
    cuda = jax.export.export(jax.jit(jnp.tanh), platforms=("cuda",))(
        jax.ShapeDtypeStruct((b, 8), jnp.float32)
    )
    source.write_bytes(cuda.serialize())
    result = _opt(source, "--bind-dims=b=16", pipeline, "--emit=exported", "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    exp = jax.export.deserialize(bytearray(out.read_bytes()))
    assert exp.platforms == ("cuda",) and exp.in_avals[0].shape == (16, 8) and exp.nr_devices == 8
