"""What one toulbar2 priced round costs before its search, against what it is charged (docs/solver.md, "What a
toulbar2 round costs").

    python benchmarks/cfn_rounds.py [--problems A,C,D,K,L,M,N,S] [--repeats 1] [--bench-dir DIR]

For each problem, the full network of the toulbar2 pricing phase (cfn_pricing.price_memory_cfn) is solved
as a round of that phase is, without a price and stopped at its first backtrack: the wall seconds of
pricing, peeling and posting the network and of toulbar2's preprocessing (the minimum over --repeats),
against the seconds its counted work stands for (1M units per second): the charge of
cfn_pricing.round_work (per entry of the peeled network and of its functional tables) plus its backtracks,
and the charge of before 2026-12-04 (1 unit per entry of the network before peeling). The last line gives
the range of wall / charged over the problems. The seconds are this machine's; run nothing else beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))

from benchmarks import contest_data  # noqa: E402
from benchmarks.iopddl import FILES  # noqa: E402

from autopar.solver import StrategyProblem, cfn_pricing  # noqa: E402
from autopar.solver.cfn import PricedCfn  # noqa: E402

DEFAULT_PROBLEMS = "A,C,D,K,L,M,N,S"
COLUMNS = (
    "problem",
    "entries M",
    "peeled entries M",
    "functional entries M",
    "wall s",
    "charged s",
    "wall / charged",
    "charged before s",
    "wall / charged before",
)
UNITS_PER_SECOND = cfn_pricing.CFN_WORK_PER_SECOND


def measure(path: Path, repeats: int = 1) -> dict[str, float]:
    """One unpriced round of the full network of the problem in `path`, stopped at its first backtrack:
    the sizes, the least wall seconds over `repeats`, and the seconds charged now and before."""
    cfn = PricedCfn(StrategyProblem.from_json(path)._core)
    kept, functional = cfn.peeled_entries()
    walls, backtracks = [], 0
    for _ in range(max(repeats, 1)):
        result = cfn.solve(None, None, backtrack_limit=0, time_limit=600.0)
        walls.append(result.seconds)
        backtracks = result.backtracks
    charged = cfn_pricing.round_work(cfn) + cfn_pricing.CFN_WORK_PER_BACKTRACK * backtracks
    before = cfn_pricing.CFN_WORK_PER_ENTRY * cfn.num_table_entries
    before += cfn_pricing.CFN_WORK_PER_BACKTRACK * backtracks
    return {
        "entries": cfn.num_table_entries,
        "kept": kept,
        "functional": functional,
        "wall": min(walls),
        "charged": charged / UNITS_PER_SECOND,
        "before": before / UNITS_PER_SECOND,
    }


def ratio(wall: float, charged: float) -> str:
    return f"{wall / charged:.2f}" if charged > 0 else "-"


def row(name: str, m: dict[str, float]) -> list[str]:
    return [
        name,
        f"{m['entries'] / 1e6:.2f}",
        f"{m['kept'] / 1e6:.2f}",
        f"{m['functional'] / 1e6:.2f}",
        f"{m['wall']:.2f}",
        f"{m['charged']:.2f}",
        ratio(m["wall"], m["charged"]),
        f"{m['before']:.2f}",
        ratio(m["wall"], m["before"]),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    contest_data.add_bench_dir(parser)
    parser.add_argument("--problems", default=DEFAULT_PROBLEMS, help=f"comma-separated ({DEFAULT_PROBLEMS})")
    parser.add_argument("--repeats", type=int, default=1, help="rounds per problem; the least wall counts")
    args = parser.parse_args()
    if args.repeats < 1:
        raise SystemExit(f"error: --repeats: expected at least 1, got {args.repeats}")
    folder = contest_data.require_dir(args.bench_dir, "--bench-dir")
    chosen = contest_data.chosen_problems(args.problems, FILES, folder)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS), flush=True)
    now, before = [], []
    for name, path in chosen:
        m = measure(path, args.repeats)
        print("| " + " | ".join(row(name, m)) + " |", flush=True)
        if m["charged"] > 0:
            now.append(m["wall"] / m["charged"])
            before.append(m["wall"] / m["before"])
    if now:
        print(
            f"wall / charged over {len(now)} problems: {min(now):.2f}-{max(now):.2f} "
            f"(before: {min(before):.2f}-{max(before):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
