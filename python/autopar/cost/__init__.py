"""autopar.cost: the one analytic machine model both planners optimise against.

Every figure is in SI units: FLOP/s, bytes, bytes/s, seconds, seconds per byte. docs/cost_model.md lists
each figure, its default and who reads it.

The description has three parts:
  `DeviceModel`   one accelerator: peak FLOP/s, memory bandwidth (bytes/s), memory (bytes).
  `Link`          an alpha-beta link: latency of one collective step (s) and inverse bandwidth (s/byte).
  `ClusterModel`  hosts x devices per host, one DeviceModel, the link inside a host and the link between
                  hosts. The inter-op pass plans over a ClusterModel; `ClusterModel.mesh` gives the
                  intra-op `MeshModel` of a logical mesh laid over it.
  `MeshModel`     a logical device mesh (up to three named axes), one alpha and beta per axis: what the
                  intra-op pass costs collectives with.

Collective costs follow Alpa's `LogicalDeviceMesh` formulas, in seconds instead of Alpa's unitless numbers.
A collective over several axes at once (a tensor dim sharded over `("x", "y")`) runs as one group of the
product size paying every axis's latency and the slowest axis's bandwidth. An op costs
`max(flops / peak, bytes / bandwidth)` divided by the number of devices that share its work.

A cluster profile (JSON) overrides the defaults; see `load_profile`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence

from autopar.cost import tables as tables_lib

GiB = 2**30

# The defaults, in one table (SI units). Both passes start from the same device and intra-host link; two
# figures differ per pass ON PURPOSE, so that neither pass's plans changed when the two models were merged:
#
#   figure                     intra-op pass            inter-op pass
#   device FLOP/s              1e13 (fp32-ish peak)     1e14 (V100: ~80 % of the 125 TFLOP/s fp16 peak)
#   device memory, bytes       0 = no limit             16 GiB (V100 16 GB)
#   slow link alpha, s         5e-6                     2e-5
#   slow link beta, s/byte     1e-10 (10 GB/s)          3.2e-10 (25 Gbit/s, Alpa's AWS p3.16xlarge hosts)
#
# The intra-op pass models a logical mesh whose innermost axis is the fast link and whose outer axes are
# 10x slower per byte (Alpa's logical meshes); the inter-op pass models Alpa's GPU cluster, whose stage
# times it compares across submeshes. Unifying them would move plans (the intra-op pass trades compute
# against communication at its FLOP rate), so each keeps its own value, stated here and nowhere else.
DEFAULT_DEVICE_FLOPS = 1.0e13
DEFAULT_DEVICE_MEMORY_BANDWIDTH = 1.0e12  # bytes/s
DEFAULT_DEVICE_MEMORY = 0  # bytes, 0 = no limit
DEFAULT_ALPHA = 5.0e-6  # s, every axis of an intra-op mesh and the intra-host link
DEFAULT_FAST_BETA = 1.0e-11  # s/byte: 100 GB/s, NVLink-class, inside a host
DEFAULT_SLOW_BETA = 1.0e-10  # s/byte: 10 GB/s, the intra-op pass's outer mesh axes
INTER_OP_DEVICE_FLOPS = 1.0e14
INTER_OP_DEVICE_MEMORY = 16 * GiB
INTER_OP_INTER_HOST_ALPHA = 2.0e-5
INTER_OP_INTER_HOST_BETA = 1 / 3.125e9

# The collectives a mesh may carry figures of its own for (a calibrated profile's "mesh.collectives").
COLLECTIVE_KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "collective_permute")


@dataclasses.dataclass(frozen=True)
class DeviceModel:
    """One accelerator.

    Attributes:
      flops: peak floating-point operations per second.
      memory_bandwidth: bytes per second between the device and its memory.
      memory_bytes: device memory, 0 when unknown (no limit).
      fused_broadcasts: a broadcast costs nothing of its own: XLA fuses it into its consumers, which read
        its operand instead of a materialised result (their own operand bytes already count it). True
        under a cluster profile (measured figures: pricing each unfused broadcast's write at the measured
        bandwidth overstated plans that keep an optimizer's scalar broadcasts replicated), False by
        default so that the default plans stay as they were.
      dot_half_rate_width: c (elements): a matmul whose smallest GEMM dimension per device (rows, columns
        or the contracted one) is d runs at `flops / (1 + c / max(d, c))` (passes/intra_op/dot_shape.py);
        0 (the default) = every dot at `flops`. Calibrated (`python -m autopar.calibrate`).
      relayout_gathers: an all-gather along a dim that is not the tensor's outermost also pays one read
        and one write of its result at `memory_bandwidth`: XLA gathers along the physically outermost dim
        and copies the result back into the logical layout (passes/intra_op/resharding.py). True under a
        cluster profile (docs/cost_model.md, "Gathers along an inner dim"), False by default so that the
        default plans stay as they were.
      widened_collectives: collectives move bf16 (and f8E8M0FNU) elements as f32 and narrower floats as
        f16: XLA's CPU compiler runs them so (docs/platform.md, "Collectives of narrow floats on CPU"),
        and a plan priced at the narrow size expects half the bytes XLA compiles. False by default (GPUs
        and TPUs reduce bf16 as it is); `python -m autopar.calibrate` writes true on CPU devices, and
        parallelize sets it on CPU devices (`AutoShardingOption.widen_collectives`).
    """

    flops: float = DEFAULT_DEVICE_FLOPS
    memory_bandwidth: float = DEFAULT_DEVICE_MEMORY_BANDWIDTH
    memory_bytes: int = DEFAULT_DEVICE_MEMORY
    fused_broadcasts: bool = False
    dot_half_rate_width: float = 0.0
    relayout_gathers: bool = False
    widened_collectives: bool = False

    def __post_init__(self) -> None:
        if not (
            self.flops > 0
            and self.memory_bandwidth > 0
            and self.memory_bytes >= 0
            and self.dot_half_rate_width >= 0
        ):
            raise ValueError(f"device model needs positive flops and memory bandwidth, got {self}")

    def op_time(self, flops: float, bytes_moved: float) -> float:
        """Roofline time of one op executed whole on this device."""
        return max(flops / self.flops, bytes_moved / self.memory_bandwidth)


@dataclasses.dataclass(frozen=True)
class Link:
    """An alpha-beta link.

    Attributes:
      alpha: latency of one collective step, seconds.
      beta: seconds per byte (the inverse of the bandwidth).
    """

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not (self.alpha >= 0 and self.beta >= 0):
            raise ValueError(f"link alpha and beta must be >= 0, got {self}")

    def all_reduce(self, num_bytes: float, group: int) -> float:
        """Ring all-reduce of `num_bytes` per device over `group` devices (no tie-breakers)."""
        return 0.0 if group <= 1 else self.alpha + 2.0 * (group - 1) / group * num_bytes * self.beta


DEFAULT_INTRA_HOST = Link(DEFAULT_ALPHA, DEFAULT_FAST_BETA)
DEFAULT_INTER_HOST = Link(DEFAULT_ALPHA, DEFAULT_SLOW_BETA)
INTER_OP_INTER_HOST = Link(INTER_OP_INTER_HOST_ALPHA, INTER_OP_INTER_HOST_BETA)


@dataclasses.dataclass(frozen=True)
class ClusterModel:
    """Hosts x devices per host, all alike.

    Attributes:
      hosts, devices_per_host: the physical cluster.
      device: every device's model.
      intra_host: the link between two devices of one host.
      inter_host: the link between hosts.
    """

    hosts: int
    devices_per_host: int
    device: DeviceModel = DeviceModel()
    intra_host: Link = DEFAULT_INTRA_HOST
    inter_host: Link = DEFAULT_INTER_HOST

    def __post_init__(self) -> None:
        if self.hosts < 1 or self.devices_per_host < 1:
            raise ValueError(f"a cluster needs >= 1 hosts and devices per host, got {self}")

    @property
    def num_devices(self) -> int:
        return self.hosts * self.devices_per_host

    def link(self, crosses_hosts: bool) -> Link:
        return self.inter_host if crosses_hosts else self.intra_host

    def mesh(
        self, shape: Sequence[int], crosses_hosts: Sequence[bool], axis_names: Sequence[str] | None = None
    ) -> MeshModel:
        """The MeshModel of a logical mesh over this cluster whose axis i crosses hosts iff
        `crosses_hosts[i]`."""
        links = [self.link(x) for x in crosses_hosts]
        return make_mesh(
            shape,
            axis_names,
            alpha=[link.alpha for link in links],
            beta=[link.beta for link in links],
            device=self.device,
        )


def inter_op_cluster(hosts: int, devices_per_host: int, device: DeviceModel | None = None) -> ClusterModel:
    """The inter-op pass's default cluster (see the table above): a V100-class device and 25 Gbit/s
    between hosts."""
    return ClusterModel(
        hosts,
        devices_per_host,
        device or DeviceModel(flops=INTER_OP_DEVICE_FLOPS, memory_bytes=INTER_OP_DEVICE_MEMORY),
        DEFAULT_INTRA_HOST,
        INTER_OP_INTER_HOST,
    )


@dataclasses.dataclass(frozen=True)
class MeshModel:
    """A logical device mesh with an alpha-beta model per axis.

    Attributes:
      shape: devices along each axis, e.g. (2, 4).
      axis_names: one name per axis.
      alpha: latency of one collective step on each axis, seconds.
      beta: seconds per byte on each axis.
      device: the device model.
    """

    shape: tuple[int, ...]
    axis_names: tuple[str, ...]
    alpha: tuple[float, ...]
    beta: tuple[float, ...]
    device: DeviceModel = DeviceModel()
    collectives: tuple[tuple[str, tuple[float, ...], tuple[float, ...]], ...] = ()
    # Measured times of a collective kind over a set of axes (a calibrated profile): they price that
    # collective instead of its alpha and beta (cost/tables.py says why).
    tables: tuple[tables_lib.CollectiveTable, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.shape)
        for kind, alphas, betas in self.collectives:
            if kind not in COLLECTIVE_KINDS or len(alphas) != n or len(betas) != n:
                raise ValueError(f"mesh collective figures need a known kind and {n} alphas and betas")
            if any(a < 0 for a in alphas) or any(b < 0 for b in betas):
                raise ValueError("mesh collective alpha and beta must be >= 0")
        if not 1 <= n <= 3:
            raise ValueError(f"a mesh has 1 to 3 axes, got shape {self.shape}")
        if any(t.kind not in COLLECTIVE_KINDS or max(t.axes) >= n for t in self.tables):
            raise ValueError(f"mesh collective tables need a known kind and axes of the {n}-axis mesh")
        if any(s < 1 for s in self.shape):
            raise ValueError(f"mesh axis sizes must be >= 1, got {self.shape}")
        if len(self.axis_names) != n or len(self.alpha) != n or len(self.beta) != n:
            raise ValueError(f"mesh shape {self.shape} needs {n} axis names, alphas and betas")
        if len(set(self.axis_names)) != n:
            raise ValueError(f"mesh axis names must be distinct, got {self.axis_names}")
        if any(a < 0 for a in self.alpha) or any(b < 0 for b in self.beta):
            raise ValueError("mesh alpha and beta must be >= 0")

    @property
    def num_devices(self) -> int:
        return math.prod(self.shape)

    def group(self, axes: Sequence[int], kind: str = "") -> tuple[int, float, float]:
        """(group size, latency, seconds per byte) of a collective over `axes` together; `kind` picks that
        collective's own figures when the mesh has them (a calibrated profile), else the axis's."""
        alphas, betas = self.alpha, self.beta
        for name, kind_alphas, kind_betas in self.collectives:
            if name == kind:
                alphas, betas = kind_alphas, kind_betas
        size = math.prod(self.shape[a] for a in axes)
        alpha = sum(alphas[a] for a in axes)
        beta = max((betas[a] for a in axes), default=0.0)
        return size, alpha, beta

    def _measured(
        self,
        kind: str,
        axes: Sequence[int],
        num_bytes: float,
        latency: float = 0.0,
        share: float = 1.0,
        merged_bytes: float = 0.0,
    ) -> float | None:
        """The measured table's time of `kind` over `axes` at `num_bytes`, or None without one. A
        collective XLA merges with others into one of `merged_bytes` (gradients) pays `share` of the
        latency `latency`, the rest of its share of the merged collective at the table's measured cost
        per further operand (tables.py), and its bytes at the merged collective's measured rate: the time
        per byte grows with the size, so pricing each part at its own size would make merging look free."""
        table = tables_lib.find(self.tables, kind, [a for a in axes if self.shape[a] > 1])
        if table is None:
            return None
        if share >= 1.0:
            return table.at(num_bytes)
        merged = max(merged_bytes, num_bytes)
        operands = (1.0 - share) * table.merged_operand
        return share * latency + operands + num_bytes * max(table.at(merged) - latency, 0.0) / merged

    # Alpa's formulas (alpa/shard_parallel/auto_sharding.py, LogicalDeviceMesh), in seconds; the small
    # constant tie-breakers there are kept relative so that equal-volume choices prefer the cheaper kind.
    def all_reduce(
        self, num_bytes: float, axes: Sequence[int], latency_share: float = 1.0, merged_bytes: float = 0.0
    ) -> float:
        """`latency_share` < 1: this all-reduce is one of several XLA merges into one (gradients) of about
        `merged_bytes`, and pays that share of the latency."""
        n, alpha, beta = self.group(axes, "all_reduce")
        if n == 1:
            return 0.0
        measured = self._measured("all_reduce", axes, num_bytes, 1.01 * alpha, latency_share, merged_bytes)
        if measured is not None:
            return measured
        return latency_share * 1.01 * alpha + beta * 2 * (n - 1) / n * num_bytes

    def all_gather(self, num_bytes: float, axes: Sequence[int]) -> float:
        """`num_bytes` is the gathered (output) size per device."""
        n, alpha, beta = self.group(axes, "all_gather")
        if n == 1:
            return 0.0
        measured = self._measured("all_gather", axes, num_bytes)
        if measured is not None:
            return measured
        return alpha + beta * (n - 1) / n * num_bytes + 0.1 * alpha

    def reduce_scatter(
        self, num_bytes: float, axes: Sequence[int], latency_share: float = 1.0, merged_bytes: float = 0.0
    ) -> float:
        """`num_bytes` is the input (unscattered) size per device; the rest as for all_reduce."""
        n, alpha, beta = self.group(axes, "reduce_scatter")
        if n == 1:
            return 0.0
        measured = self._measured(
            "reduce_scatter", axes, num_bytes, 1.001 * alpha, latency_share, merged_bytes
        )
        if measured is not None:
            return measured
        return latency_share * 1.001 * alpha + beta * (n - 1) / n * num_bytes

    def all_to_all(self, num_bytes: float, axes: Sequence[int]) -> float:
        n, alpha, beta = self.group(axes, "all_to_all")
        if n == 1:
            return 0.0
        measured = self._measured("all_to_all", axes, num_bytes)
        if measured is not None:
            return measured
        # Alpa: each device keeps 1/n and sends (n-1)/n^2 of its data to each peer; penalised by 1.5x
        # against the ideal because all-to-all runs well below link bandwidth in practice.
        return alpha + beta * 1.5 * (n - 1) / n / n * num_bytes + 0.001 * alpha

    def collective_permute(self, num_bytes: float, axes: Sequence[int]) -> float:
        """Every device sends its part to one other device (`num_bytes` is what each receives)."""
        n, alpha, beta = self.group(axes, "collective_permute")
        if n == 1:
            return 0.0
        measured = self._measured("collective_permute", axes, num_bytes)
        if measured is not None:
            return measured
        return alpha + beta * num_bytes


def default_betas(shape: Sequence[int]) -> tuple[float, ...]:
    """Innermost axis fast, outer axes slow (Alpa's (1, 0.1) ratio, in seconds per byte)."""
    n = len(shape)
    return tuple(DEFAULT_INTRA_HOST.beta if i == n - 1 else DEFAULT_INTER_HOST.beta for i in range(n))


def default_alphas(shape: Sequence[int]) -> tuple[float, ...]:
    """The intra-host latency on the innermost axis, the inter-host one on outer axes (equal by default)."""
    n = len(shape)
    return tuple(DEFAULT_INTRA_HOST.alpha if i == n - 1 else DEFAULT_INTER_HOST.alpha for i in range(n))


def make_mesh(
    shape: Sequence[int],
    axis_names: Sequence[str] | None = None,
    *,
    alpha: Sequence[float] | float | None = None,
    beta: Sequence[float] | float | None = None,
    device: DeviceModel | None = None,
    collectives: dict[str, tuple[Sequence[float] | float, Sequence[float] | float]] | None = None,
    tables: Sequence[tables_lib.CollectiveTable] = (),
) -> MeshModel:
    """A MeshModel with defaults filled in; a scalar alpha/beta applies to every axis. `collectives`:
    {kind: (alpha, beta)} figures of one collective kind (one value or one per axis each), which that
    kind's cost uses instead of the axis's alpha and beta; `tables`: measured times, which price their
    collective over their axes instead of both."""
    shape = tuple(int(s) for s in shape)
    names = tuple(axis_names) if axis_names is not None else tuple("xyz"[: len(shape)])
    n = len(shape)
    return MeshModel(
        shape=shape,
        axis_names=names,
        alpha=_per_axis(alpha, n, default_alphas(shape)),
        beta=_per_axis(beta, n, default_betas(shape)),
        device=device or DeviceModel(),
        collectives=tuple(
            (kind, _per_axis(a, n, ()), _per_axis(b, n, ()))
            for kind, (a, b) in sorted((collectives or {}).items())
        ),
        tables=tuple(tables),
    )


def _per_axis(value: Sequence[float] | float | None, n: int, default: tuple[float, ...]) -> tuple[float, ...]:
    if value is None:
        return default
    if isinstance(value, int | float):
        return (float(value),) * n
    values = tuple(float(v) for v in value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"expected 1 or {n} per-axis values, got {len(values)}")
    return values


def load_profile(path: str | os.PathLike[str], shape: Sequence[int]) -> tuple[dict, DeviceModel]:
    """Reads a cluster profile JSON; returns ({'alpha': [...], 'beta': [...], 'collectives': {kind: (alphas,
    betas)}} overrides (each key only when the profile has it), DeviceModel).

    Format (every key optional):
      {"device": {"flops": 1.2e14, "memory_bandwidth": 1.5e12, "memory_bytes": 4.0e10,
                  "fused_broadcasts": true, "dot_half_rate_width": 14.0, "relayout_gathers": true,
                  "widened_collectives": true},
       "mesh": {"alpha": [1e-5, 2e-6], "beta": [1e-10, 1e-11],
                "collectives": {"all_reduce": {"alpha": [..], "beta": [..],
                                               "tables": [{"axes": [0], "samples": [[1024, 1.8e-4], ..]}]},
                                "all_gather": {...}, ...}},
       "calibration": {...}}
    `mesh.alpha`/`mesh.beta` are one value or one per mesh axis (outermost first). `mesh.collectives` gives
    one collective kind (`COLLECTIVE_KINDS`) figures of its own, in the same form; a kind it leaves out uses
    `mesh.alpha`/`mesh.beta`. A kind's optional `tables` (`cost/tables.py`) are its measured times over a
    set of axes (indices), which price it over exactly those axes. `mesh.shape` and `calibration` (what
    `python -m autopar.calibrate` measured on, and when) are information only.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"cluster profile '{path}' does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(
            f"cluster profile '{path}' is not valid JSON: {err.msg} at line {err.lineno}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"cluster profile '{path}' must hold a JSON object")
    device_data = data.get("device", {})
    mesh_data = data.get("mesh", {})
    unknown = set(data) - {"device", "mesh", "calibration"}
    if unknown:
        raise ValueError(
            f"cluster profile '{path}': unknown keys {sorted(unknown)} (expected device, mesh, calibration)"
        )
    try:
        device = DeviceModel(
            flops=float(device_data.get("flops", DEFAULT_DEVICE_FLOPS)),
            memory_bandwidth=float(device_data.get("memory_bandwidth", DEFAULT_DEVICE_MEMORY_BANDWIDTH)),
            memory_bytes=int(device_data.get("memory_bytes", DEFAULT_DEVICE_MEMORY)),
            fused_broadcasts=bool(device_data.get("fused_broadcasts", True)),
            dot_half_rate_width=float(device_data.get("dot_half_rate_width", 0.0)),
            relayout_gathers=bool(device_data.get("relayout_gathers", True)),
            widened_collectives=bool(device_data.get("widened_collectives", False)),
        )
        overrides: dict = {}
        for key in ("alpha", "beta"):
            if key in mesh_data:
                overrides[key] = _per_axis(mesh_data[key], len(shape), ())
        kinds = mesh_data.get("collectives", {})
        if set(kinds) - set(COLLECTIVE_KINDS):
            raise ValueError(
                f"mesh.collectives: unknown kinds {sorted(set(kinds) - set(COLLECTIVE_KINDS))} "
                f"(expected {', '.join(COLLECTIVE_KINDS)})"
            )
        if kinds:
            overrides["collectives"] = {
                kind: (
                    _per_axis(figures["alpha"], len(shape), ()),
                    _per_axis(figures["beta"], len(shape), ()),
                )
                for kind, figures in kinds.items()
            }
            overrides["tables"] = tuple(
                table
                for kind, figures in sorted(kinds.items())
                for table in tables_lib.from_profile(kind, figures.get("tables", []), len(shape))
            )
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"cluster profile '{path}': {err}") from None
    return overrides, device


__all__ = [
    "COLLECTIVE_KINDS",
    "ClusterModel",
    "DeviceModel",
    "GiB",
    "Link",
    "MeshModel",
    "default_alphas",
    "default_betas",
    "inter_op_cluster",
    "load_profile",
    "make_mesh",
]


def bytes_text(n: float) -> str:
    """`n` bytes in the largest binary unit it reaches (1.5 GiB, 12.0 KiB, 80 B), for messages and tables:
    a fixed unit printed small models' and small budgets' sizes as 0.00 GiB."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{round(n)} B"
