"""The transfers between pipeline stages a PipeshardParallel plan implies, priced by the cross-mesh
resharding core (passes/inter_op/reshard): for every value one stage's part hands to another stage's part,
the sends from the producer's result layout to the consumer's argument layout (each slice sent once to a
replicated destination, then all-gathered there), their bytes and alpha-beta seconds per micro-batch."""

from __future__ import annotations

import dataclasses
import math

from jaxlib.mlir import ir

from autopar import cost
from autopar.ir import attrs


@dataclasses.dataclass(frozen=True)
class StageTransfer:
    """Values stage `src` hands to stage `dst` per micro-batch (apply-time values once per iteration).

    Attributes:
      src, dst: stage indices.
      values: how many values cross.
      bytes: bytes that cross between devices.
      seconds: the plans' alpha-beta time (intra-host link figures of autopar.cost).
    """

    src: int
    dst: int
    values: int
    bytes: int
    seconds: float


def stage_transfers(module: ir.Module) -> tuple[StageTransfer, ...]:
    """Per (source stage, destination stage) pair, in that order: what crosses and what it costs."""
    from autopar.ir.stages import stage_calls
    from autopar.runtime import shardings as sh

    meshes = sh.module_meshes(module)
    producer: dict[ir.Value, tuple[int, ir.Attribute | None, attrs.StageMesh]] = {}
    totals: dict[tuple[int, int], list[float]] = {}
    link = cost.DEFAULT_INTRA_HOST
    for op, fn in stage_calls(module):
        stage, mesh = attrs.get_stage(fn), attrs.get_stage_mesh(fn)
        if mesh is None:
            continue
        arg_attrs = sh.arg_attrs(fn)
        for j, operand in enumerate(op.operands):
            if operand not in producer or producer[operand][0] == stage:
                continue
            src_stage, src_sharding, src_mesh = producer[operand]
            arg = arg_attrs[j]
            dst_sharding = arg["sdy.sharding"] if "sdy.sharding" in arg else None
            plan = _plan(operand.type, src_sharding, src_mesh, dst_sharding, mesh, meshes, link)
            entry = totals.setdefault((src_stage, stage), [0, 0, 0.0])
            entry[0] += 1
            entry[1] += plan.bytes_between_devices
            entry[2] += plan.seconds
        results = sh.result_attrs(fn)
        for r, value in enumerate(op.results):
            sharding = results[r]["sdy.sharding"] if "sdy.sharding" in results[r] else None
            producer[value] = (stage, sharding, mesh)
    return tuple(
        StageTransfer(s, d, int(v), int(b), float(t)) for (s, d), (v, b, t) in sorted(totals.items())
    )


def _plan(value_type, src_sharding, src_mesh, dst_sharding, dst_mesh, meshes, link):
    from autopar import _core
    from autopar.passes.inter_op.graph import tensor_bytes

    shape = list(ir.RankedTensorType(value_type).shape)
    itemsize = max(int(round(tensor_bytes(value_type) / max(math.prod(shape), 1))), 1)
    src_shape, src_axes = _layout(src_sharding, src_mesh, meshes, len(shape))
    dst_shape, dst_axes = _layout(dst_sharding, dst_mesh, meshes, len(shape))
    return _core.plan_reshard(
        shape,
        itemsize,
        src_shape,
        list(src_mesh.device_ids),
        src_axes,
        dst_shape,
        list(dst_mesh.device_ids),
        dst_axes,
        True,
        link.alpha,
        link.beta,
    )


def _layout(sharding, mesh: attrs.StageMesh, meshes, rank: int):
    """(mesh shape, per dim the mesh axis indices splitting it) of a stage value (replicated if none)."""
    from autopar.runtime import shardings as sh

    if sharding is None:
        return [math.prod(mesh.shape)], [[] for _ in range(rank)]
    name, spec = sh.sharding_to_spec(sharding, rank, "a stage value")
    spec_mesh = meshes[name]
    axes = list(spec_mesh.axis_names)
    dims = []
    for d in range(rank):
        entry = spec[d] if d < len(spec) else None
        names = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        dims.append([axes.index(n) for n in names])
    return list(spec_mesh.shape), dims
