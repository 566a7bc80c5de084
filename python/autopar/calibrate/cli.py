"""`python -m autopar.calibrate [--devices N|IDS] [--mesh 2x4] [--quick] -o profile.json`.

Measures the devices at hand and writes a cluster profile (docs/cost_model.md, "Calibration"). stdout stays
empty; a short summary goes to stderr. Bad input (unknown device ids, a mesh that does not cover the chosen
devices, an unwritable output) is one `error:` line and exit code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


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


def main(argv: list[str] | None = None) -> int:
    parser = _ArgumentParser(prog="python -m autopar.calibrate", description=__doc__.splitlines()[2])
    parser.add_argument(
        "--devices", help="how many devices (the first N) or a comma list of ids; default all"
    )
    parser.add_argument("--mesh", help="mesh shape over the devices, outermost first (8, 2x4, 2x2x2)")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("-o", "--output", required=True, help="the profile JSON to write")
    args = parser.parse_args(argv)
    from autopar.calibrate import profile  # imports jax: after the arguments are known to parse

    try:
        _check_writable(args.output)
        devices = profile.select_devices(args.devices)
        shape = profile.parse_mesh(args.mesh, len(devices))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    mesh_text = "x".join(map(str, shape))
    _say(f"calibrating {len(devices)} {devices[0].platform} device(s) as mesh {mesh_text}")
    result = profile.calibrate(devices, shape, quick=args.quick, log=_say)
    try:
        profile.write_profile(result, args.output)
    except OSError as err:
        print(f"error: cannot write {args.output}: {err.strerror}", file=sys.stderr)
        return 1
    _say(f"wrote {args.output} in {time.perf_counter() - start:.1f} s")
    return 0
