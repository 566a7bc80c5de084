"""Probes of what the cost model leaves out, on the devices at hand (docs/cost_model.md, "Remaining").

Three measurements, each printed as one line per repeat:

- narrow dots: the slowdown of n x n times n x w and n x w times w x n matmuls against n x n ones, per
  width w (`measure.narrow_dot_slowdowns`), beside what the model's `1 + c / max(w, c)` gives with c fitted
  as `python -m autopar.calibrate` fits it, and what `1 + min(1, (c / w)^2)` (a form measured against it,
  not adopted: docs/cost_model.md) gives with its c from width 32;
- convolutions: the FLOP rate of 3 x 3 convolutions of a few shapes against the n x n matmul rate;
- collectives inside a program: k rounds of (matmul, collective of its result) against the matmuls alone
  and the collectives alone, over groups of 2, 4 and 8: what a collective costs in a program beyond its
  time alone (the first version reduced a separate buffer, which the next matmul did not wait for).

    python benchmarks/cost_model_probes.py [--repeats 2]

Run it in its own scheduler group on a shared machine: `benchmarks/isolated.sh python ...`.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from autopar.calibrate import measure  # noqa: E402

N = 512


def median_seconds(f, *args, repeats: int = 9) -> float:
    return measure.median_seconds(lambda: f(*args), repeats)


def on_mesh(mesh: Mesh, body, in_specs, out_specs):
    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False))


def narrow_dots(mesh: Mesh) -> str:
    from autopar.calibrate.profile import NARROW_WIDTHS
    from autopar.passes.intra_op.dot_shape import slowdown
    from autopar.passes.intra_op.graph import Rule

    measured = measure.narrow_dot_slowdowns(mesh, N, (16, 32, 64, 128, 256), 7)
    c = measure.fit_half_rate_width({w: measured[w] for w in NARROW_WIDTHS})
    square = min(32 * max(measured[32] - 1.0, 0.0) ** 0.5, 32.0)
    parts = [f"c = {c:.1f} (fitted at {list(NARROW_WIDTHS)}; square form from width 32: {square:.1f})"]
    for width, seen in measured.items():
        rule = Rule((N, width, N), (((0,), (2,)), ((2,), (1,))), (((0,), (1,)),), frozenset({2}), frozenset())
        model = slowdown(rule, (-1,), (1,), c)
        squared = 1 + min(1.0, (square / width) ** 2)
        parts.append(f"w{width} {seen:.2f}x (model {model:.2f}, square {squared:.2f})")
    return "narrow dots: " + "; ".join(parts)


def convolutions(mesh: Mesh) -> str:
    spec = PartitionSpec("x")
    full = measure.device_flops(mesh, N, 4, 7)
    parts = []
    for batch, size, channels in ((1, 32, 16), (8, 32, 16), (1, 32, 64), (8, 32, 64), (1, 4, 128)):
        x = jax.device_put(
            np.full((8 * batch, size, size, channels), 0.01, np.float32), NamedSharding(mesh, spec)
        )
        w = jax.device_put(
            np.full((3, 3, channels, channels), 0.01, np.float32), NamedSharding(mesh, PartitionSpec())
        )

        def body(x, w):
            for _ in range(4):
                x = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return x

        seconds = median_seconds(on_mesh(mesh, body, (spec, PartitionSpec()), spec), x, w)
        rate = 4 * 2.0 * batch * size * size * channels * channels * 9 / seconds
        parts.append(f"b{batch} {size}x{size} c{channels} {rate / full:.2f}")
    return "3 x 3 convolutions, rate / matmul rate: " + "; ".join(parts)


def interference(rows: int, kind: str, steps: int = 8) -> str:
    """What a collective costs between the matmuls whose results it carries, beyond its time alone, over
    groups of 2, 4 and 8 of a 2 x 4 mesh: `steps` rounds of (rows x 256 matmul, tanh, collective of its
    result), against the rounds without the collective and the collectives alone. Each collective waits
    for the matmul before it and the next matmul for it, as in a tensor-parallel layer."""
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("a", "b"))
    spec, n = PartitionSpec(("a", "b")), 256
    w = jax.device_put(np.eye(n, dtype=np.float32) * 0.5, NamedSharding(mesh, PartitionSpec()))
    x = jax.device_put(np.ones((8 * rows, n), np.float32), NamedSharding(mesh, spec))
    parts = []
    for axes in ("a", "b", ("a", "b")):
        group = mesh.shape["a"] * mesh.shape["b"] if isinstance(axes, tuple) else mesh.shape[axes]

        def collective(y, axes=axes, group=group):
            if kind == "all-reduce":
                return lax.psum(y, axes)
            return lax.all_gather(y[:, : n // group], axes, axis=1, tiled=True)

        def both(x, w, collective=collective):
            for _ in range(steps):
                x = collective(jax.numpy.tanh(x @ w))
            return x

        def compute(x, w):
            for _ in range(steps):
                x = jax.numpy.tanh(x @ w) * 1.0001
            return x

        def alone(x, w, collective=collective):
            for _ in range(steps):
                x = collective(x)
            return x

        def baseline(x, w):
            return x * 1.0

        t = {
            f.__name__: median_seconds(on_mesh(mesh, f, (spec, PartitionSpec()), spec), x, w)
            for f in (both, compute, alone, baseline)
        }
        by_itself = (t["alone"] - t["baseline"]) / steps
        extra = (t["both"] - t["compute"]) / steps - by_itself
        parts.append(f"group of {group}: alone {by_itself * 1e6:.0f} us, interference {extra * 1e6:+.0f} us")
    return (
        f"{kind} of a {rows} x {n} matmul's result, between matmuls ({t['compute'] / steps * 1e3:.2f} ms "
        "each): " + "; ".join(parts)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    a = parser.parse_args()
    mesh = Mesh(np.array(jax.devices()[:8]), ("x",))
    for _ in range(a.repeats):
        print(narrow_dots(mesh), flush=True)
        print(convolutions(mesh), flush=True)
        for rows in (512, 1024):
            for kind in ("all-reduce", "all-gather"):
                print(interference(rows, kind), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
