"""Plans of autopar-intra-op checked the only way that counts: compiled by XLA for 8 virtual CPU devices,
run, compared with the unsharded program, and their collectives counted in the compiled HLO."""

from __future__ import annotations

import re

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import sdy

from autopar import ir as aio
from autopar import passes

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
# A CPU-like device makes compute worth splitting even for test-sized models.
CPU_MODEL = "device-flops=1e10 device-memory-bandwidth=1e11"


def plan(fn, *args, options: str = "", batch_args=(), parameter_args=()) -> ir.Module:
    module = aio.lower(fn, *args)
    _mark_args(module, batch_args, parameter_args)
    passes.run(module, f"builtin.module(autopar-inline,autopar-intra-op{{{CPU_MODEL} {options}}})")
    return module


def _mark_args(module: ir.Module, batch_args, parameter_args) -> None:
    main = next(op for op in module.body.operations if op.operation.name == "func.func")
    with module.context:
        old = list(ir.ArrayAttr(main.attributes["arg_attrs"])) if "arg_attrs" in main.attributes else []
        dicts = []
        for i in range(len(main.regions[0].blocks[0].arguments)):
            entries = {n.name: n.attr for n in ir.DictAttr(old[i])} if i < len(old) else {}
            if i in batch_args:
                entries["autopar.batch"] = ir.UnitAttr.get()
            if i in parameter_args:
                entries["autopar.parameter"] = ir.UnitAttr.get()
            dicts.append(ir.DictAttr.get(entries))
        main.attributes["arg_attrs"] = ir.ArrayAttr.get(dicts)


def _specs(main: ir.Operation, key: str, axis_names) -> list[PartitionSpec]:
    specs = []
    for d in ir.ArrayAttr(main.attributes[key]):
        sharding = sdy.TensorShardingAttr(ir.DictAttr(d)["sdy.sharding"])
        dims = []
        for dim in sharding.dimension_shardings:
            axes = [sdy.AxisRefAttr(a).name for a in sdy.DimensionShardingAttr(dim).axes]
            dims.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
        specs.append(PartitionSpec(*dims))
    return specs


def mesh_of(module: ir.Module) -> Mesh:
    mesh_op = next(op for op in module.body.operations if op.operation.name == "sdy.mesh")
    text = str(mesh_op)
    axes = re.findall(r'"(\w+)"=(\d+)', text)
    shape = tuple(int(s) for _, s in axes)
    devices = np.array(jax.devices()[: int(np.prod(shape))]).reshape(shape)
    return Mesh(devices, tuple(n for n, _ in axes))


def run_planned(module: ir.Module, *args):
    """Compiles the annotated module for its mesh and runs it; returns (outputs, compiled HLO text)."""
    mesh = mesh_of(module)
    main = next(op for op in module.body.operations if op.operation.name == "func.func")
    in_specs = _specs(main, "arg_attrs", mesh.axis_names)
    out_specs = _specs(main, "res_attrs", mesh.axis_names)
    devices = list(mesh.devices.flat)
    n = len(devices)
    options = jax.extend.backend.get_compile_options(
        num_replicas=1, num_partitions=n, device_assignment=np.array([d.id for d in devices]).reshape(1, n)
    )
    exe = jax.extend.backend.get_backend().compile_and_load(
        module.operation.get_asm(enable_debug_info=False), devices, options
    )
    flat_args = jax.tree.leaves(args)
    inputs = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(flat_args, in_specs, strict=True)]
    results = exe.execute_sharded(inputs).disassemble_into_single_device_arrays()
    outputs = []
    for shards, spec in zip(results, out_specs, strict=True):
        sharding = NamedSharding(mesh, spec)
        shape = _global_shape(shards[0].shape, spec, mesh)
        outputs.append(np.asarray(jax.make_array_from_single_device_arrays(shape, sharding, shards)))
    return outputs, exe.hlo_modules()[0].to_string()


def _global_shape(local, spec: PartitionSpec, mesh: Mesh) -> tuple[int, ...]:
    shape = list(local)
    for d, entry in enumerate(spec):
        names = () if entry is None else (entry,) if isinstance(entry, str) else entry
        for name in names:
            shape[d] *= mesh.shape[name]
    return tuple(shape)


def count(hlo: str) -> dict[str, int]:
    return {c: len(re.findall(rf"\b{c}(?:-start)?\(", hlo)) for c in COLLECTIVES}


def check_numerics(fn, module, *args, rtol=1e-4, atol=1e-5):
    expected = jax.tree.leaves(jax.jit(fn)(*args))
    got, hlo = run_planned(module, *args)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, np.asarray(e), rtol=rtol, atol=atol)
    return hlo


def arg_specs(module: ir.Module) -> list[PartitionSpec]:
    main = next(op for op in module.body.operations if op.operation.name == "func.func")
    return _specs(main, "arg_attrs", ())


def _rand(key, shape, scale=0.1):
    return jax.random.normal(jax.random.PRNGKey(key), shape, jnp.float32) * scale


# ---------------------------------------------------------------- MLP training step

def mlp_loss(params, x, y):
    h = x
    for i, w in enumerate(params):
        h = h @ w
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return jnp.mean((h - y) ** 2)


def sgd_step(params, x, y):
    loss, grads = jax.value_and_grad(mlp_loss)(params, x, y)
    return [w - 0.1 * g for w, g in zip(params, grads, strict=True)], loss


@pytest.mark.parametrize("mesh", ["1x8", "8"])
def test_mlp_large_batch_small_hidden_is_data_parallel(mesh):
    batch, hidden = 1024, 32
    params = [_rand(1, (hidden, hidden)), _rand(2, (hidden, hidden))]
    x, y = _rand(3, (batch, hidden), 1.0), _rand(4, (batch, hidden), 1.0)
    module = plan(sgd_step, params, x, y, options=f"mesh={mesh}", batch_args=(2, 3), parameter_args=(0, 1))
    specs = arg_specs(module)
    assert specs[0] == PartitionSpec(None, None) and specs[1] == PartitionSpec(None, None)  # weights replicated
    assert specs[2][0] is not None and specs[3][0] is not None  # batch split
    hlo = check_numerics(sgd_step, module, params, x, y)
    counts = count(hlo)
    # One gradient all-reduce per weight plus the loss (XLA may combine them); nothing else.
    assert 1 <= counts["all-reduce"] <= 3, counts
    assert counts["all-gather"] == counts["all-to-all"] == counts["reduce-scatter"] == 0, counts
