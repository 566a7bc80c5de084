"""The measurements: XLA-compiled programs timed on the devices at hand, every device busy at once.

Each figure is what one device delivers while all the devices of the mesh run together (on a host whose
virtual CPU devices share a few cores, that is what the cost model's per-device figures must mean): a
matmul chain and an elementwise op run on every device in one `shard_map`, and each collective runs over
one mesh axis in every group of that axis at once. Times are medians of repeats after a warm-up call; a
call runs `k` dependent collectives and the time of the same call without them (dispatch) is taken off.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

KiB, MiB = 1 << 10, 1 << 20
KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn()` (blocked until its results are ready) over `repeats` calls after one."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def _sharded(mesh: Mesh, local_shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """An array holding `local_shape` on every device of `mesh` (dim 0 split over all axes), zeros."""
    spec = PartitionSpec(mesh.axis_names)
    shape = (local_shape[0] * mesh.size, *local_shape[1:])
    return jax.jit(lambda: jnp.zeros(shape, dtype), out_shardings=NamedSharding(mesh, spec))()


def device_flops(mesh: Mesh, n: int, chain: int, repeats: int) -> float:
    """FLOP/s of one device running an n x n matmul chain while every device does the same."""
    spec = PartitionSpec(mesh.axis_names)
    rng = np.random.default_rng(0)
    local = rng.standard_normal((n, n)).astype(np.float32) / np.sqrt(n)
    a = jax.device_put(np.tile(local, (mesh.size, 1)), NamedSharding(mesh, spec))
    b = jax.device_put(local, NamedSharding(mesh, PartitionSpec()))

    def body(x, w):
        for _ in range(chain):
            x = x @ w
        return x

    f = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(spec, PartitionSpec()), out_specs=spec))
    seconds = median_seconds(lambda: f(a, b), repeats)
    return chain * 2.0 * n**3 / seconds


def narrow_dot_flops(mesh: Mesh, n: int, width: int, chain: int, repeats: int) -> float:
    """FLOP/s of one device running a chain of n x n times n x `width` and n x `width` times `width` x n
    matmuls (a narrow dot's N, then its K) while every device does the same."""
    spec = PartitionSpec(mesh.axis_names)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, n)).astype(np.float32) / np.sqrt(n)
    a = jax.device_put(np.tile(x, (mesh.size, 1)), NamedSharding(mesh, spec))
    w1 = jax.device_put(x[:, :width], NamedSharding(mesh, PartitionSpec()))
    w2 = jax.device_put(x[:width, :] * np.sqrt(n / width), NamedSharding(mesh, PartitionSpec()))

    def body(v, u1, u2):
        for _ in range(chain):
            v = (v @ u1) @ u2
        return v

    in_specs = (spec, PartitionSpec(), PartitionSpec())
    f = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=spec))
    seconds = median_seconds(lambda: f(a, w1, w2), repeats)
    return chain * 2 * 2.0 * n * n * width / seconds


def half_rate_width(flops: float, narrow_flops: float, width: int) -> float:
    """c of the cost model's narrow-dot slowdown `1 + c / max(d, c)` (autopar.cost.DeviceModel), from the
    rate of square dots and that of dots `width` wide: 0 when the narrow ones are as fast, at most
    `width` (the slowdown at or below c is 2)."""
    return min(max(width * (flops / narrow_flops - 1.0), 0.0), float(width))


def memory_bandwidth(mesh: Mesh, num_bytes: int, repeats: int) -> float:
    """Bytes/s of one device streaming an elementwise op over `num_bytes` (read once, written once) while
    every device does the same. The buffer is donated and fed back, so no call pays for fresh pages (the
    first touch of a new 64 MiB buffer costs more than the streaming itself on a busy host)."""
    spec = PartitionSpec(mesh.axis_names)
    f = jax.jit(
        jax.shard_map(lambda v: v * 0.5 + 1.0, mesh=mesh, in_specs=spec, out_specs=spec), donate_argnums=0
    )
    state = [_sharded(mesh, (num_bytes // 4,))]

    def step():
        state[0] = f(state[0])
        return state[0]

    return 2.0 * num_bytes / median_seconds(step, repeats)


def _chain(kind: str, axis: str, n: int, k: int) -> Callable[[jax.Array], jax.Array]:
    """`k` dependent collectives of `kind` over `axis` (group size n), on one device's local buffer."""

    def body(x):
        for _ in range(k):
            if kind == "all_reduce":
                x = lax.psum(x, axis)
            elif kind == "all_to_all":
                x = lax.all_to_all(x, axis, 0, 0, tiled=True)
            elif kind == "all_gather":  # x is 1/n of the gathered size; keep the first part
                x = lax.all_gather(x, axis, tiled=True)[: x.shape[0]]
            else:  # reduce_scatter: the scattered part goes back in place (an in-place update of 1/n)
                x = lax.dynamic_update_slice(x, lax.psum_scatter(x, axis, tiled=True), (0,))
        return x

    return body


def _baseline(kind: str, n: int) -> Callable[[jax.Array], jax.Array]:
    """The call of `_chain` without its collectives: dispatch, and for reduce-scatter the one copy its
    first in-place update makes of the (undonated) argument."""
    if kind == "reduce_scatter":
        return lambda x: lax.dynamic_update_slice(x, x[: x.shape[0] // n] * 2.0, (0,))
    return lambda x: x[:1]


def collective_seconds(mesh: Mesh, axis: str, kind: str, num_bytes: int, repeats: int) -> float | None:
    """Seconds of one `kind` over mesh axis `axis` whose cost-model `num_bytes` (per device: the buffer of
    an all-reduce or all-to-all, an all-gather's output, a reduce-scatter's input) is given, every group of
    the axis at once. None when it could not be told from the call without it (noise at large sizes)."""
    n = mesh.shape[axis]
    elements = max(num_bytes // 4 // n, 1) * n
    local = elements // n if kind == "all_gather" else elements
    x = _sharded(mesh, (local,))
    spec = PartitionSpec(mesh.axis_names)
    k = 1 if num_bytes >= 16 * MiB else 2 if num_bytes >= MiB else 8

    def compiled(body):
        return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False))

    with_k, without = compiled(_chain(kind, axis, n, k)), compiled(_baseline(kind, n))
    repeats = min(repeats, 3) if num_bytes >= 16 * MiB else repeats
    jax.block_until_ready((with_k(x), without(x)))
    differences = []
    for _ in range(repeats):  # the two calls take turns, so that drift in the machine's load cancels
        total = _seconds(lambda: with_k(x))
        differences.append(total - _seconds(lambda: without(x)))
    seconds = statistics.median(differences) / k
    return seconds if seconds > 0 else None


def sizes(quick: bool) -> list[int]:
    """Geometric sizes from 1 KiB to 64 MiB: x4 steps (9 sizes), x16 with --quick (5)."""
    step = 16 if quick else 4
    out, size = [], KiB
    while size <= 64 * MiB:
        out.append(size)
        size *= step
    return out


def collective_samples(
    mesh: Mesh, axis: str, kinds: Sequence[str], byte_sizes: Sequence[int], repeats: int
) -> dict[str, list[tuple[int, float | None]]]:
    """{kind: [(num_bytes, seconds or None)]} over `axis`."""
    return {
        kind: [(size, collective_seconds(mesh, axis, kind, size, repeats)) for size in byte_sizes]
        for kind in kinds
    }
