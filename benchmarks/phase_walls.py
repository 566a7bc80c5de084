"""Each phase of a usage-limited solve: the wall it takes against the seconds its work is charged
(docs/solver.md, "An idle core is charged, and the priced search has a wall cap").

    python benchmarks/phase_walls.py [--problems A,C,D,N,S] [--seeds 0] [--work-only] [--bench-dir DIR]

Each problem is solved as `autopar-solve` does (its contest timeout, the seed; with --work-only the budget is
the timeout, the clock cap 8 times it and no phase's wall cap binds, as `benchmarks/iopddl.py --work-only`
does). One row per phase that ran: when it started, its wall seconds, the seconds of the limit its counted
work stands for (its share of its budget, at the rate that budget was given at: toulbar2's phases 1M units per
second, the priced search pricing.PRICE_WORK_PER_SECOND, the final one lns.LNS_WORK_PER_SECOND), and their
ratio. A ratio above 1 means the phase took more of the clock than its work was worth, and at the contest
timeout the phases after it lose that time. For the
two searches (the priced one and the final one) it also gives their rounds of HiGHS sub-ILPs and the share of
their two threads' time that sat idle (1 - the threads' summed HiGHS time / (2 x the rounds' longest)): 0.5
means one thread did all the work. The seconds are this machine's; run nothing else beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))

from benchmarks import contest_data  # noqa: E402
from benchmarks.iopddl import FILES, PROBLEMS, work_only_clock  # noqa: E402

from autopar.solver import StrategyProblem, cfn_pricing, lns, pricing, restricted, solve  # noqa: E402

DEFAULT_PROBLEMS = "A,C,D,N,S"
COLUMNS = (
    "problem",
    "seed",
    "score",
    "run wall / limit",
    "phase",
    "starts s",
    "wall s",
    "charged s",
    "wall / charged",
    "HiGHS rounds",
    "idle share",
)


class Recorder:
    """Wraps the phases' entry points and the search's sub-ILP solves for one run, and restores them."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float, float, float]] = []  # (phase, start, end, charged seconds)
        self.solves: list[tuple[str, int, float, float]] = []  # (phase, round, start, end)
        self.phase, self.round = "fast path", 0
        self.saved: list[tuple[object, str, object]] = []

    def wrap(self, module, name: str, label: str, charged) -> None:
        real = getattr(module, name)

        def timed(*args, **kwargs):
            self.phase = label
            began = time.perf_counter()
            result = real(*args, **kwargs)
            self.phases.append((label, began, time.perf_counter(), charged(args, result)))
            return result

        self.saved.append((module, name, real))
        setattr(module, name, timed)

    def __enter__(self) -> Recorder:
        work = cfn_pricing.CFN_WORK_PER_SECOND
        self.wrap(
            cfn_pricing,
            "price_memory_cfn",
            "toulbar2 priced",
            lambda a, r: (r.used + r.late_used) * a[3] / work,
        )
        rate = pricing.PRICE_WORK_PER_SECOND
        self.wrap(pricing, "price_memory", "priced search", lambda a, r: r.used * a[4] / rate)
        self.wrap(restricted, "price_memory_restricted", "restricted", lambda a, r: r.used * a[3] / work)
        # orchestrate calls lns.lns for the final search only (pricing holds its own reference).
        self.wrap(lns, "lns", "final search", lambda a, r: a[8].work / lns.LNS_WORK_PER_SECOND)
        regions, solve_region = lns.lns_regions, lns.solve_region

        def counted_regions(*args, **kwargs):
            self.round += 1
            return regions(*args, **kwargs)

        def timed_solve(job):
            phase, round_, began = self.phase, self.round, time.perf_counter()
            result = solve_region(job)
            self.solves.append((phase, round_, began, time.perf_counter()))
            return result

        self.saved += [(lns, "lns_regions", regions), (lns, "solve_region", solve_region)]
        lns.lns_regions, lns.solve_region = counted_regions, timed_solve
        return self

    def __exit__(self, *exc) -> None:
        for module, name, real in reversed(self.saved):
            setattr(module, name, real)

    def idle(self, phase: str) -> tuple[str, str]:
        """(rounds, idle share) of the phase's sub-ILP solves, or dashes when it solved none."""
        by_round: dict[int, list[float]] = {}
        for label, round_, began, ended in self.solves:
            if label == phase:
                by_round.setdefault(round_, []).append(ended - began)
        if not by_round:
            return "-", "-"
        longest = sum(max(secs) for secs in by_round.values())
        total = sum(sum(secs) for secs in by_round.values())
        threads = lns.LNS_THREADS
        return str(len(by_round)), f"{1 - total / (threads * longest):.2f}" if longest > 0 else "-"


def measure(name: str, path: Path, seed: int, work_only: bool) -> list[list[str]]:
    _, limit, best_known = PROBLEMS[name]
    problem = StrategyProblem.from_json(path)
    with Recorder() as rec:
        began = time.perf_counter()
        clock = work_only_clock(limit) if work_only else limit  # as benchmarks/iopddl.py --work-only
        sol = solve(problem, time_limit=clock, seed=seed, budget=limit, clock_start=began)
        wall = time.perf_counter() - began
    score = f"{best_known / sol.cost:.4f}" if sol.cost > 0 else "-"
    if not rec.phases:  # solved before any of these phases (the exact path, or the fast path alone)
        return [[name, str(seed), score, f"{wall / limit:.2f}"] + ["-"] * (len(COLUMNS) - 4)]
    rows = []
    for label, start, end, charged in rec.phases:
        rounds, idle = rec.idle(label)
        ratio = f"{(end - start) / charged:.2f}" if charged > 0 else "-"
        rows.append(
            [
                name,
                str(seed),
                score,
                f"{wall / limit:.2f}",
                label,
                f"{start - began:.1f}",
                f"{end - start:.1f}",
                f"{charged:.1f}",
                ratio,
                rounds,
                idle,
            ]
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    contest_data.add_bench_dir(parser)
    parser.add_argument("--problems", default=DEFAULT_PROBLEMS, help=f"comma-separated ({DEFAULT_PROBLEMS})")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument(
        "--work-only",
        action="store_true",
        help="budget = the timeout, as iopddl.py --work-only (the clock and wall caps lifted)",
    )
    args = parser.parse_args()
    folder = contest_data.require_dir(args.bench_dir, "--bench-dir")
    seeds = contest_data.seeds(args.seeds)
    chosen = contest_data.chosen_problems(args.problems, FILES, folder)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS), flush=True)
    for name, path in chosen:
        for seed in seeds:
            for row in measure(name, path, seed, args.work_only):
                print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
