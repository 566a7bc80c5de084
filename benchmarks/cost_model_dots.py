"""Each plan's dots as XLA compiled them, timed alone, beside the cost model's price of them: for the
plans of benchmarks/cost_model.py, every dot of the compiled per-device program (fused or not, with its
per-device shapes and dimension numbers) is run on all devices at once, alone, and the times are summed
over the program; the model's price is its FLOPs at the profile's device rate times the narrow-dot factor
(`passes/intra_op/dot_shape.py`). Where two plans do the same FLOPs per device in differently shaped dots,
this shows whether the device runs them alike (docs/cost_model.md, "Dots by shape").

    python benchmarks/cost_model_dots.py [--profile p8.json --profile p2x4.json] [--programs transformer]
                                         [--plans "data 8,data x model 2x4"] [--detail]
    python benchmarks/cost_model_dots.py --narrow [--profile p8.json]

Without --profile the devices are calibrated first, as in cost_model.py. --detail also lists every
distinct dot shape per plan. --narrow instead times matmuls with one narrow dimension (m rows, k
contracted or n columns of w = 16-256, the others 512 or 1024) against the square one of the same size,
and a 32-row and a 32-deep one in three layouts, beside the narrow-dot factor of the profile's
`dot_half_rate_width` (with --profile): how the device's rate follows a dot's shape. A dot is timed as
the difference between a program of 6 of them (each on a differently scaled input) and the same program
without them, median of 7 calls. Run it alone on the machine (benchmarks/isolated.sh).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from benchmarks import cost_model  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from autopar.cost import DeviceModel, load_profile  # noqa: E402
from autopar.passes.intra_op import dot_shape  # noqa: E402

CHAIN = 6
_SHAPE = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = \w+\[([\d,]*)\]")
_DOT = re.compile(r" dot\(%([\w.\-]+), %([\w.\-]+)\)")


@dataclasses.dataclass(frozen=True)
class Dot:
    """One dot of a compiled program: per-device operand shapes and `lax.dot_general` dimension numbers."""

    lhs: tuple[int, ...]
    rhs: tuple[int, ...]
    contracting: tuple[tuple[int, ...], tuple[int, ...]]
    batch: tuple[tuple[int, ...], tuple[int, ...]]

    @property
    def gemm(self) -> tuple[int, int, int]:
        """(m, n, k) per batch element."""
        k = math.prod(self.lhs[d] for d in self.contracting[0])
        b = math.prod(self.lhs[d] for d in self.batch[0])
        return math.prod(self.lhs) // (k * b), math.prod(self.rhs) // (k * b), k

    @property
    def flops(self) -> float:
        m, n, k = self.gemm
        return 2.0 * m * n * k * math.prod(self.lhs[d] for d in self.batch[0])


def _dims(line: str, key: str) -> tuple[int, ...]:
    m = re.search(key + r"=\{([\d,]*)\}", line)
    return tuple(int(d) for d in m.group(1).split(",") if d) if m else ()


def line_shapes(block: str) -> dict[str, tuple[int, ...]]:
    """The array shape of every value one computation's text defines (tuples left out)."""
    return {
        m.group(1): tuple(int(d) for d in m.group(2).split(",") if d)
        for m in map(_SHAPE.match, block.splitlines())
        if m
    }


def dot_in(line: str, shapes: dict[str, tuple[int, ...]]) -> Dot | None:
    """The `dot` instruction of one line of HLO text (its operands' shapes from `shapes`), None for any
    other line."""
    operands = _DOT.search(line)
    if not operands:
        return None
    contracting = (_dims(line, "lhs_contracting_dims"), _dims(line, "rhs_contracting_dims"))
    batch = (_dims(line, "lhs_batch_dims"), _dims(line, "rhs_batch_dims"))
    return Dot(shapes[operands.group(1)], shapes[operands.group(2)], contracting, batch)


def program_dots(hlo: str) -> list[Dot]:
    """Every `dot` instruction of a compiled module (inside fusions too), in text order. Each computation
    names its own values, so shapes are looked up within the computation (blocks split at blank lines)."""
    dots = []
    for block in hlo.split("\n\n"):
        shapes = line_shapes(block)
        dots += [dot for dot in (dot_in(line, shapes) for line in block.splitlines()) if dot]
    return dots


def priced(dot: Dot, flops: float, half_rate_width: float) -> float:
    """The cost model's compute time of `dot` on one device (dot_shape.py's narrow-dot factor)."""
    return dot.flops / flops * dot_shape.gemm_slowdown(*dot.gemm, half_rate_width)


def devices_of(profiles: dict[int, str]) -> dict[int, DeviceModel]:
    """The device figures of each mesh's profile ({number of axes: path}, as cost_model.profiles_from
    gives), read once and checked as the pass reads them."""
    return {len(shape): load_profile(profiles[len(shape)], shape)[1] for _, shape, _ in cost_model.PLANS}


def plan_dots(
    hlo: str, device: DeviceModel, alone: dict[Dot, float], mesh: Mesh
) -> tuple[list[Dot], float, float]:
    """(the dots of a compiled program, the model's price of them, their time alone) in seconds per device;
    `alone` keeps each shape's time across plans, which share most of their dot shapes."""
    dots = program_dots(hlo)
    for dot in dots:
        if dot not in alone:
            alone[dot] = timed_alone(dot, mesh)
    price = sum(priced(d, device.flops, device.dot_half_rate_width) for d in dots)
    return dots, price, sum(alone[d] for d in dots)


def timed_alone(dot: Dot, mesh: Mesh) -> float:
    """Seconds of `dot` on every device of `mesh` at once: CHAIN of them against the same program
    without them, over CHAIN (0 when noise hides it)."""
    spec = PartitionSpec(mesh.axis_names)
    dimension_numbers = (dot.contracting, dot.batch)

    def program(with_dots: bool):
        def body(a, b):
            total = jnp.zeros((), a.dtype)
            for i in range(CHAIN):
                scaled = a[0] * (1.0 + 1e-3 * i)  # a different input each time: XLA cannot share them
                if with_dots:
                    total += jnp.sum(jax.lax.dot_general(scaled, b[0], dimension_numbers))
                else:
                    total += jnp.sum(scaled) + b[0].ravel()[0]
            return total[None]

        return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(spec, spec), out_specs=spec))

    rng = np.random.default_rng(0)
    args = [
        jax.device_put(rng.standard_normal((mesh.size, *s)).astype(np.float32), NamedSharding(mesh, spec))
        for s in (dot.lhs, dot.rhs)
    ]
    seconds = []
    for f in (program(True), program(False)):
        jax.block_until_ready(f(*args))
        calls = []
        for _ in range(7):
            start = time.perf_counter()
            jax.block_until_ready(f(*args))
            calls.append(time.perf_counter() - start)
        seconds.append(statistics.median(calls))
    return max((seconds[0] - seconds[1]) / CHAIN, 0.0)


def _layout(m: int, k: int, n: int, layout: str) -> Dot:
    """An m x k by k x n dot with its operands stored as `layout` says: "nn" (lhs m x k, rhs k x n),
    "tn" (lhs stored k x m) or "nt" (rhs stored n x k)."""
    lhs_shape, lhs_contracting = ((k, m), (0,)) if layout == "tn" else ((m, k), (1,))
    rhs_shape, rhs_contracting = ((n, k), (1,)) if layout == "nt" else ((k, n), (0,))
    return Dot(lhs_shape, rhs_shape, (lhs_contracting, rhs_contracting), ((), ()))


def narrow(mesh: Mesh, half_rate_width: float | None) -> None:
    """Prints the rate of dots with one narrow dimension against the square dot of their size."""
    rate = lambda dot: dot.flops / max(min(timed_alone(dot, mesh) for _ in range(2)), 1e-9)  # noqa: E731
    print("| square | w | narrow m | narrow k | narrow n | model's factor |")
    print("|---|---|---|---|---|---|")
    for size in (512, 1024):
        square = rate(_layout(size, size, size, "nn"))
        for w in (16, 32, 64, 128, 256):
            shapes = ((w, size, size), (size, w, size), (size, size, w))
            cells = " | ".join(f"{square / rate(_layout(*s, 'nn')):.2f}" for s in shapes)
            model = (
                "-"
                if half_rate_width is None
                else f"{dot_shape.gemm_slowdown(w, size, size, half_rate_width):.2f}"
            )
            print(f"| {size}^3 at {square / 1e9:.1f} GFLOP/s | {w} | {cells} | {model} |", flush=True)
    print("\n| layout | m 32, k 1024, n 1024: GFLOP/s | m 1024, k 32, n 1024: GFLOP/s |")
    print("|---|---|---|")
    for layout in ("nn", "tn", "nt"):
        rows, deep = rate(_layout(32, 1024, 1024, layout)), rate(_layout(1024, 32, 1024, layout))
        print(f"| {layout} | {rows / 1e9:.1f} | {deep / 1e9:.1f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cost_model.add_plan_arguments(parser, "transformer")
    parser.add_argument("--detail", action="store_true", help="every distinct dot shape per plan")
    parser.add_argument("--narrow", action="store_true", help="the rate of dots with one narrow dimension")
    a = parser.parse_args()
    mesh = Mesh(np.asarray(jax.devices()), ("d",))
    if a.narrow:
        narrow(
            mesh,
            devices_of(cost_model.profiles_from(a.profile))[1].dot_half_rate_width if a.profile else None,
        )
        return 0
    plans, programs = cost_model.plans_named(a.plans), cost_model.programs_named(a.programs)
    profiles = cost_model.profiles_of(a)
    devices = devices_of(profiles)
    meshes = {name: shape for name, shape, _ in plans}
    alone: dict[Dot, float] = {}
    for program in programs:
        texts: dict[str, str] = {}
        cost_model.prepare(program, profiles, plans=plans, texts=texts)
        print(f"\n### {program}: the compiled dots per device, ms per step\n")
        print("| plan | dots | priced by the model | timed alone | alone / priced |")
        print("|---|---|---|---|---|")
        for name, hlo in texts.items():
            device = devices[len(meshes[name])]
            dots, price, took = plan_dots(hlo, device, alone, mesh)
            ratio = f"{took / price:.2f}" if price else "-"
            print(f"| {name} | {len(dots)} | {price * 1e3:.1f} | {took * 1e3:.1f} | {ratio} |", flush=True)
            if a.detail:
                for dot, count in collections.Counter(dots).most_common():
                    m, n, k = dot.gemm
                    each = priced(dot, device.flops, device.dot_half_rate_width)
                    print(
                        f"|   {count} x {dot.lhs} . {dot.rhs} (m {m}, n {n}, k {k}) | | "
                        f"{each * 1e3:.3f} each | {alone[dot] * 1e3:.3f} each | |"
                    )
    print(f"\n{os.cpu_count()} cores; load average over the last minute: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
