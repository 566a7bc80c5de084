"""`python -m autopar.calibrate [--devices N|IDS] [--mesh 2x4] [--quick] [--device-figures P] -o out.json`.

Measures the devices at hand and writes a cluster profile (docs/cost_model.md, "Calibration"). stdout stays
empty; a short summary goes to stderr. Bad input (unknown device ids, a mesh that does not cover the chosen
devices, an unwritable output, a --device-figures file without device figures) is one `error:` line and
exit code 1. Run it at the priority programs run at: under real-time scheduling (`chrt`) its chains of
matmuls and of collectives have measured faster than steps run, and it says so on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_writable(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise ValueError(f"-o {path} is a directory")
    if not os.path.isdir(folder):
        raise ValueError(f"-o {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ValueError(f"-o {path} is not writable")


def _device_figures(path: str) -> dict:
    """The "device" figures of the profile at `path`, checked as the cost model checks them
    (`autopar.cost.DeviceModel`); ValueError names what is missing."""
    from autopar.cost import DeviceModel

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--device-figures {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--device-figures {path} is not a readable JSON profile ({err})") from None
    device = data.get("device") if isinstance(data, dict) else None
    if not isinstance(device, dict) or not {"flops", "memory_bandwidth"} <= set(device):
        raise ValueError(
            f"--device-figures {path} has no device figures (a profile that python -m autopar.calibrate "
            "wrote has 'device': {'flops': ..., 'memory_bandwidth': ...})"
        )
    try:
        model = DeviceModel(
            flops=float(device["flops"]),
            memory_bandwidth=float(device["memory_bandwidth"]),
            dot_half_rate_width=float(device.get("dot_half_rate_width", 0.0)),
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"--device-figures {path}: {err}") from None
    return {k: getattr(model, k) for k in ("flops", "memory_bandwidth", "dot_half_rate_width")}


def _real_time_scheduling() -> bool:
    """Whether this process runs under a real-time policy (SCHED_FIFO or SCHED_RR, as `chrt` sets)."""
    try:
        return os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR)
    except (AttributeError, OSError):  # not Linux
        return False


def main(argv: list[str] | None = None) -> int:
    parser = _ArgumentParser(
        prog="python -m autopar.calibrate",
        description=__doc__.split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--devices", help="how many devices (the first N) or a comma list of ids; default all"
    )
    parser.add_argument("--mesh", help="mesh shape over the devices, outermost first (8, 2x4, 2x2x2)")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument(
        "--device-figures",
        metavar="PROFILE",
        help="take the device figures (FLOP/s, memory bandwidth, narrow dots) from this earlier profile "
        "of the same devices instead of measuring them again: profiles of several meshes then price "
        "compute alike",
    )
    parser.add_argument("-o", "--output", required=True, help="the profile JSON to write")
    args = parser.parse_args(argv)
    from autopar.calibrate import profile  # imports jax: after the arguments are known to parse

    try:
        _check_writable(args.output)
        devices = profile.select_devices(args.devices)
        shape = profile.parse_mesh(args.mesh, len(devices))
        device = _device_figures(args.device_figures) if args.device_figures else None
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    mesh_text = "x".join(map(str, shape))
    _say(f"calibrating {len(devices)} {devices[0].platform} device(s) as mesh {mesh_text}")
    if _real_time_scheduling():
        _say(
            "note: this process runs at real-time priority (chrt); calibrations under it have measured "
            "faster than steps run (docs/cost_model.md, 'Calibrate at normal priority')"
        )
    result = profile.calibrate(devices, shape, quick=args.quick, log=_say, device=device)
    if args.device_figures:  # where the device figures came from, beside what was measured here
        result["calibration"]["device_figures_from"] = os.path.abspath(args.device_figures)
    try:
        profile.write_profile(result, args.output)
    except OSError as err:
        print(f"error: cannot write {args.output}: {err.strerror}", file=sys.stderr)
        return 1
    _say(f"wrote {args.output} in {time.perf_counter() - start:.1f} s")
    return 0
