"""Calibration end to end: pick the devices and the mesh, measure, fit, and write the cluster profile that
`autopar.cost.load_profile` reads (the intra-op pass's `cluster-profile` option)."""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh

from autopar.calibrate import fit, measure
from autopar.ir import io

# The widths of the narrow dots measured against square ones; the cost model's dot_half_rate_width
# (autopar.cost.DeviceModel) is fitted to their slowdowns.
NARROW_WIDTHS = (16, 32, 64)


def select_devices(spec: str | None) -> list:
    """`None`: every device; `"N"`: the first N; `"0,2,5"`: those ids. ValueError names a bad choice."""
    devices = jax.devices()
    if spec is None or not spec.strip():
        return devices
    text = spec.strip()
    if "," not in text:
        try:
            count = int(text)
        except ValueError:
            raise ValueError(f"--devices '{spec}' is not a count or a comma list of device ids") from None
        if not 1 <= count <= len(devices):
            raise ValueError(
                f"--devices {count}: {len(devices)} {devices[0].platform} device(s) here (on CPU, "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N gives N)"
            )
        return devices[:count]
    by_id = {d.id: d for d in devices}
    try:
        ids = [int(p) for p in text.split(",")]
    except ValueError:
        raise ValueError(f"--devices '{spec}' is not a count or a comma list of device ids") from None
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise ValueError(f"--devices: unknown device id(s) {unknown}; the ids here are {sorted(by_id)}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"--devices '{spec}' repeats a device id")
    return [by_id[i] for i in ids]


def parse_mesh(text: str | None, num_devices: int) -> tuple[int, ...]:
    """`"2x4"` -> (2, 4); None: one axis over every device. ValueError unless 1-3 axes cover the devices."""
    if text is None:
        return (num_devices,)
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--mesh '{text}' is not a shape like 8, 2x4 or 2x2x2") from None
    if not 1 <= len(shape) <= 3 or any(s < 1 for s in shape):
        raise ValueError(f"--mesh '{text}' must have 1 to 3 axes of size >= 1")
    if math.prod(shape) != num_devices:
        raise ValueError(f"--mesh {text} has {math.prod(shape)} devices, {num_devices} were chosen")
    return shape


def calibrate(
    devices: Sequence, shape: Sequence[int], quick: bool = False, log=None, device: dict | None = None
) -> dict:
    """Measures `devices` laid out as a mesh of `shape` (axes x, y, z) and returns the profile (a dict in
    `load_profile`'s format, with the samples and the setting under "calibration"). `device`: the device
    figures ({"flops", "memory_bandwidth", "dot_half_rate_width"}) of an earlier calibration of the same
    devices, kept instead of measured again (profiles of several meshes then share one measurement of the
    devices)."""
    names = "xyz"[: len(shape)]
    mesh = Mesh(np.asarray(devices, dtype=object).reshape(tuple(shape)), tuple(names))
    repeats = 3 if quick else 5
    say = log or (lambda _msg: None)
    if device is None:
        # The device figures scale every op's price, and each takes well under a second: they get long
        # chains and many repeats. With a 4-matmul chain timed 5 times (0.15 s in all) two calibrations of
        # one machine gave 2.7e10 and 4.9e10 FLOP/s; with 16 matmuls timed 15 times, 4.9e10-5.5e10. The
        # bandwidth of that machine moved between 6.6e9 and 12e9 bytes/s over an hour, whatever ran
        # before it (docs/cost_model.md, "Calibration").
        flops = measure.device_flops(mesh, n=256 if quick else 512, chain=16, repeats=3 * repeats)
        bandwidth = measure.memory_bandwidth(mesh, 16 * measure.MiB, 3 * repeats)
        n = 256 if quick else 512
        slowdowns = measure.narrow_dot_slowdowns(mesh, n, NARROW_WIDTHS, repeats)
        width = measure.fit_half_rate_width(slowdowns)
    else:
        flops, bandwidth = float(device["flops"]), float(device["memory_bandwidth"])
        width = float(device.get("dot_half_rate_width", 0.0))
    say(
        f"device: {flops:.3g} FLOP/s, {bandwidth:.3g} bytes/s memory bandwidth, "
        f"dots at half rate up to width {width:.3g}"
    )
    byte_sizes = measure.sizes(quick)
    alphas, betas = [], []
    per_kind: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in measure.KINDS}
    samples: dict[str, dict[str, list[list[float]]]] = {}
    for axis, size in zip(names, shape, strict=True):
        if size == 1:  # nothing to measure: a size-1 axis never communicates
            alphas.append(0.0)
            betas.append(0.0)
            for kind in measure.KINDS:
                per_kind[kind][0].append(0.0)
                per_kind[kind][1].append(0.0)
            continue
        measured = measure.collective_samples(mesh, axis, measure.KINDS, byte_sizes, repeats)
        samples[axis] = {kind: [[b, s] for b, s in pairs] for kind, pairs in measured.items()}
        joint = []
        for kind, all_pairs in measured.items():
            pairs = [p for p in all_pairs if p[1] is not None]
            if not pairs:
                raise RuntimeError(f"no {kind} over axis {axis} could be timed: is the machine too busy?")
            a, b = fit.fit_collective(kind, size, [p[0] for p in pairs], [p[1] for p in pairs])
            per_kind[kind][0].append(a)
            per_kind[kind][1].append(b)
            joint += [(kind, size, nb, s) for nb, s in pairs]
            say(f"axis {axis} (size {size}) {kind:<14} alpha {a:.3g} s  beta {b:.3g} s/B ({_rate(b)})")
        a, b = fit.fit_joint(joint)
        alphas.append(a)
        betas.append(b)
    tables = _tables(mesh, shape, samples, byte_sizes, repeats, say)
    mesh_figures: dict = {"shape": list(shape)}
    if samples:  # one device: nothing communicates, and 0 s would price every other mesh's collectives free
        mesh_figures["alpha"], mesh_figures["beta"] = alphas, betas
        mesh_figures["collectives"] = {
            k: {"alpha": a, "beta": b, "tables": tables[k]} for k, (a, b) in per_kind.items()
        }
    else:
        say("one device: no collective figures (the profile keeps the defaults' links)")
    return {
        "device": {
            "flops": flops,
            "memory_bandwidth": bandwidth,
            "dot_half_rate_width": width,
            # Not measured: XLA's CPU compiler runs every bf16 collective in f32 (cost.DeviceModel).
            "widened_collectives": devices[0].platform == "cpu",
        },
        "mesh": mesh_figures,
        "calibration": {
            "platform": devices[0].platform,
            "device_kind": devices[0].device_kind,
            "device_ids": [d.id for d in devices],
            "quick": quick,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "samples": samples,
        },
    }


def _tables(mesh: Mesh, shape, samples: dict, byte_sizes, repeats: int, say) -> dict[str, list[dict]]:
    """{kind: [{"axes": [i], "samples": [[bytes, s], ...], "merged_operand": s}, ...]}: the measured times
    of every axis, and, when two or more axes communicate, of all of them as one group (measured here):
    the tables that price each collective by interpolation (autopar/cost/tables.py); the gradients' kinds
    also get their cost per further merged operand. Untimed sizes are left out."""
    names = "xyz"[: len(shape)]
    groups = {(i,): samples[names[i]] for i in range(len(shape)) if names[i] in samples}
    if len(groups) >= 2:
        indices = tuple(i for (i,) in groups)
        together = tuple(names[i] for i in indices)
        say(f"axes {','.join(together)} together (size {math.prod(mesh.shape[a] for a in together)})")
        measured = measure.collective_samples(mesh, together, measure.KINDS, byte_sizes, repeats)
        groups[indices] = {kind: [[b, t] for b, t in pairs] for kind, pairs in measured.items()}
        samples[",".join(together)] = groups[indices]
    merged = {axes: _merged_operands(mesh, tuple(names[i] for i in axes), repeats, say) for axes in groups}
    return {
        kind: [
            {
                "axes": list(axes),
                "samples": [[b, t] for b, t in by_kind[kind] if t is not None],
                **({"merged_operand": merged[axes][kind]} if kind in merged[axes] else {}),
            }
            for axes, by_kind in groups.items()
            if any(t is not None for _, t in by_kind[kind])
        ]
        for kind in measure.KINDS
    }


def _merged_operands(mesh: Mesh, axes: tuple[str, ...], repeats: int, say) -> dict[str, float]:
    """{kind: seconds per further operand of a merged gradient collective} over `axes` as one group
    (measure.merged_operand_seconds; the tables' `merged_operand`)."""
    group = axes[0] if len(axes) == 1 else axes
    out = {
        kind: measure.merged_operand_seconds(mesh, group, kind, measure.MERGED_OPERANDS, repeats)
        for kind in measure.MERGED_KINDS
    }
    figures = ", ".join(f"{kind} {s * 1e6:.0f} us" for kind, s in out.items())
    say(f"axes {','.join(axes)}: each further merged gradient collective {figures}")
    return out


def _rate(beta: float) -> str:
    return "inf B/s" if beta <= 0 else f"{1 / beta:.3g} B/s"


def write_profile(profile: dict, path: str | os.PathLike[str]) -> None:
    """Writes `profile` as JSON to `path` atomically (a temporary file in the same folder, then a rename):
    a reader sees the old file or the new one, never half of one."""
    io.write_atomically(Path(path), (json.dumps(profile, indent=1) + "\n").encode())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # as open() would create it (the temporary file was private)
