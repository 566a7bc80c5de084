"""The transfers between pipeline stages of a PipeshardParallel plan, as `autopar-reshard` wrote them into
@main (one transfer op per value and destination layout, each carrying its plan from the cross-mesh
resharding core): per pair of stages, the values crossing, their bytes and alpha-beta seconds per
micro-batch."""

from __future__ import annotations

import dataclasses

from jaxlib.mlir import ir


@dataclasses.dataclass(frozen=True)
class StageTransfer:
    """Values stage `src` hands to stage `dst` per micro-batch (apply-time values once per iteration).

    Attributes:
      src, dst: stage indices.
      values: how many transfers cross (a value read in two layouts counts twice).
      bytes: bytes that cross between devices.
      seconds: the plans' alpha-beta time (autopar-reshard's link figures: autopar.cost's intra-host link).
    """

    src: int
    dst: int
    values: int
    bytes: int
    seconds: float


def stage_transfers(module: ir.Module) -> tuple[StageTransfer, ...]:
    """Per (source stage, destination stage) pair, in that order: what crosses and what it costs (none
    when autopar-reshard has not run)."""
    from autopar.passes.reshard import transfer_ops

    totals: dict[tuple[int, int], list[float]] = {}
    for _, plan in transfer_ops(module.operation):
        entry = totals.setdefault((plan.src.stage, plan.dst.stage), [0, 0, 0.0])
        entry[0] += 1
        entry[1] += plan.bytes
        entry[2] += plan.seconds
    return tuple(
        StageTransfer(s, d, int(v), int(b), float(t)) for (s, d), (v, b, t) in sorted(totals.items())
    )
