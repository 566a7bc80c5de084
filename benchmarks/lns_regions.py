"""What the large-neighbourhood searches' region solves cost against what they are charged.

    python benchmarks/lns_regions.py [--problems A,C,D,K,N,S] [--seeds 0] [--bench-dir DIR]
                                     [--time-limit S] [--big-columns 60000]

Solves each problem (`solve(p, time_limit=<contest timeout>, seed=s)`) with every region solve of the
priced and the final searches timed (`lns.solve_region`, wrapped). One row per problem and seed: the
regions solved, how many of them ran HiGHS's MIP (the relaxation was not integral), the counted units
(`lns.ilp_work`) per thread second of HiGHS over all regions, the regions of more than --big-columns
columns and how many of those ran the MIP, and the MIPs' units per thread second and milliseconds per
simplex iteration (docs/solver.md, "Measured, not adopted
(2026-12-03, third session of the day)"). The units are deterministic; the seconds are this machine's, so
run it on a quiet one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))

from benchmarks import contest_data  # noqa: E402
from benchmarks.iopddl import FILES, PROBLEMS  # noqa: E402

from autopar.solver import StrategyProblem, lns, orchestrate  # noqa: E402

DEFAULT = "A,C,D,K,N,S"
COLUMNS = (
    "problem",
    "seed",
    "regions",
    "MIPs",
    "units per thread s",
    "large regions",
    "their MIPs",
    "those MIPs' units per thread s",
    "their ms per simplex iteration",
)


def timed_regions(path: Path, time_limit: float, seed: int) -> list[dict]:
    """Every region solve of one run: columns, whether it was a MIP, units charged, HiGHS seconds, and its
    simplex iterations (the relaxation's and the MIP's)."""
    problem = StrategyProblem.from_json(path)
    records, solve_region = [], lns.solve_region

    def timed(job: tuple):
        began = time.perf_counter()
        result = solve_region(job)
        model, stats = job[0], job[4]
        if not model.too_big:
            records.append(
                {
                    "columns": model.num_cols,
                    "mip": not stats.get("lp_integral", False),
                    "units": lns.ilp_work(model, stats),
                    "seconds": time.perf_counter() - began,
                    "iterations": stats.get("simplex", 0) + stats.get("lp_simplex", 0),
                }
            )
        return result

    lns.solve_region = timed
    try:
        orchestrate.solve(problem, time_limit=time_limit, seed=seed)
    finally:
        lns.solve_region = solve_region
    return records


def rate(records: list[dict]) -> str:
    seconds = sum(r["seconds"] for r in records)
    return f"{sum(r['units'] for r in records) / seconds / 1e6:.2f}M" if seconds > 0 else "-"


def row(name: str, seed: int, records: list[dict], big_columns: int) -> list[str]:
    big = [r for r in records if r["mip"] and r["columns"] > big_columns]
    per_iteration = [1e3 * r["seconds"] / r["iterations"] for r in big if r["iterations"]]
    spread = f"{min(per_iteration):.2f}-{max(per_iteration):.2f}" if per_iteration else "-"
    mips = sum(r["mip"] for r in records)
    large = sum(r["columns"] > big_columns for r in records)
    counts = [str(len(records)), str(mips), rate(records), str(large), str(len(big))]
    return [name, str(seed), *counts, rate(big), spread]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    contest_data.add_bench_dir(parser)
    parser.add_argument("--problems", default=DEFAULT, help=f"comma-separated (default {DEFAULT})")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--time-limit", type=float, help="seconds per run (default: each contest timeout)")
    parser.add_argument("--big-columns", type=int, default=60_000, help="MIPs above this many columns")
    args = parser.parse_args()
    folder = contest_data.require_dir(args.bench_dir, "--bench-dir")
    chosen = contest_data.chosen_problems(args.problems, FILES, folder)
    seeds = contest_data.seeds(args.seeds)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS), flush=True)
    for name, path in chosen:
        limit = args.time_limit if args.time_limit is not None else PROBLEMS[name][1]
        for seed in seeds:
            records = timed_regions(path, limit, seed)
            print("| " + " | ".join(row(name, seed, records, args.big_columns)) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
