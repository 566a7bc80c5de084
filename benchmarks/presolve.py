"""Presolve on the public IOPDDL problems: what it reduces, the table entries it reads, and its time.

    python benchmarks/presolve.py [--problems A,B,C,D,G,K,L,M,N,S] [--bench-dir DIR] [--repeats 3]

One row per problem: nodes and strategies before, then `_core.GroupModel(problem).stats()` (free groups,
their strategies, pair tables, components, follow merges, dominated strategies, table entries read by the
support and follow checks) and the median wall time of `repeats` presolves (docs/solver.md, "Presolve").
The entries read are deterministic; the seconds are this machine's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))

from benchmarks import contest_data  # noqa: E402
from benchmarks.iopddl import ALL, FILES  # noqa: E402

from autopar import _core  # noqa: E402
from autopar.solver import StrategyProblem  # noqa: E402

COLUMNS = (
    "problem",
    "nodes",
    "strategies",
    "free groups",
    "free strategies",
    "pairs",
    "components",
    "merged",
    "dominated",
    "entries read",
    "presolve s",
)


def row(name: str, path: Path, repeats: int) -> list[str]:
    problem = StrategyProblem.from_json(path)
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        model = _core.GroupModel(problem._core)
        seconds.append(time.perf_counter() - began)
    st = model.stats()
    strategies = sum(problem.num_strategies(i) for i in range(problem.num_nodes))
    counts = (problem.num_nodes, strategies, st.free_groups, st.free_strategies, st.pairs, st.components)
    counts += (st.merged, st.dominated, st.entries_scanned)
    return [name, *(f"{c:,}" for c in counts), f"{statistics.median(seconds):.2f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    contest_data.add_bench_dir(parser)
    parser.add_argument("--problems", default=ALL, help=f"comma-separated (default {ALL}; also: example)")
    parser.add_argument("--repeats", type=int, default=3, help="presolves timed per problem (the median)")
    args = parser.parse_args()
    folder = contest_data.require_dir(args.bench_dir, "--bench-dir")
    if args.repeats < 1:
        raise SystemExit(f"error: --repeats: must be at least 1, got {args.repeats}")
    chosen = contest_data.chosen_problems(args.problems, FILES, folder)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS), flush=True)
    for name, path in chosen:
        print("| " + " | ".join(row(name, path, args.repeats)) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
