"""The measurements: XLA-compiled programs timed on the devices at hand, every device busy at once.

Each figure is what one device delivers while all the devices of the mesh run together (on a host whose
virtual CPU devices share a few cores, that is what the cost model's per-device figures must mean): a
matmul chain and an elementwise op run on every device in one `shard_map`, and each collective runs over
one mesh axis in every group of that axis at once. Times are medians of repeats after a warm-up call; a
call runs `k` dependent collectives and the time of the same call without them (dispatch) is taken off.
"""

from __future__ import annotations

import math
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
# Warm-up before a collective is timed: calls until the time stops falling (a call at least this share of
# the one before it), at most this many (`warm_up`).
WARM_UP_SETTLED = 0.8
WARM_UP_CALLS = 8


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn()` (blocked until its results are ready) over `repeats` calls after its
    warm-up (`warm_up`)."""
    warm_up(fn)
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


def warm_up(fn: Callable[[], object], most: int = WARM_UP_CALLS) -> int:
    """Calls `fn` until its time stops falling (a call at least WARM_UP_SETTLED x the one before it; two
    calls at least, `most` at most) and returns how many were made.

    Why: the first calls at a new size grow the process's heap, and every page they touch first costs a
    fault (a program that steps again and again pays none: benchmarks/cost_model.py counts 0 per step). Two
    calls were not enough: after one warm-up call a 16 MiB all-reduce over 8 virtual CPU devices took 206
    and 104 ms, then 7.0-8.0 ms in the next eight, and the median of three took the second (the profile
    priced a 10 MiB gradient all-reduce at 42 ms where the step ran it in about 6)."""
    previous = _seconds(fn)
    for calls in range(2, most + 1):
        now = _seconds(fn)
        if now >= WARM_UP_SETTLED * previous:
            return calls
        previous = now
    return most


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


def narrow_dot_slowdowns(mesh: Mesh, n: int, widths: Sequence[int], repeats: int) -> dict[int, float]:
    """Per width w, how many times longer a w-wide dot's FLOPs take than a square one's (chains of n x n
    times n x n, and of n x w times w x n, matmuls), every device at once. The square and the narrow
    chains take turns and each round gives one ratio, whose median is kept: on a shared machine the load
    drifts between two measurements taken one after the other, and a ratio of those moved c from 8 to 23."""
    spec = PartitionSpec(mesh.axis_names)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, n)).astype(np.float32) / np.sqrt(n)
    a = jax.device_put(np.tile(x, (mesh.size, 1)), NamedSharding(mesh, spec))
    replicated = NamedSharding(mesh, PartitionSpec())

    def chain(count: int):
        def body(v, u1, u2):
            for _ in range(count):
                v = (v @ u1) @ u2
            return v

        in_specs = (spec, PartitionSpec(), PartitionSpec())
        return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=spec))

    # Square: n x n times n x n twice per link (4 n^3 FLOPs); w wide: n x w then w x n (4 n^2 w).
    square = (chain(2), jax.device_put(x, replicated), jax.device_put(x, replicated), 2 * 4.0 * n**3)
    narrow = {}
    for w in widths:
        count = max(2 * n // w, 2)
        u1, u2 = jax.device_put(x[:, :w], replicated), jax.device_put(x[:w, :] * np.sqrt(n / w), replicated)
        narrow[w] = (chain(count), u1, u2, count * 4.0 * n * n * w)
    runs = {"square": square, **narrow}
    for f, u1, u2, _ in runs.values():
        jax.block_until_ready(f(a, u1, u2))
    ratios: dict[int, list[float]] = {w: [] for w in widths}
    for _ in range(repeats):
        rate = {
            key: flops / _seconds(lambda f=f, u1=u1, u2=u2: f(a, u1, u2))
            for key, (f, u1, u2, flops) in runs.items()
        }
        for w in widths:
            ratios[w].append(rate["square"] / rate[w])
    return {w: statistics.median(r) for w, r in ratios.items()}


def fit_half_rate_width(slowdowns: dict[int, float]) -> float:
    """The c of the slowdown `1 + c / max(d, c)` that fits the measured slowdowns per width best (least
    squares over c in [0, the widest width measured], steps of 0.1): one width alone is too noisy."""
    top = max(slowdowns)
    candidates = np.arange(0.0, top + 0.05, 0.1)
    errors = [sum((s - 1.0 - c / max(w, c)) ** 2 for w, s in slowdowns.items()) for c in candidates]
    return float(candidates[int(np.argmin(errors))])


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


def _chain(kind: str, axis: str | tuple[str, ...], n: int, k: int) -> Callable[[jax.Array], jax.Array]:
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


def collective_seconds(
    mesh: Mesh, axis: str | tuple[str, ...], kind: str, num_bytes: int, repeats: int
) -> float | None:
    """Seconds of one `kind` over mesh axis `axis` (or the axes of a tuple, as one group) whose cost-model
    `num_bytes` (per device: the buffer of an all-reduce or all-to-all, an all-gather's output, a
    reduce-scatter's input) is given, every group of the axis at once. None when it could not be told from
    the call without it (noise at large sizes)."""
    n = math.prod(mesh.shape[a] for a in (axis if isinstance(axis, tuple) else (axis,)))
    elements = max(num_bytes // 4 // n, 1) * n
    local = elements // n if kind == "all_gather" else elements
    x = _sharded(mesh, (local,))
    spec = PartitionSpec(mesh.axis_names)
    k = 1 if num_bytes >= 16 * MiB else 2 if num_bytes >= MiB else 8

    def compiled(body):
        return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False))

    with_k, without = compiled(_chain(kind, axis, n, k)), compiled(_baseline(kind, n))
    repeats = min(repeats, 3) if num_bytes >= 16 * MiB else repeats
    seconds = median_difference(lambda: with_k(x), lambda: without(x), repeats) / k
    return seconds if seconds > 0 else None


def median_difference(fn: Callable[[], object], baseline: Callable[[], object], repeats: int) -> float:
    """Median over `repeats` of the wall time of `fn()` minus that of `baseline()`, each warmed up first
    (`warm_up`); the two calls take turns, so that drift in the machine's load cancels."""
    warm_up(fn)
    warm_up(baseline)
    differences = []
    for _ in range(repeats):
        total = _seconds(fn)
        differences.append(total - _seconds(baseline))
    return statistics.median(differences)


# The kinds of the parameter gradients' collectives, which a step ends with several of at once (XLA's
# combiner may merge them into one): their cost per further operand is measured (`merged_operand_seconds`).
MERGED_KINDS = ("all_reduce", "reduce_scatter")
MERGED_OPERANDS = 16


def merged_operand_seconds(
    mesh: Mesh, axis: str | tuple[str, ...], kind: str, operands: int, repeats: int
) -> float:
    """Seconds each further 1 KiB collective of `kind` over `axis` adds to a program that ends with
    `operands` independent ones (as a step ends with its gradients' all-reduces, which XLA may merge into
    one): (T(operands) - T(1)) / (operands - 1), the two calls taking turns; 0 when noise hides it.

    Why: an accelerator's merged all-reduce pays one latency for all its operands, but XLA's CPU runtime
    meets once per operand: on 8 virtual CPU devices 32 merged 1 KiB all-reduces took 4.6 ms against 0.12
    ms for one (docs/cost_model.md, "Merged gradient collectives"), which the cost model priced as one."""
    n = math.prod(mesh.shape[a] for a in (axis if isinstance(axis, tuple) else (axis,)))
    elements = max(KiB // 4 // n, 1) * n
    spec = PartitionSpec(mesh.axis_names)

    def program(k: int):
        def body(*xs):
            if kind == "all_reduce":
                return tuple(lax.psum(x * 0.5, axis) for x in xs)
            return tuple(lax.psum_scatter(x * 0.5, axis, tiled=True) for x in xs)

        return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(spec,) * k, out_specs=(spec,) * k))

    xs = [_sharded(mesh, (elements,)) for _ in range(operands)]
    many, one = program(operands), program(1)
    return max(median_difference(lambda: many(*xs), lambda: one(xs[0]), repeats) / (operands - 1), 0.0)


def sizes(quick: bool) -> list[int]:
    """Geometric sizes from 1 KiB to 64 MiB: x4 steps (9 sizes), x16 with --quick (5)."""
    step = 16 if quick else 4
    out, size = [], KiB
    while size <= 64 * MiB:
        out.append(size)
        size *= step
    return out


def collective_samples(
    mesh: Mesh, axis: str | tuple[str, ...], kinds: Sequence[str], byte_sizes: Sequence[int], repeats: int
) -> dict[str, list[tuple[int, float | None]]]:
    """{kind: [(num_bytes, seconds or None)]} over `axis`."""
    return {
        kind: [(size, collective_seconds(mesh, axis, kind, size, repeats)) for size in byte_sizes]
        for kind in kinds
    }
