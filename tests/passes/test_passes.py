"""The pass registry and pipeline parser: what the driver and `autopar.passes.run` share."""

import types

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from autopar import ir as air
from autopar import passes
from autopar.errors import PassError, PipelineError
from autopar.passes import pipeline, registry


def test_split_respects_nesting_and_quotes():
    parts = pipeline.split_top_level("a{x=1,2},func.func(cse,canonicalize),b{s='p,q'}", "pipeline")
    assert parts == ["a{x=1,2}", "func.func(cse,canonicalize)", "b{s='p,q'}"]


def test_parse_pipeline_with_and_without_anchor():
    with_anchor = pipeline.parse_pipeline("builtin.module(autopar-inline{keep-dead-funcs=1},cse)")
    bare = pipeline.parse_pipeline("autopar-inline{keep-dead-funcs=1},cse")
    assert (
        [e.text for e in with_anchor]
        == [e.text for e in bare]
        == ["autopar-inline{keep-dead-funcs=1}", "cse"]
    )
    assert pipeline.parsed_options(with_anchor[0]).keep_dead_funcs is True


def test_option_assignment_forms():
    element = pipeline.Element("x", "a=1 b='two words' flag c={1,2}", "")
    assert pipeline.parse_option_assignments(element) == [
        ("a", "1"),
        ("b", "two words"),
        ("flag", ""),
        ("c", "{1,2}"),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty pass pipeline"),
        ("builtin.module(cse", "missing ')'"),
        ("builtin.module(cse))", "unbalanced ')'"),
        ("builtin.module(a{k='x)", "unterminated quote"),
        ("builtin.module(cse,,cse)", "empty element"),
        ("builtin.modulex(cse)", "expected 'builtin.module(...)'"),
    ],
)
def test_malformed_pipelines(text, message):
    with pytest.raises(PipelineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pipeline.parse_pipeline(text)


def test_typed_options_and_choices():
    opt = registry.Option("mode", str, "a", "help", choices=("a", "b"))
    assert opt.parse("b", "p") == "b"
    with pytest.raises(PipelineError, match="must be one of a, b"):
        opt.parse("c", "p")
    assert registry.Option("n", int, 0, "").parse("0x10", "p") == 16
    assert registry.Option("f", float, 0.0, "").parse("2.5e3", "p") == 2500.0
    with pytest.raises(PipelineError, match="expects int, got '1.5'"):
        registry.Option("n", int, 0, "").parse("1.5", "p")


def test_registered_pass_runs_inside_a_real_pass_manager_with_jaxlib_passes():
    seen = []

    @registry.register_pass(
        argument="test-record-op-count",
        summary="records op counts",
        description="test only",
        options=[registry.Option("scale", int, 1, "multiplier")],
    )
    def record(module_op, options: types.SimpleNamespace) -> None:
        count = 0

        def visit(op):
            nonlocal count
            count += 1
            from jaxlib.mlir import ir

            return ir.WalkResult.ADVANCE

        module_op.walk(visit)
        seen.append(count * options.scale)

    module = air.lower(lambda x: jax.nn.relu(x) + jax.nn.relu(x), jax.ShapeDtypeStruct((4,), jnp.float32))
    passes.run(
        module, "builtin.module(test-record-op-count{scale=10},autopar-inline,cse,test-record-op-count)"
    )
    assert seen[0] > 10 * seen[1] / 10  # inlining + cse shrank the module
    assert seen[0] % 10 == 0


def test_pass_errors_propagate_with_location():
    @registry.register_pass(argument="test-always-fails", summary="fails", description="test only")
    def fail(module_op, options):
        raise PassError("this module is not acceptable", module_op.location)

    module = air.parse_text("func.func @f() {\n  return\n}\n")
    with pytest.raises(PassError, match="this module is not acceptable"):
        passes.run(module, "builtin.module(test-always-fails)")


def test_inline_preserves_semantics():
    def f(x):
        return jnp.sum(jax.nn.relu(x) * jax.nn.sigmoid(x)) + jax.nn.gelu(x).mean()

    arg = jax.ShapeDtypeStruct((16,), jnp.float32)
    module = air.lower(f, arg)
    assert "call @" in air.to_bytes(module, debug_info=False).decode()
    passes.run(module, "builtin.module(autopar-inline)")
    text = air.to_bytes(module, debug_info=False).decode()
    assert "call @" not in text and "func.func private" not in text
    backend = jax.extend.backend.get_backend()
    exe = backend.compile_and_load(text, backend.devices()[:1])
    x = np.linspace(-3, 3, 16, dtype=np.float32)
    [out] = exe.execute([jax.device_put(x, backend.devices()[0])])
    np.testing.assert_allclose(np.asarray(out), f(x), rtol=1e-5)
