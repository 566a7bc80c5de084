"""What a restricted round costs on the clock against what it is charged (docs/solver.md, "Restricted rounds:
their charge against their wall").

    python benchmarks/restricted_rounds.py [--problems A,C,D,K,L,M,N,S] [--seeds 0] [--bench-dir DIR]

Each problem is solved as `autopar-solve` does (its contest timeout, the seed) until its restricted phase
(restricted.py) has run; the final search is skipped. Every round of that phase is timed from the building
of its domains to the end of its repair, and its charge (posting, backtracks, repair) is converted to
seconds at the rate the phase's budget is given at (`cfn_pricing.CFN_WORK_PER_SECOND`, 1M units per
second). One row per problem and seed: the rounds, their table entries and backtracks, the wall per round,
the charged seconds per round, and the smallest and largest ratio of the two. A ratio below 1 means a
round took longer than the budget says (the phase's wall cap then bounds it). The seconds are this
machine's; run nothing else beside it.
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

from autopar.solver import StrategyProblem, restricted, solve  # noqa: E402
from autopar.solver.cfn_pricing import CFN_WORK_PER_SECOND  # noqa: E402

# The problems whose runs reach the restricted phase (B and G are solved exactly).
DEFAULT_PROBLEMS = "A,C,D,K,L,M,N,S"
COLUMNS = (
    "problem",
    "seed",
    "rounds",
    "table entries",
    "backtracks",
    "wall s",
    "charged s",
    "charged / wall",
)


class _PhaseDone(Exception):
    """Raised once the restricted phase has returned: the rest of the run is not measured."""


def _round_charge(record: dict) -> float:
    """Seconds of budget one round is charged: the units its record says it was charged, at the phase's
    rate."""
    return record["work"] / CFN_WORK_PER_SECOND


def measure(path: Path, limit: float, seed: int) -> list[tuple[float, dict, int]]:
    """(wall seconds, record, table entries) per restricted round of one run."""
    phase = restricted.price_memory_restricted
    repair = restricted.fast_path.repair
    rounds: list[tuple[float, dict, int]] = []
    starts: list[tuple[float, int]] = []  # per round: when its domains were built, and its table entries
    ends: list[float] = []  # per logged round: when its repair ended (earlier phases repair too: not kept)

    def timed_domains(cfn, domains_of):
        def built(*a, **k):
            domains = domains_of(*a, **k)
            starts.append((time.perf_counter(), cfn.table_entries(domains)))
            return domains

        return built

    def timed_repair(*a, **k):
        out = repair(*a, **k)
        ends.append(time.perf_counter())
        return out

    def timed_phase(core, cfn, *args, **kwargs):
        cfn.restricted_domains = timed_domains(cfn, cfn.restricted_domains)
        restricted.fast_path.repair = timed_repair
        try:
            result = phase(core, cfn, *args, **kwargs)
        finally:
            del cfn.restricted_domains
            restricted.fast_path.repair = repair
        # A round that ends the phase (nothing new, or its posting unaffordable) is neither repaired nor
        # logged, and comes last: the first len(result.rounds) starts belong to the logged rounds.
        for (began, entries), ended, record in zip(starts, ends, result.rounds, strict=False):
            rounds.append((ended - began, record, entries))
        raise _PhaseDone

    restricted.price_memory_restricted = timed_phase
    try:
        solve(StrategyProblem.from_json(path), time_limit=limit, seed=seed)
    except _PhaseDone:
        pass
    finally:
        restricted.price_memory_restricted = phase
    return rounds


def row(name: str, seed: int, rounds: list[tuple[float, dict, int]]) -> list[str]:
    if not rounds:
        return [name, str(seed), "0", "-", "-", "-", "-", "-"]
    walls = [w for w, _, _ in rounds]
    charged = [_round_charge(r) for _, r, _ in rounds]
    entries = [e for _, _, e in rounds]
    backtracks = [r["backtracks"] for _, r, _ in rounds]
    ratios = [c / w for c, w in zip(charged, walls, strict=True)]

    def span(values, fmt):
        low, high = min(values), max(values)
        return format(low, fmt) if format(low, fmt) == format(high, fmt) else f"{low:{fmt}}-{high:{fmt}}"

    return [
        name,
        str(seed),
        str(len(rounds)),
        span([e / 1e6 for e in entries], ".2f") + "M",
        span(backtracks, ","),
        span(walls, ".1f"),
        span(charged, ".1f"),
        span(ratios, ".2f"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    contest_data.add_bench_dir(parser)
    parser.add_argument("--problems", default=DEFAULT_PROBLEMS, help=f"comma-separated ({DEFAULT_PROBLEMS})")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    args = parser.parse_args()
    folder = contest_data.require_dir(args.bench_dir, "--bench-dir")
    seeds = contest_data.seeds(args.seeds)
    chosen = contest_data.chosen_problems(args.problems, FILES, folder)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS), flush=True)
    for name, path in chosen:
        for seed in seeds:
            rounds = measure(path, PROBLEMS[name][1], seed)
            print("| " + " | ".join(row(name, seed, rounds)) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
