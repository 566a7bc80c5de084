"""Solver quality on the public IOPDDL problems (their files: --bench-dir or AUTOPAR_IOPDDL_DIR).

    python benchmarks/iopddl.py [--time-scale 1] [--problems A,B,...] [--seeds 0,1,2] [--work-only]

Each (problem, seed) runs in its own process, as `autopar-solve` would: the contest's timeout (times
--time-scale) counts from the process start, loading included, and the parent measures the process's whole
wall time (`wall/limit` must stay within limit + 1 s). Every solution is re-checked with the core's
evaluator. One row per problem; the score is the contest's, best_known / cost (1 = the best known solution,
> 1 better). Columns: time to first feasible (seed 0, and the slowest seed), the score at 10 %, 50 % and
100 % of the limit (seed 0), the worst seed's final score and every seed's; clock_cut says whether the
wall clock (not the work budget) stopped some phase, i.e. whether the same seed may give another
solution on another run.
"""

from __future__ import annotations

import time

_PROCESS_START = time.perf_counter()  # before the heavy imports: the limit counts loading too

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))
from benchmarks import contest_data  # noqa: E402

# file, contest timeout (s), best known cost (from the data's README)
PROBLEMS = {
    "example": ("example.json", 10.0, 445.0),
    "A": ("asplos-2025-iopddl-A.json.gz", 60.0, 6_548_641_531.0),
    "B": ("asplos-2025-iopddl-B.json.gz", 60.0, 532_843.0),
    "C": ("asplos-2025-iopddl-C.json.gz", 60.0, 84_102_445_244.0),
    "D": ("asplos-2025-iopddl-D.json.gz", 60.0, 309_396_217_429.0),
    "G": ("asplos-2025-iopddl-G.json.gz", 120.0, 217_039.0),
    "K": ("asplos-2025-iopddl-K.json.gz", 180.0, 2_242_635_784.0),
    "L": ("asplos-2025-iopddl-L.json.gz", 180.0, 1_970_993_742.0),
    "M": ("asplos-2025-iopddl-M.json.gz", 180.0, 49_928_157_537.0),
    "N": ("asplos-2025-iopddl-N.json.gz", 180.0, 199_470_115_118.0),
    "S": ("asplos-2025-iopddl-S.json.gz", 240.0, 1_521_949_307.0),
}
FILES = {name: file for name, (file, _, _) in PROBLEMS.items()}
ALL = "A,B,C,D,G,K,L,M,N,S"
CHECKPOINTS = (0.1, 0.5, 1.0)  # shares of the limit at which the quality curve is read


# --work-only: the clock cap is this many times the budget, and the phases' wall caps this slack
# (cfn_pricing.CFN_WALL_SLACK and pricing.PRICE_WALL_SLACK, 1.5 by default), so that on a loaded machine
# the counted work, not the load, ends every phase and a before/after comparison is the same on every run.
WORK_ONLY_CLOCK = 8.0
WORK_ONLY_WALL_SLACK = 20.0


def work_only_clock(time_limit: float) -> float:
    """For a run on counted work: lifts the phases' wall caps to WORK_ONLY_WALL_SLACK (for the rest of the
    process) and returns the clock cap, WORK_ONLY_CLOCK x the limit (the budget stays the limit)."""
    from autopar.solver import cfn_pricing, pricing

    cfn_pricing.CFN_WALL_SLACK = pricing.PRICE_WALL_SLACK = WORK_ONLY_WALL_SLACK
    return WORK_ONLY_CLOCK * time_limit


def run_one(path: Path, time_limit: float, seed: int, work_only: bool = False) -> dict:
    """Child process: load, solve, verify; prints one JSON line."""
    from autopar.solver import StrategyProblem, solve

    problem = StrategyProblem.from_json(path)
    load = time.perf_counter() - _PROCESS_START
    budget, clock = time_limit, work_only_clock(time_limit) if work_only else time_limit
    sol = solve(problem, time_limit=clock, budget=budget, seed=seed, clock_start=_PROCESS_START)
    cost, peak, ok = problem.evaluate(sol.strategies)
    verified = ok == sol.feasible and (not ok or (cost == sol.cost and peak == sol.peak_memory))
    return {
        "load_s": load,
        "cost": sol.cost,
        "status": sol.status,
        "feasible": sol.feasible,
        "verified": verified,
        "first_s": sol.time_to_first_feasible,
        "trace": [list(t) for t in sol.trace],
        "peak": sol.peak_memory,
        "limit": problem.usage_limit,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "clock_cut": sol.clock_cut,
        "message": sol.message,
    }


def cost_at(trace: list, seconds: float) -> float:
    """The best cost found by `seconds` (inf before the first feasible solution)."""
    found = [cost for t, cost in trace if t <= seconds]
    return min(found) if found else float("inf")


def run_child(bench_dir: Path, name: str, limit: float, seed: int, work_only: bool = False) -> dict:
    file = PROBLEMS[name][0]
    argv = [sys.executable, __file__, "--seed", str(seed), "--child", str(bench_dir / file), str(limit)]
    argv += ["--work-only"] if work_only else []
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        return {"crashed": (out.stderr.strip().splitlines() or ["(no output)"])[-1], "wall_s": wall}
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["wall_s"] = wall
    return r


def score(best_known: float, cost: float) -> str:
    return f"{best_known / cost:.4f}" if cost < float("inf") else "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    contest_data.add_bench_dir(parser)
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply the contest timeouts")
    parser.add_argument("--problems", default=ALL, help=f"comma-separated (default {ALL}; also: example)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0); the first is shown")
    parser.add_argument(
        "--work-only",
        action="store_true",
        help="compare on counted work: budget = the timeout, the clock cap far above it (the scores then "
        "do not depend on the machine's load; wall/limit is no longer the contest's)",
    )
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("PATH", "TIME_LIMIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(Path(args.child[0]), float(args.child[1]), args.seed, args.work_only)))
        return 0
    args.bench_dir = contest_data.require_dir(args.bench_dir, "--bench-dir")
    chosen = contest_data.chosen_problems(args.problems, FILES, args.bench_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    header = ["problem", "limit_s", "first_s", "first_s (slowest seed)"]
    header += [f"score@{int(c * 100)}%" for c in CHECKPOINTS]
    header += ["worst seed: score", "scores by seed", "max wall/limit", "peak/limit", "status", "rss_MiB"]
    header += ["clock_cut", "verified"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header), flush=True)
    failures = 0
    for name, _ in chosen:
        _, timeout, best_known = PROBLEMS[name]
        limit = timeout * args.time_scale
        runs = {seed: run_child(args.bench_dir, name, limit, seed, args.work_only) for seed in seeds}
        crashed = [f"seed {s}: {r['crashed']}" for s, r in runs.items() if "crashed" in r]
        if crashed:
            print(f"| {name} | {limit:g} | crashed: {'; '.join(crashed)} |", flush=True)
            failures += 1
            continue
        failures += sum(not r["verified"] for r in runs.values())
        r0 = runs[seeds[0]]
        firsts = [r["first_s"] for r in runs.values()]
        first = "none" if r0["first_s"] is None else f"{r0['first_s']:.2f}"
        slowest = "none" if None in firsts else f"{max(firsts):.2f}"
        curve = [score(best_known, cost_at(r0["trace"], c * limit)) for c in CHECKPOINTS]
        final = {s: (r["cost"] if r["feasible"] else float("inf")) for s, r in runs.items()}
        worst_seed = max(final, key=lambda s: final[s])
        worst = f"{score(best_known, final[worst_seed])} (seed {worst_seed})"
        by_seed = " / ".join(f"{s}: {score(best_known, final[s])}" for s in seeds)
        wall = max(r["wall_s"] for r in runs.values()) / limit
        peak = f"{r0['peak'] / r0['limit']:.3f}" if r0["limit"] else str(r0["peak"])
        row = [name, f"{limit:g}", first, slowest, *curve, worst, by_seed, f"{wall:.3f}", peak, r0["status"]]
        row += [f"{max(r['rss_mib'] for r in runs.values()):.0f}"]
        row += [str(any(r["clock_cut"] for r in runs.values()))]
        row += [str(all(r["verified"] for r in runs.values()))]
        print("| " + " | ".join(row) + " |", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
