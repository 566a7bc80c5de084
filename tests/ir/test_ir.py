"""autopar.ir: every input form JAX produces loads into the one context, and every output form
round-trips to the same module."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from autopar import ir as air
from autopar.errors import IRLoadError


def _mlp(x, w1, w2):
    return jnp.tanh(jax.nn.relu(x @ w1) @ w2).sum()


ARGS = (
    jax.ShapeDtypeStruct((8, 16), jnp.float32),
    jax.ShapeDtypeStruct((16, 32), jnp.float32),
    jax.ShapeDtypeStruct((32, 4), jnp.float32),
)


def _asm(module) -> str:
    return module.operation.get_asm(enable_debug_info=False)


def test_lower_abstract_args_keeps_name_stack_locations():
    module = air.lower(_mlp, *ARGS)
    assert module.context is air.context()
    text = module.operation.get_asm(enable_debug_info=True)
    assert "func.func public @main" in text
    assert "jit(_mlp)/dot_general" in text


def test_lower_huge_abstract_model_allocates_nothing():
    # 2**33 floats = 32 GiB if allocated: abstract arguments must lower without touching memory.
    big = jax.ShapeDtypeStruct((2**16, 2**17), jnp.float32)
    module = air.lower(lambda a: (a * 2).sum(), big)
    assert "tensor<65536x131072xf32>" in _asm(module)


@pytest.mark.parametrize("emit", [air.Emit.TEXT, air.Emit.BYTECODE])
def test_text_and_bytecode_round_trip_exactly(emit):
    module = air.lower(_mlp, *ARGS)
    reloaded = air.parse_bytes(air.to_bytes(module, emit))
    assert _asm(reloaded) == _asm(module)


def test_vhlo_round_trip_is_the_same_program():
    # VHLO legalization drops attributes equal to their defaults (precision = DEFAULT) and reorders
    # constants, so the first trip normalizes; from then on it is a fixed point, and computes the same.
    module = air.lower(_mlp, *ARGS)
    once = air.parse_bytes(air.to_bytes(module, air.Emit.VHLO))
    twice = air.parse_bytes(air.to_bytes(once, air.Emit.VHLO))
    assert _asm(twice) == _asm(once)
    values = _random_args()
    np.testing.assert_allclose(_run(once, values), _run(module, values), rtol=1e-6)


def test_text_without_debug_info_is_deterministic():
    first = air.to_bytes(air.lower(_mlp, *ARGS), air.Emit.TEXT, debug_info=False)
    second = air.to_bytes(air.lower(_mlp, *ARGS), air.Emit.TEXT, debug_info=False)
    assert first == second


def test_jax_export_artifacts_load():
    exported = jax.export.export(jax.jit(_mlp))(*ARGS)
    from_vhlo = air.parse_bytes(exported.mlir_module_serialized)
    from_blob = air.parse_bytes(bytes(exported.serialize()))
    assert "func.func public @main" in _asm(from_vhlo)
    assert _asm(from_blob) == _asm(from_vhlo)


def test_save_is_atomic_and_load_reads_back(tmp_path):
    module = air.lower(_mlp, *ARGS)
    out = tmp_path / "m.mlirbc"
    air.save(module, out, air.Emit.BYTECODE)
    assert _asm(air.load(out)) == _asm(module)
    assert [p.name for p in tmp_path.iterdir()] == ["m.mlirbc"]  # no temp file left behind


def test_failed_write_leaves_previous_file_untouched(tmp_path, monkeypatch):
    out = tmp_path / "out.mlir"
    out.write_text("previous")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        air.save(air.lower(_mlp, *ARGS), out)
    assert out.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mlir"]


def _random_args():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(a.shape, dtype=np.float32) for a in ARGS]


def _run(module, values):
    backend = jax.extend.backend.get_backend()
    exe = backend.compile_and_load(air.to_bytes(module), backend.devices()[:1])
    [result] = exe.execute([jax.device_put(v, backend.devices()[0]) for v in values])
    return np.asarray(result)


def test_lowered_module_runs_like_the_function():
    # The module autopar reads is the program jax runs: compile it back and compare numbers.
    values = _random_args()
    np.testing.assert_allclose(_run(air.lower(_mlp, *ARGS), values), _mlp(*values), rtol=1e-5)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"hello", "<bytes>:1:1: custom op 'hello' is unknown"),
        (b"ML\xefR\x63MLIR99\x00\x01", "MLIR bytecode this jaxlib cannot read"),
        (bytes(range(256)), "neither MLIR bytecode nor a serialized jax.export artifact"),
        (b"func.func @f() -> tensor<2xf32> {\n  return\n}\n", "<bytes>:2:3"),
    ],
)
def test_bad_inputs_raise_one_line_errors(data, message):
    with pytest.raises(IRLoadError) as info:
        air.parse_bytes(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(IRLoadError, match="no such file"):
        air.load(tmp_path / "nope.mlir")
