"""autopar.ir.constants: reading constants whose element type the MLIR bindings cannot cast."""

from __future__ import annotations

from jaxlib.mlir import ir

from autopar.ir import constants, context

MODULE = """
func.func @main() -> (tensor<complex<f32>>, tensor<2xcomplex<f32>>, tensor<f32>) {
  %zero = stablehlo.constant dense<(0.0,0.0)> : tensor<complex<f32>>
  %pair = stablehlo.constant dense<[(1.0,2.0), (3.0,4.0)]> : tensor<2xcomplex<f32>>
  %one = stablehlo.constant dense<1.0> : tensor<f32>
  return %zero, %pair, %one : tensor<complex<f32>>, tensor<2xcomplex<f32>>, tensor<f32>
}
"""


def _constants(module: ir.Module) -> list[ir.Operation]:
    return [op.operation for op in module.body.operations[0].regions[0].blocks[0].operations][:3]


def test_a_complex_constant_reads_as_its_text_and_a_real_one_as_its_attribute():
    with context():
        module = ir.Module.parse(MODULE)  # kept alive: its ops are read below
        zero, pair, one = _constants(module)
        assert constants.constant_value(zero) == (
            "stablehlo.constant dense<(0.000000e+00,0.000000e+00)> : tensor<complex<f32>>"
        )
        assert constants.constant_value(pair) != constants.constant_value(zero)
        assert constants.dense_value(zero) is None and constants.dense_value(pair) is None
        dense = constants.dense_value(one)
        assert isinstance(dense, ir.DenseElementsAttr) and dense.is_splat
        assert constants.constant_value(one) == dense
