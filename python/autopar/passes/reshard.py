"""autopar-reshard: an explicit transfer op in @main for every value one stage hands to another, carrying
its cross-mesh plan (passes/inter_op/reshard, `autopar._core.plan_reshard`)."""

from __future__ import annotations

import math
import types

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from autopar import cost
from autopar.errors import AutoparError, PassError
from autopar.ir import attrs
from autopar.ir.stages import find_function, stage_calls
from autopar.passes.registry import Option, register_pass

DESCRIPTION = f"""
Runs after autopar-shard-stages on a module autopar-inter-op outlined. For every operand of a `func.call`
in @main whose value a call of another stage produced, inserts before the first call that reads it a
transfer `%y = stablehlo.custom_call @{attrs.TRANSFER}(%x)` (same type) and makes the call read %y. One
transfer per value and destination layout (devices, mesh shape, the mesh axes splitting each dim): a
value two stages read gets two. The op's `{attrs.TRANSFER}` attribute is the plan of the cross-mesh
resharding core: the value's shape; `src` and `dst` (stage, devices in mesh order, mesh shape, per dim
the mesh axes splitting it, read from the producing function's result sharding and the reading
function's argument sharding; no sharding: replicated); `sends` (per slice [start, limit) in global
coordinates, the device that sends it and the device that receives it; src = dst is a free local copy);
`gather_groups` (destination devices holding one replicated tile: each receives a part, then they
all-gather it, when `local-all-gather`); `bytes` that cross between devices and the alpha-beta `seconds`
over the link given. The sequential runtime moves each value as its transfer says
(autopar.runtime.transfer); get_execution_plan sums them per pair of stages.

Before (stage 0 on devices 0, 1 splits dim 0 over "x"; stage 1 on devices 2, 3 replicates it):
  %0 = call @stage_0_forward(%arg0) : (tensor<4x4xf32>) -> tensor<4x4xf32>
  %1 = call @stage_1_forward(%0) : (tensor<4x4xf32>) -> tensor<4x4xf32>

After (each half sent once, then all-gathered by devices 2 and 3):
  %0 = call @stage_0_forward(%arg0) : (tensor<4x4xf32>) -> tensor<4x4xf32>
  %1 = stablehlo.custom_call @{attrs.TRANSFER}(%0) {{{attrs.TRANSFER} = {{bytes = 64 : i64,
      dst = {{devices = array<i64: 2, 3>, dim_axes = [array<i64>, array<i64>], mesh = array<i64: 2>,
      stage = 1 : i64}}, gather_groups = [array<i64: 2, 3>], seconds = 1.0000640000000002E-5 : f64,
      sends = [{{dst = 2 : i64, limit = array<i64: 2, 4>, src = 0 : i64, start = array<i64: 0, 0>}},
      {{dst = 3 : i64, limit = array<i64: 4, 4>, src = 1 : i64, start = array<i64: 2, 0>}}],
      shape = array<i64: 4, 4>, src = {{devices = array<i64: 0, 1>, dim_axes = [array<i64: 0>,
      array<i64>], mesh = array<i64: 2>, stage = 0 : i64}}}}}} : (tensor<4x4xf32>) -> tensor<4x4xf32>
  %2 = call @stage_1_forward(%1) : (tensor<4x4xf32>) -> tensor<4x4xf32>
"""

OPTIONS = [
    Option(
        "local-all-gather",
        bool,
        True,
        "send each slice of a tile the destination replicates once, then all-gather it inside the "
        "destination mesh (false: every replica receives the whole tile)",
    ),
    Option(
        "link-alpha",
        float,
        cost.DEFAULT_INTRA_HOST.alpha,
        "seconds per message between two devices (default: autopar.cost's intra-host link)",
    ),
    Option(
        "link-beta",
        float,
        cost.DEFAULT_INTRA_HOST.beta,
        "seconds per byte between two devices (default: autopar.cost's intra-host link)",
    ),
]


def _check_options(options: types.SimpleNamespace) -> None:
    if not (options.link_alpha >= 0 and options.link_beta >= 0):
        raise PassError(
            f"link-alpha and link-beta must be >= 0 seconds, got {options.link_alpha} and {options.link_beta}"
        )


@register_pass(
    argument="autopar-reshard",
    summary="Insert an explicit cross-mesh transfer, with its plan, for every value passed between stages",
    description=DESCRIPTION,
    options=OPTIONS,
    check=_check_options,
)
def reshard(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
    calls = stage_calls(module_op)
    if not calls:
        raise PassError(
            f"the module has no stage functions (no {attrs.STAGE}) called from @main: run autopar-inter-op "
            "(and autopar-shard-stages) before autopar-reshard"
        )
    link = cost.Link(options.link_alpha, options.link_beta)
    meshes = _meshes(module_op)
    producer: dict[ir.Value, tuple[ir.OpView, int]] = {}
    made: dict[tuple[ir.Value, attrs.TransferEnd], ir.Value] = {}
    for op, fn in calls:
        stage = attrs.get_stage(fn)
        for j, operand in enumerate(list(op.operands)):
            if operand not in producer or attrs.get_stage(producer[operand][0]) == stage:
                continue
            src_fn, r = producer[operand]
            what = (
                f"result {r} of @{_name(src_fn)} (stage {attrs.get_stage(src_fn)}) read by @{_name(fn)} "
                f"(stage {stage}) as argument {j}"
            )
            try:
                dst = value_layout(fn, _sharding(_arg_attrs(fn)[j]), operand.type, meshes, what)
                key = (operand, dst)
                if key not in made:
                    source = _sharding(_result_attrs(src_fn)[r])
                    src = value_layout(src_fn, source, operand.type, meshes, what)
                    plan = plan_transfer(operand.type, src, dst, options.local_all_gather, link)
                    made[key] = _insert(op, operand, plan)
            except (AutoparError, ValueError) as err:
                raise PassError(f"{what}: {err}", op.location) from None
            op.operands[j] = made[key]
        for r, value in enumerate(op.results):
            producer[value] = (fn, r)


def value_layout(
    fn: ir.OpView, sharding: ir.Attribute | None, value_type: ir.Type, meshes: dict, what: str
) -> attrs.TransferEnd:
    """A stage value's layout: the devices in the order of the mesh its sharding names (the runtime lays
    that mesh over the stage's `autopar.mesh` devices, permuted by the sdy.mesh's own device ids when it
    has any), the mesh shape and per dim the mesh axes splitting it; replicated over the stage's devices
    when the function has no sharding there."""
    from autopar.runtime import shardings as sh  # IR helpers only: loaded late, they import jax

    mesh = attrs.get_stage_mesh(fn)
    stage = attrs.get_stage(fn)
    assert mesh is not None and stage is not None  # a stage function
    rank = ir.RankedTensorType(value_type).rank
    if sharding is None:
        return attrs.TransferEnd(stage, mesh.device_ids, (len(mesh.device_ids),), ((),) * rank)
    name, spec = sh.sharding_to_spec(sharding, rank, what)
    if name not in meshes:
        raise PassError(f"{what}: its sharding names @{name}, no such sdy.mesh")
    spec_mesh = meshes[name]
    if spec_mesh.size != len(mesh.device_ids):
        raise PassError(
            f"{what}: mesh @{name} has {spec_mesh.size} devices but the stage runs on {len(mesh.device_ids)}"
        )
    order = spec_mesh.device_ids or tuple(range(spec_mesh.size))
    devices = tuple(mesh.device_ids[i] for i in order)
    axes = list(spec_mesh.axis_names)
    dims = []
    for d in range(rank):
        entry = spec[d] if d < len(spec) else None
        names = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        dims.append(tuple(axes.index(n) for n in names))
    return attrs.TransferEnd(stage, devices, tuple(spec_mesh.shape), tuple(dims))


def plan_transfer(
    value_type: ir.Type,
    src: attrs.TransferEnd,
    dst: attrs.TransferEnd,
    local_all_gather: bool,
    link: cost.Link,
) -> attrs.Transfer:
    """The cross-mesh plan of a value of `value_type` from layout `src` to layout `dst`."""
    from autopar.passes.inter_op.graph import tensor_bytes

    shape = tuple(ir.RankedTensorType(value_type).shape)
    itemsize = max(int(round(tensor_bytes(value_type) / max(math.prod(shape), 1))), 1)
    return plan(shape, itemsize, src, dst, local_all_gather, link)


def plan(
    shape: tuple[int, ...],
    itemsize: int,
    src: attrs.TransferEnd,
    dst: attrs.TransferEnd,
    local_all_gather: bool,
    link: cost.Link,
) -> attrs.Transfer:
    """`autopar._core.plan_reshard` of a tensor of `shape` (`itemsize` bytes per element) as a Transfer.
    Raises ValueError naming what does not fit (a dim a layout does not divide, ...)."""
    from autopar import _core

    planned = _core.plan_reshard(
        list(shape),
        itemsize,
        list(src.mesh),
        list(src.devices),
        [list(a) for a in src.dim_axes],
        list(dst.mesh),
        list(dst.devices),
        [list(a) for a in dst.dim_axes],
        local_all_gather,
        link.alpha,
        link.beta,
    )
    sends = tuple(
        attrs.TransferSend(s.src_device, s.dst_device, tuple(s.slice.start), tuple(s.slice.limit))
        for s in planned.sends
    )
    groups = tuple(tuple(g) for g in planned.gather_groups)
    return attrs.Transfer(
        tuple(shape), src, dst, sends, groups, planned.bytes_between_devices, planned.seconds
    )


def transfer_ops(module_op: ir.Operation) -> list[tuple[ir.Operation, attrs.Transfer]]:
    """(op, plan) of every transfer in @main, in program order."""
    main = find_function(module_op)
    out = []
    for op in main.regions[0].blocks[0].operations if main is not None else ():
        transfer = attrs.get_transfer(op) if op.operation.name == "stablehlo.custom_call" else None
        if transfer is not None:
            out.append((op.operation, transfer))
    return out


def _insert(before: ir.Operation, value: ir.Value, plan: attrs.Transfer) -> ir.Value:
    with ir.InsertionPoint(before), before.location:
        op = stablehlo.CustomCallOp([value.type], [value], attrs.TRANSFER)
    attrs.set_transfer(op, plan)
    return op.result


def _meshes(module_op: ir.Operation) -> dict:
    from autopar.runtime import shardings as sh

    return sh.module_meshes(module_op)


def _name(fn: ir.OpView) -> str:
    return ir.StringAttr(fn.attributes["sym_name"]).value


def _dicts(fn: ir.OpView, key: str, count: int) -> list[ir.DictAttr]:
    attributes = fn.operation.attributes
    if key in attributes:
        return [ir.DictAttr(a) for a in ir.ArrayAttr(attributes[key])]
    return [ir.DictAttr.get({}, fn.context) for _ in range(count)]


def _arg_attrs(fn: ir.OpView) -> list[ir.DictAttr]:
    return _dicts(fn, "arg_attrs", len(fn.regions[0].blocks[0].arguments))


def _result_attrs(fn: ir.OpView) -> list[ir.DictAttr]:
    function_type = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
    return _dicts(fn, "res_attrs", len(function_type.results))


def _sharding(d: ir.DictAttr) -> ir.Attribute | None:
    return d["sdy.sharding"] if "sdy.sharding" in d else None
