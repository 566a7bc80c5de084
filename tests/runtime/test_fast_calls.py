"""runtime/fast_calls.py: a stage call's hot path (jax internals) gives exactly what the public path gives."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import autopar.ir as aip
from autopar import runtime

SPECS = [P(), P("x"), P("y"), P(None, "x"), P(None, "y"), P("x", "y"), P("y", "x"), P(("x", "y"))]


def _sdy(spec: P) -> str:
    dims = []
    for entry in (*spec, *([None] * (2 - len(spec)))):
        names = () if entry is None else (entry,) if isinstance(entry, str) else entry
        dims.append("{" + ", ".join(f'"{n}"' for n in names) + "}")
    return f"#sdy.sharding<@mesh, [{', '.join(dims)}]>"


def _identity(arg: P, result: P, device_ids: list[int]) -> runtime.ShardedExecutable:
    """An 8x8 negation with the given layouts on a 2x4 mesh laid over `device_ids`."""
    text = f"""
    sdy.mesh @mesh = <["x"=2, "y"=4], device_ids={device_ids}>
    func.func public @main(%a: tensor<8x8xf32> {{sdy.sharding = {_sdy(arg)}}})
        -> (tensor<8x8xf32> {{sdy.sharding = {_sdy(result)}}}) {{
      %0 = stablehlo.negate %a : tensor<8x8xf32>
      return %0 : tensor<8x8xf32>
    }}"""
    return runtime.compile(aip.parse_text(text), jax.devices())


@pytest.mark.parametrize("device_ids", [list(range(8)), [7, 2, 5, 0, 3, 6, 1, 4]])
def test_placed_arguments_and_assembled_results_equal_the_public_path(device_ids):
    a = np.arange(64, dtype=np.float32).reshape(8, 8)
    for arg, result in itertools.product(SPECS, SPECS[:4]):
        exe = _identity(arg, result, device_ids)
        (placed,) = exe.place_arguments([a])
        public = jax.device_put(a, exe.in_shardings[0])
        assert placed.sharding == public.sharding
        assert {s.device: s.index for s in placed.addressable_shards} == {
            s.device: s.index for s in public.addressable_shards
        }
        for s in placed.addressable_shards:
            np.testing.assert_array_equal(np.asarray(s.data), a[s.index])
        (out,) = exe([a])
        assert out.sharding == NamedSharding(exe.mesh, result)
        np.testing.assert_array_equal(np.asarray(out), -a)
        for s in out.addressable_shards:  # each device holds the tile its sharding says
            np.testing.assert_array_equal(np.asarray(s.data), -a[s.index])
        (again,) = exe([out])  # a result goes back in as it is (no copy) where the layouts agree
        np.testing.assert_array_equal(np.asarray(again), a)


def test_host_arguments_of_another_dtype_or_shape_take_the_checked_path():
    exe = _identity(P("x"), P(), list(range(8)))
    (out,) = exe([np.arange(64, dtype=np.int32).reshape(8, 8).astype(np.float32)])
    np.testing.assert_array_equal(np.asarray(out), -np.arange(64, dtype=np.float32).reshape(8, 8))
    with pytest.raises(TypeError, match="expected shape"):
        exe([np.zeros((4, 8), np.float32)])
    with pytest.raises(TypeError, match="expected dtype"):
        exe([np.zeros((8, 8), np.int32)])
