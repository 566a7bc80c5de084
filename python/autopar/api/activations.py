"""The activations of a mesh plan: the layouts autopar-intra-op gave the results of the step's dots and
convolutions (the `sdy.sharding_constraint` it writes on each), for `ExecutionPlan.activations` and its
picture. Forward ops (`jvp(...)` in their name) and backward ones (`transpose(jvp(...))`) are numbered
apart, in program order: on a chain of layers, forward dot k is layer k's output."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from jaxlib.mlir import ir

if TYPE_CHECKING:
    from autopar.api.plan import TensorPlacement

HEAVY = ("stablehlo.dot_general", "stablehlo.convolution")


def activation_placements(module: ir.Module) -> tuple[TensorPlacement, ...]:
    """One TensorPlacement (role "activation") per constrained dot or convolution result in @main, named
    like `forward dot_general 0 (jvp()/dot_general)`; () when the module has none (a manual plan)."""
    from autopar.api.plan import TensorPlacement
    from autopar.runtime import shardings as sh
    from autopar.runtime.executable import element_dtype

    try:
        main = sh.main_func(module)
    except Exception:
        return ()
    counts = {"forward": 0, "backward": 0}
    out = []
    for op in main.regions[0].blocks[0].operations:
        if op.operation.name != "sdy.sharding_constraint" or "sharding" not in op.attributes:
            continue
        source = op.operands[0].owner
        if not isinstance(source, (ir.Operation, ir.OpView)) or source.name not in HEAVY:
            continue
        name = _name(source.location)
        direction = "backward" if "transpose(" in name else "forward"
        kind = source.name.split(".")[-1]
        value_type = ir.RankedTensorType(op.result.type)
        try:
            _, spec = sh.sharding_to_spec(op.attributes["sharding"], value_type.rank, name or kind)
            dtype = str(element_dtype(value_type.element_type))
        except Exception:
            continue
        path = f"{direction} {kind} {counts[direction]}" + (f" ({name})" if name else "")
        counts[direction] += 1
        out.append(TensorPlacement(path, tuple(value_type.shape), dtype, spec, "activation"))
    return tuple(out)


def _name(location: ir.Location) -> str:
    """The JAX name stack of an op's location (`jit(step)/jvp()/dot_general` -> `jvp()/dot_general`)."""
    match = re.match(r'loc\("([^"]*)"', str(location))
    return match.group(1).split("/", 1)[-1] if match else ""
