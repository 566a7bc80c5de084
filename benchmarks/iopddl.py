"""Solver quality on the public IOPDDL problems (../shared/bench/iopddl next to the repository).

    python benchmarks/iopddl.py [--time-scale 0.1] [--problems A,G,M,S,example]

Each problem runs in its own process (so max RSS is per problem) within the contest's timeout times
--time-scale; every solution is re-checked with the core's evaluator. Prints one table row per problem;
clock_cut says whether the wall clock (not the work budget) stopped some phase, i.e. whether the same seed
may give another solution on another run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# file, contest timeout (s), best known cost (from the data's README)
PROBLEMS = {
    "example": ("example.json", 10.0, 445.0),
    "A": ("asplos-2025-iopddl-A.json.gz", 60.0, 6_548_641_531.0),
    "G": ("asplos-2025-iopddl-G.json.gz", 120.0, 217_039.0),
    "M": ("asplos-2025-iopddl-M.json.gz", 180.0, 49_928_157_537.0),
    "S": ("asplos-2025-iopddl-S.json.gz", 240.0, 1_521_949_307.0),
}


def run_one(path: Path, time_limit: float, seed: int) -> dict:
    """Child process: load, solve, verify; prints one JSON line."""
    from autopar.solver import StrategyProblem, solve

    t0 = time.perf_counter()
    problem = StrategyProblem.from_json(path)
    load = time.perf_counter() - t0
    sol = solve(problem, time_limit=time_limit, seed=seed)
    cost, peak, ok = problem.evaluate(sol.strategies)
    verified = ok == sol.feasible and (not ok or (cost == sol.cost and peak == sol.peak_memory))
    return {
        "load_s": load,
        "cost": sol.cost,
        "status": sol.status,
        "feasible": sol.feasible,
        "verified": verified,
        "first_s": sol.time_to_first_feasible,
        "best_s": sol.time_to_best,
        "solve_s": sol.solve_time,
        "peak": sol.peak_memory,
        "limit": problem.usage_limit,
        "lower_bound": sol.lower_bound,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "clock_cut": sol.clock_cut,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-dir", type=Path, default=REPO.parent / "shared" / "bench" / "iopddl")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply the contest timeouts")
    parser.add_argument("--problems", default="example,G,A,M,S")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=2, metavar=("PATH", "TIME_LIMIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(Path(args.child[0]), float(args.child[1]), args.seed)))
        return 0
    header = (
        "problem",
        "limit_s",
        "cost",
        "best_known",
        "ratio",
        "bound/best_known",
        "status",
        "first_s",
        "best_s",
        "peak/limit",
        "rss_MiB",
        "clock_cut",
        "verified",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    failures = 0
    for name in args.problems.split(","):
        file, timeout, best_known = PROBLEMS[name]
        limit = timeout * args.time_scale
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--seed",
                str(args.seed),
                "--child",
                str(args.bench_dir / file),
                str(limit),
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            print(f"| {name} | {limit:g} | crashed: {out.stderr.strip().splitlines()[-1:]} |")
            failures += 1
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        failures += not r["verified"]
        peak = f"{r['peak'] / r['limit']:.3f}" if r["limit"] else str(r["peak"])
        first = "-" if r["first_s"] is None else f"{r['first_s']:.2f}"
        bound = "-" if r["lower_bound"] is None else f"{r['lower_bound'] / best_known:.4f}"
        print(
            f"| {name} | {limit:g} | {r['cost']:.0f} | {best_known:.0f} | {r['cost'] / best_known:.4f} | "
            f"{bound} | {r['status']} | {first} | {r['best_s']:.2f} | {peak} | {r['rss_mib']:.0f} | "
            f"{r['clock_cut']} | {r['verified']} |",
            flush=True,
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
