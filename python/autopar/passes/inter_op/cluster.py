"""Alpa's submesh shapes of a cluster (hosts x devices per host), their logical meshes, device placement.

The cluster itself, with its device and link figures, is `autopar.cost.ClusterModel`."""

from __future__ import annotations

import re
from typing import Any

from autopar.cost import ClusterModel
from autopar.errors import PassError

_SHAPE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def parse_shape(text: str, what: str) -> tuple[int, int]:
    match = _SHAPE.match(text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise PassError(f"{what} '{text}' is not of the form HxD with positive H and D (e.g. 2x8)")
    return int(match.group(1)), int(match.group(2))


def default_submeshes(cluster: ClusterModel) -> list[tuple[int, int]]:
    """Alpa's choices: (1, 1), (1, 2), (1, 4), ... up to (1, D), then (2, D), ..., (H, D)."""
    shapes, k = [], 1
    while k < cluster.devices_per_host:
        if cluster.devices_per_host % k == 0:
            shapes.append((1, k))
        k *= 2
    return shapes + [(n, cluster.devices_per_host) for n in range(1, cluster.hosts + 1)]


def parse_submeshes(text: str, cluster: ClusterModel) -> list[tuple[int, int]]:
    if not text.strip():
        return default_submeshes(cluster)
    shapes = []
    for item in text.split(","):
        h, d = parse_shape(item, "submesh shape")
        if not _tiles(h, d, cluster):
            raise PassError(
                f"submesh shape {h}x{d} does not tile the {cluster.hosts}x{cluster.devices_per_host} "
                "cluster: "
                f"use 1xK with K a power of two dividing {cluster.devices_per_host}, or Nx"
                f"{cluster.devices_per_host} with N <= {cluster.hosts}"
            )
        if (h, d) not in shapes:
            shapes.append((h, d))
    return sorted(shapes, key=lambda s: (s[0] * s[1], s))


def _tiles(h: int, d: int, cluster: ClusterModel) -> bool:
    # These shapes always pack a cluster whose devices they sum to: whole hosts first, then power-of-two
    # slices of the remaining hosts (first-fit decreasing never leaves a hole).
    if d == cluster.devices_per_host:
        return h <= cluster.hosts
    return h == 1 and d & (d - 1) == 0 and cluster.devices_per_host % d == 0


def logical_meshes(submesh: tuple[int, int]) -> list[tuple[int, int]]:
    """(data-parallel, tensor-parallel) shapes a submesh can take: (n / q, q) for q = 1, 2, 4, ..., n."""
    n = submesh[0] * submesh[1]
    shapes, q = [], 1
    while q <= n:
        if n % q == 0:
            shapes.append((n // q, q))
        q *= 2
    if (1, n) not in shapes:
        shapes.append((1, n))
    return shapes


def place(submeshes: list[tuple[int, int]], cluster: ClusterModel) -> list[list[int]]:
    """Device ids (host * D + local) for each stage's submesh, in stage order."""
    free = [cluster.devices_per_host] * cluster.hosts  # free devices left on each host, filled in order
    ids: list[list[int] | None] = [None] * len(submeshes)
    order = sorted(range(len(submeshes)), key=lambda k: (-submeshes[k][0] * submeshes[k][1], k))
    next_host = 0
    for k in order:
        h, d = submeshes[k]
        if d == cluster.devices_per_host:
            hosts = range(next_host, next_host + h)
            if next_host + h > cluster.hosts:
                raise PassError(
                    f"the plan's submeshes do not fit the {cluster.hosts}x{cluster.devices_per_host} cluster"
                )
            ids[k] = [host * d + j for host in hosts for j in range(d)]
            for host in hosts:
                free[host] = 0
            next_host += h
            continue
        for host in range(cluster.hosts):
            if free[host] >= d:
                start = cluster.devices_per_host - free[host]
                ids[k] = [host * cluster.devices_per_host + start + j for j in range(d)]
                free[host] -= d
                next_host = max(next_host, host + 1)
                break
        else:
            raise PassError(
                f"the plan's submeshes do not fit the {cluster.hosts}x{cluster.devices_per_host} cluster"
            )
    return [list(x) for x in ids if x is not None]


def submeshes_from_options(options: Any, cluster: ClusterModel, num_layers: int) -> list[tuple[int, int]]:
    """The submesh shapes the stage DP chooses from: `submesh-shapes` (or Alpa's), only the
    cluster / `num-stages` sized ones when `num-stages` is set."""
    shapes = parse_submeshes(options.submesh_shapes, cluster)
    stages = options.num_stages
    if stages == 0:
        return shapes
    if stages > num_layers:
        raise PassError(
            f"num-stages={stages} is more than the {num_layers} layers: use at most "
            f"{num_layers} stages or cluster into more layers"
        )
    size = cluster.num_devices // stages if stages > 0 and cluster.num_devices % stages == 0 else 0
    uniform = [s for s in shapes if s[0] * s[1] == size]
    if uniform:
        return uniform
    # Stage counts that would run: each divides the devices into submeshes of an offered shape.
    counts = [
        k
        for k in range(1, min(num_layers, cluster.num_devices) + 1)
        if cluster.num_devices % k == 0 and any(h * d == cluster.num_devices // k for h, d in shapes)
    ]
    offered = ", ".join(f"{h}x{d}" for h, d in shapes)
    why = (
        f"needs submeshes of {size} devices, which the submesh shapes ({offered}) do not offer"
        if size
        else f"does not divide the {cluster.num_devices} devices of the cluster"
    )
    remedies = [
        f"use num-stages {' or '.join(map(str, counts))}" if counts else "use num-stages 0 (the DP chooses)"
    ]
    shape = _tiling_shape(size, cluster)
    if shape:
        remedies.append(f"add {shape[0]}x{shape[1]} to submesh-shapes")
    raise PassError(f"num-stages={stages} {why}: {', or '.join(remedies)}")


def _tiling_shape(size: int, cluster: ClusterModel) -> tuple[int, int] | None:
    """The submesh shape of `size` devices that tiles the cluster, if there is one."""
    per_host = cluster.devices_per_host
    shape = (1, size) if size < per_host else (size // per_host, per_host)
    return shape if size > 0 and shape[0] * shape[1] == size and _tiles(*shape, cluster) else None
