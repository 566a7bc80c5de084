"""autopar.runtime on hand-annotated modules: compile for a mesh of 8 virtual CPU devices, run, compare
with the unsharded program, and check layouts, donation, collectives and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import autopar.ir as aip
from autopar import runtime
from autopar.runtime.hlo import array_bytes, count_collectives, parse_collectives
from autopar.runtime.mesh import on_auto_axes
from numeric import assert_trees_close, normal

MESH_2X4 = runtime.MeshSpec("mesh", ("x", "y"), (2, 4))


def mlp(w1, w2, x):
    return jnp.tanh(x @ w1) @ w2


def _mlp_args():
    return (
        normal((16, 64)) / 4,
        normal((64, 16)) / 8,
        normal((32, 16)),
    )


def _compile(fn, args, arg_specs, result_specs, mesh=MESH_2X4, devices=None):
    module = aip.lower(fn, *args)
    runtime.annotate_main(module, mesh, arg_specs, result_specs)
    return runtime.compile(module, devices)


def test_megatron_mlp_matches_unsharded_with_one_all_reduce():
    args = _mlp_args()
    exe = _compile(mlp, args, [P(None, "y"), P("y", None), P("x")], [P("x")])
    (out,) = exe(list(args))
    assert_trees_close(out, jax.jit(mlp)(*args))
    assert out.sharding.spec == P("x") and out.sharding.mesh.shape == {"x": 2, "y": 4}
    assert [s.spec for s in exe.in_shardings] == [P(None, "y"), P("y"), P("x")]
    counts = count_collectives(exe.as_text())
    assert counts["all-reduce"] == 1 and sum(counts.values()) == 1


def test_arguments_are_placed_and_results_laid_out_as_annotated():
    args = _mlp_args()
    exe = _compile(mlp, args, [P(), P(), P(("x", "y"))], [P(("x", "y"))])
    (out,) = exe([np.asarray(a) for a in args])  # numpy in: placed by the runtime
    assert_trees_close(out, jax.jit(mlp)(*args))
    shard_rows = sorted(s.data.shape[0] for s in out.addressable_shards)
    assert shard_rows == [4] * 8  # 32 rows over 8 devices
    assert count_collectives(exe.as_text())["all-reduce"] == 0


def test_unannotated_results_come_back_replicated():
    args = _mlp_args()
    exe = _compile(lambda w1, w2, x: (mlp(w1, w2, x), x.sum()), args, [P(), P(), P("x")], [None, None])
    out, total = exe(list(args))
    assert out.sharding.spec == P() and total.sharding.spec == P()
    assert_trees_close(out, jax.jit(mlp)(*args))
    assert_trees_close(total, args[2].sum())
    assert "sdy.sharding" in str(exe.module.operation)  # closed explicitly before compiling


def test_hand_written_module_with_permuted_device_ids():
    text = """
    sdy.mesh @mesh = <["x"=2, "y"=4], device_ids=[7, 6, 5, 4, 3, 2, 1, 0]>
    func.func public @main(%a: tensor<8x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {"y"}]>})
        -> (tensor<8x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {"y"}]>}) {
      %0 = stablehlo.multiply %a, %a : tensor<8x4xf32>
      return %0 : tensor<8x4xf32>
    }"""
    devices = jax.devices()
    exe = runtime.compile(aip.parse_text(text), devices)
    assert [d.id for d in exe.mesh.devices.flat] == [devices[7 - i].id for i in range(8)]
    a = np.arange(32, dtype=np.float32).reshape(8, 4)
    (out,) = exe([a])
    assert_trees_close(out, a * a)
    first = next(s for s in out.addressable_shards if s.device == devices[7])
    assert_trees_close(first.data, (a * a)[:4, :1])  # mesh position (0, 0) lives on device 7


def test_donated_argument_with_same_layout_is_consumed():
    def step(w, g):
        return w - 0.5 * g

    w, g = jnp.ones((16, 8)), jnp.full((16, 8), 2.0)
    lowered = jax.jit(step, donate_argnums=(0,), keep_unused=True).lower(w, g)
    module = aip.module_from_lowered(lowered)
    runtime.annotate_main(module, MESH_2X4, [P("x"), P("x")], [P("x")])
    exe = runtime.compile(module)
    assert exe.donated == (0,)
    w_placed = jax.device_put(w, exe.in_shardings[0])
    (out,) = exe([w_placed, g])
    assert_trees_close(out, jnp.zeros((16, 8)))
    assert w_placed.is_deleted()


def test_donated_argument_whose_update_has_another_layout_still_compiles():
    def step(w, g):
        return w - 0.5 * g

    w, g = jnp.ones((16, 8)), jnp.full((16, 8), 2.0)
    module = aip.module_from_lowered(jax.jit(step, donate_argnums=(0,)).lower(w, g))
    runtime.annotate_main(module, MESH_2X4, [P("x"), P()], [P(None, "y")])
    (out,) = runtime.compile(module)([w, g])
    assert_trees_close(out, jnp.zeros((16, 8)))
    assert out.sharding.spec == P(None, "y")


def test_mesh_that_does_not_match_the_devices_is_a_value_error():
    module = aip.lower(mlp, *_mlp_args())
    runtime.annotate_main(module, MESH_2X4, [P(), P(), P("x")], [P()])
    with pytest.raises(ValueError, match=r"2x4 \(8 devices\) but 4 devices"):
        runtime.compile(module, jax.devices()[:4])


def test_non_dividing_sharding_is_rejected():
    module = aip.lower(lambda a: a * 2, jnp.ones((6, 4)))
    runtime.annotate_main(module, MESH_2X4, [P("y")], [P()])
    with pytest.raises(runtime.ShardingError, match="dimension 0 of size 6 is split 4 ways"):
        runtime.compile(module)


def test_module_without_mesh_is_rejected():
    module = aip.lower(lambda a: a * 2, jnp.ones((4,)))
    with pytest.raises(runtime.ShardingError, match="no sdy.mesh"):
        runtime.compile(module)


def test_wrong_argument_shape_is_a_type_error():
    args = _mlp_args()
    exe = _compile(mlp, args, [P(), P(), P("x")], [P()])
    with pytest.raises(TypeError, match=r"argument 2: expected shape \(32, 16\)"):
        exe([args[0], args[1], jnp.ones((8, 16))])


@pytest.mark.parametrize(
    ("shape", "names", "devices", "message"),
    [
        ((2, 4), ("x", "y"), 4, "mesh shape 2x4 needs 8 devices but 4 devices"),
        ((2, 4), ("x",), 8, "1 axis names"),
        ((2, 2), ("x", "x"), 4, "repeat a name"),
        ((0,), ("x",), 8, "positive integers"),
    ],
)
def test_check_mesh_shape_errors(shape, names, devices, message):
    with pytest.raises(ValueError, match=message):
        runtime.check_mesh_shape(shape, names, devices)


HLO_LINES = """
  %all-reduce.1 = f32[] all-reduce(%r), replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_1'}
  %ar.3 = (f32[8,8]{1,0}, f32[]) all-reduce(%d, %e), \
replica_groups=mesh['axis_0'=1,'axis_1'=2,'axis_2'=4] {'axis_1'}
  %ag = bf16[16,64]{1,0} all-gather(%p), channel_id=4, replica_groups=[2,4]<=[8], dimensions={0}
  %rs = f32[4,64]{1,0} reduce-scatter(%q), replica_groups=[4,2]<=[2,4]T(1,0), dimensions={0}
  %a2a = s32[8,8]{1,0} all-to-all(%t), replica_groups={{0,1,2,3,4,5,6,7}}
  %ags = (f32[2,8]{1,0}, f32[8,8]{1,0}) all-gather-start(%u), replica_groups={{0,4},{1,5},{2,6},{3,7}}
  ROOT %cp = f32[2]{0} collective-permute(%v), source_target_pairs={{0,1},{1,0}}
  %ar.9 = f32[4]{0} all-reduce(%w), replica_groups=mesh['axis_0'=8,'axis_1'=1,'axis_2'=1] {'axis_0'}
  %ag.2 = f32[512,64]{0,1} all-gather(%c), channel_id=1, \
replica_groups=mesh['axis_0'=1,'axis_1'=4,'axis_2'=2], device_ids=([2,4]T(1,0)) {'axis_1'}, dimensions={1}
  %ag.3 = f32[2,64]{1,0} all-gather(%c), \
replica_groups=mesh['axis_0'=1,'axis_1'=4,'axis_2'=2], device_ids=([2,4]T(1,0)) {'axis_2'}, dimensions={0}
  %not = f32[2]{0} add(%all-reduce.1, %all-reduce.1)
"""


def test_array_bytes_of_arrays_and_tuples():
    assert array_bytes("f32[8,64]{1,0}") == 8 * 64 * 4
    assert array_bytes("(bf16[4,4], pred[3], s64[2], f32[])") == 32 + 3 + 16 + 4
    assert array_bytes("token[]") == 0
    # Narrow floats: the width is the number after the letters (f4e2m1fn is not 421 bits), a byte at least.
    assert array_bytes("f4e2m1fn[8]") == array_bytes("f8e4m3fn[8]") == array_bytes("s4[8]") == 8
    assert array_bytes("f8e8m0fnu[2], c64[1]") == 2 + 8


def test_parse_collectives_kinds_sizes_and_axes():
    found = parse_collectives(HLO_LINES, {"x": 2, "y": 4})
    assert [(c.kind, c.bytes, c.axes) for c in found] == [
        ("all-reduce", 4, ("y",)),
        ("all-reduce", 260, ("x",)),
        ("all-gather", 2048, ("y",)),
        ("reduce-scatter", 1024, ("x",)),
        ("all-to-all", 256, ("x", "y")),
        ("all-gather", 256, ("x",)),
        ("collective-permute", 8, ()),
        # XLA's mesh view: one axis for our two, and the devices in another order (autopar named them
        # `axis_0` and nothing).
        ("all-reduce", 16, ("x", "y")),
        ("all-gather", 131072, ("y",)),
        ("all-gather", 512, ("x",)),
    ]
    assert count_collectives(HLO_LINES) == {
        "all-reduce": 3,
        "all-gather": 4,
        "reduce-scatter": 1,
        "all-to-all": 1,
        "collective-permute": 1,
    }


def test_an_array_on_explicit_axes_moves_to_auto_axes_without_a_copy():
    mesh = jax.make_mesh((8,), ("d",))  # Explicit axes
    x = jax.device_put(jnp.arange(64.0).reshape(16, 4), jax.sharding.NamedSharding(mesh, P("d")))
    y = on_auto_axes(x)
    assert y.sharding.mesh.axis_types == (jax.sharding.AxisType.Auto,) and y.sharding.spec == P("d")
    pointers = lambda a: [s.data.unsafe_buffer_pointer() for s in a.addressable_shards]  # noqa: E731
    assert pointers(y) == pointers(x)  # the same buffers
    np.testing.assert_array_equal(np.asarray(y[:8]), np.arange(32.0).reshape(8, 4))
    host = np.ones(3)
    assert on_auto_axes(host) is host and on_auto_axes(y) is y
