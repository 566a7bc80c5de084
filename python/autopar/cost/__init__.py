"""autopar.cost: the analytic machine model the planners optimise against.

A logical device mesh has up to three named axes; every axis has an alpha-beta link model (latency in
seconds, seconds per byte). Collective costs follow Alpa's `LogicalDeviceMesh` formulas, in seconds instead
of Alpa's unitless numbers. A collective over several axes at once (a tensor dim sharded over `("x", "y")`)
runs as one group of the product size paying every axis's latency and the slowest axis's bandwidth.
Devices have a peak FLOP rate and a memory bandwidth: an op costs `max(flops / peak, bytes / bandwidth)`
divided by the number of devices that share its work.

A cluster profile (JSON) overrides the defaults; see `load_profile`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence

# Defaults: a GPU-class device (fp32-ish peak) on a node whose innermost mesh axis is the fast
# interconnect (Alpa's logical meshes model the outer axis as 10x slower per byte).
DEFAULT_DEVICE_FLOPS = 1.0e13
DEFAULT_DEVICE_MEMORY_BANDWIDTH = 1.0e12
DEFAULT_ALPHA = 5.0e-6
DEFAULT_FAST_BETA = 1.0e-11  # 100 GB/s
DEFAULT_SLOW_BETA = 1.0e-10  # 10 GB/s


@dataclasses.dataclass(frozen=True)
class DeviceModel:
    """One accelerator.

    Attributes:
      flops: peak floating-point operations per second.
      memory_bandwidth: bytes per second between the device and its memory.
      memory_bytes: device memory, 0 when unknown.
    """

    flops: float = DEFAULT_DEVICE_FLOPS
    memory_bandwidth: float = DEFAULT_DEVICE_MEMORY_BANDWIDTH
    memory_bytes: int = 0

    def __post_init__(self) -> None:
        if not (self.flops > 0 and self.memory_bandwidth > 0 and self.memory_bytes >= 0):
            raise ValueError(f"device model needs positive flops and memory bandwidth, got {self}")

    def op_time(self, flops: float, bytes_moved: float) -> float:
        """Roofline time of one op executed whole on this device."""
        return max(flops / self.flops, bytes_moved / self.memory_bandwidth)


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

    def __post_init__(self) -> None:
        n = len(self.shape)
        if not 1 <= n <= 3:
            raise ValueError(f"a mesh has 1 to 3 axes, got shape {self.shape}")
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

    def group(self, axes: Sequence[int]) -> tuple[int, float, float]:
        """(group size, latency, seconds per byte) of a collective over `axes` together."""
        size = math.prod(self.shape[a] for a in axes)
        alpha = sum(self.alpha[a] for a in axes)
        beta = max((self.beta[a] for a in axes), default=0.0)
        return size, alpha, beta

    # Alpa's formulas (alpa/shard_parallel/auto_sharding.py, LogicalDeviceMesh), in seconds; the small
    # constant tie-breakers there are kept relative so that equal-volume choices prefer the cheaper kind.
    def all_reduce(self, num_bytes: float, axes: Sequence[int], latency_share: float = 1.0) -> float:
        """`latency_share` < 1: this all-reduce is one of several XLA merges into one (gradients), and pays
        that share of the latency."""
        n, alpha, beta = self.group(axes)
        if n == 1:
            return 0.0
        return latency_share * 1.01 * alpha + beta * 2 * (n - 1) / n * num_bytes

    def all_gather(self, num_bytes: float, axes: Sequence[int]) -> float:
        """`num_bytes` is the gathered (output) size per device."""
        n, alpha, beta = self.group(axes)
        if n == 1:
            return 0.0
        return alpha + beta * (n - 1) / n * num_bytes + 0.1 * alpha

    def reduce_scatter(self, num_bytes: float, axes: Sequence[int], latency_share: float = 1.0) -> float:
        """`num_bytes` is the input (unscattered) size per device; `latency_share` as for all_reduce."""
        n, alpha, beta = self.group(axes)
        if n == 1:
            return 0.0
        return latency_share * 1.001 * alpha + beta * (n - 1) / n * num_bytes

    def all_to_all(self, num_bytes: float, axes: Sequence[int]) -> float:
        n, alpha, beta = self.group(axes)
        if n == 1:
            return 0.0
        # Alpa: each device keeps 1/n and sends (n-1)/n^2 of its data to each peer; penalised by 1.5x
        # against the ideal because all-to-all runs well below link bandwidth in practice.
        return alpha + beta * 1.5 * (n - 1) / n / n * num_bytes + 0.001 * alpha

    def collective_permute(self, num_bytes: float, axes: Sequence[int]) -> float:
        """Every device sends its part to one other device (`num_bytes` is what each receives)."""
        n, alpha, beta = self.group(axes)
        if n == 1:
            return 0.0
        return alpha + beta * num_bytes


def default_betas(shape: Sequence[int]) -> tuple[float, ...]:
    """Innermost axis fast, outer axes slow (Alpa's (1, 0.1) ratio, in seconds per byte)."""
    n = len(shape)
    return tuple(DEFAULT_FAST_BETA if i == n - 1 else DEFAULT_SLOW_BETA for i in range(n))


def make_mesh(
    shape: Sequence[int],
    axis_names: Sequence[str] | None = None,
    *,
    alpha: Sequence[float] | float | None = None,
    beta: Sequence[float] | float | None = None,
    device: DeviceModel | None = None,
) -> MeshModel:
    """A MeshModel with defaults filled in; a scalar alpha/beta applies to every axis."""
    shape = tuple(int(s) for s in shape)
    names = tuple(axis_names) if axis_names is not None else tuple("xyz"[: len(shape)])
    return MeshModel(
        shape=shape,
        axis_names=names,
        alpha=_per_axis(alpha, len(shape), (DEFAULT_ALPHA,) * len(shape)),
        beta=_per_axis(beta, len(shape), default_betas(shape)),
        device=device or DeviceModel(),
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
    """Reads a cluster profile JSON; returns ({'alpha': [...], 'beta': [...]} overrides, DeviceModel).

    Format (every key optional):
      {"device": {"flops": 1.2e14, "memory_bandwidth": 1.5e12, "memory_bytes": 4.0e10},
       "mesh": {"alpha": [1e-5, 2e-6], "beta": [1e-10, 1e-11]}}
    `mesh.alpha`/`mesh.beta` are one value or one per mesh axis (outermost first).
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
    unknown = set(data) - {"device", "mesh"}
    if unknown:
        raise ValueError(f"cluster profile '{path}': unknown keys {sorted(unknown)} (expected device, mesh)")
    try:
        device = DeviceModel(
            flops=float(device_data.get("flops", DEFAULT_DEVICE_FLOPS)),
            memory_bandwidth=float(device_data.get("memory_bandwidth", DEFAULT_DEVICE_MEMORY_BANDWIDTH)),
            memory_bytes=int(device_data.get("memory_bytes", 0)),
        )
        overrides = {}
        for key in ("alpha", "beta"):
            if key in mesh_data:
                overrides[key] = _per_axis(mesh_data[key], len(shape), ())
    except (TypeError, ValueError) as err:
        raise ValueError(f"cluster profile '{path}': {err}") from None
    return overrides, device


__all__ = ["DeviceModel", "MeshModel", "default_betas", "load_profile", "make_mesh"]
