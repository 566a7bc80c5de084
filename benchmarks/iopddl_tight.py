"""Feasibility under tightened limits: the public IOPDDL problems with their usage limit lowered to the
smallest peak a solution can have, and a little above it (--bench-dir or AUTOPAR_IOPDDL_DIR).

    python benchmarks/iopddl_tight.py [--problems A,B,...] [--factors 1,1.02,1.05] [--share 0.1]

The contest's limits sit about 10 % above the smallest peak (the `floor/limit` column); programs other
users bring need not. Per problem, `autopar-solve` first runs with a usage limit of 1, which it must
call infeasible, reporting the smallest peak of any finite-cost solution (exactly, or as a lower bound
when its least-usage solution has a forbidden pair); then, per factor f, with the limit at f x that
floor and a time limit of --share x the contest's timeout (issue #13 asks for a feasible solution within
a tenth of the limit). Each run is its own process, as a user's is; the table gives its status, time to
first feasible, peak against limit, and wall time. A row marked `MISSED` found nothing feasible where
the floor is exact (a solution peaking at it exists).
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))
from benchmarks import contest_data  # noqa: E402
from benchmarks.iopddl import ALL, FILES, PROBLEMS  # noqa: E402

FLOOR = re.compile(r"(?:peak usage is|peaks at) (\d+)")
LIMIT = re.compile(r'"usage_limit": \d+')


def run_cli(path: Path, time_limit: float) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, wall seconds) of `autopar-solve path --time-limit time_limit`."""
    start = time.perf_counter()
    argv = [sys.executable, "-m", "autopar.solver", str(path), "--time-limit", f"{time_limit:g}"]
    out = subprocess.run(argv, capture_output=True, text=True)
    return out.returncode, out.stdout, out.stderr, time.perf_counter() - start


def with_limit(text: str, limit: int, folder: Path) -> Path:
    """The contest file `text` (as StrategyProblem.to_json writes it) with its usage limit set to `limit`,
    written to `folder`."""
    path = folder / f"limit-{limit}.json"
    path.write_text(LIMIT.sub(f'"usage_limit": {limit}', text, count=1))
    return path


def field(text: str, name: str) -> str:
    """The value after `name:` in autopar-solve's summary, or '-'."""
    m = re.search(rf"{name}: (\S+)", text)
    return m.group(1) if m else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    contest_data.add_bench_dir(parser)
    parser.add_argument("--problems", default=ALL, help=f"comma-separated (default {ALL})")
    parser.add_argument("--factors", default="1,1.02,1.05", help="limits as multiples of the floor")
    parser.add_argument("--share", type=float, default=0.1, help="time limit as a share of the contest's")
    args = parser.parse_args()
    bench_dir = contest_data.require_dir(args.bench_dir, "--bench-dir")
    chosen = contest_data.chosen_problems(args.problems, FILES, bench_dir)
    factors = [float(f) for f in args.factors.split(",")]
    from autopar.solver import StrategyProblem

    columns = ["problem", "floor/limit", "floor", "factor", "time limit s", "status", "first feasible s"]
    print("| " + " | ".join([*columns, "peak/limit", "wall s"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, file in chosen:
            timeout = PROBLEMS[name][1]
            problem = StrategyProblem.from_json(file)
            base = Path(tmp) / "problem.json"
            problem.to_json(base)
            text = base.read_text()
            rc, _, err, _ = run_cli(with_limit(text, 1, Path(tmp)), timeout * args.share)
            m = FLOOR.search(err)
            if rc != 2 or m is None:
                print(f"| {name} | - | - | - | - | limit 1 not refused (exit {rc}: {err.strip()[-120:]}) |")
                missed += 1
                continue
            floor, exact = int(m.group(1)), "achievable" in err
            for f in factors:
                limit = math.ceil(floor * f)
                rc, out, err, wall = run_cli(with_limit(text, limit, Path(tmp)), timeout * args.share)
                status = field(out, "status") if rc == 0 else (err.strip().split(": ")[1:2] or ["?"])[0]
                peak = field(out, "peak usage")
                ratio = f"{int(peak) / limit:.4f}" if peak.isdigit() else "-"
                mark = "" if rc == 0 or not exact else " MISSED"
                missed += bool(mark)
                print(
                    f"| {name} | {floor / problem.usage_limit:.3f} | {floor}{'' if exact else ' (bound)'} | "
                    f"{f:g} | {timeout * args.share:g} | {status}{mark} | {field(out, 'first feasible')} | "
                    f"{ratio} | {wall:.1f} |",
                    flush=True,
                )
    print(f"\nno feasible solution where one exists: {missed} run(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
