"""`autopar-solve PROBLEM.json[.gz] [--time-limit S] [--budget W] [--seed N] [-v]`.

Solves a strategy problem in the IOPDDL contest format. Prints a summary (status, cost, peak usage, bound,
times) and, as the last line, the solution in the contest's format: `[s0, s1, ...]`.
The search stops on counted work (`--budget`, in seconds of a 2-core machine; default: the time limit), so
the same file, seed and budget give the same solution on any machine; the time limit is a wall-clock cap.
When the cap stops the search first, the summary says `clock cut: yes` and stderr says so.
Exit codes: 0 solved; 1 bad input (one line on stderr); 2 no feasible solution: proven infeasible, or none
found within the time limit (the reason on stderr, no solution line). Also run as `python -m autopar.solver`.
"""

from __future__ import annotations

import time

# The time limit counts loading too (the contest's rule): `python -m autopar.solver` reads the clock in
# __main__.py before this module loads, the `autopar-solve` entry point here (autopar.solver's __init__
# imports nothing heavy before it).
_PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from autopar.solver.orchestrate import solve  # noqa: E402
from autopar.solver.problem import StrategyProblem  # noqa: E402
from autopar.solver.solution import relative_gap  # noqa: E402


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # exit code 1 like every other bad input (2 means "no solution")
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1)


def main(argv: list[str] | None = None, process_start: float | None = None) -> int:
    parser = _ArgumentParser(
        prog="autopar-solve",
        description=__doc__.split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("problem", help="problem file (.json or .json.gz, contest format)")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=10.0,
        help="seconds from the process start, loading included (default 10)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds of counted work (as on a 2-core machine) the search may do; the same budget gives the "
        "same solution under any load (default: the time limit)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log each phase and improvement on stderr"
    )
    args = parser.parse_args(argv)
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger("autopar.solver")
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    try:
        problem = StrategyProblem.from_json(args.problem)
        solution = solve(
            problem,
            time_limit=args.time_limit,
            seed=args.seed,
            budget=args.budget,
            clock_start=_PROCESS_START if process_start is None else process_start,
        )
    except (OSError, ValueError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    if not solution.feasible:
        print(f"error: {args.problem}: {solution.message}", file=sys.stderr)
        return 2
    bound = "none" if solution.lower_bound is None else f"{solution.lower_bound:.17g}"
    gap = relative_gap(solution.cost, solution.lower_bound)
    gap_text = "none" if gap is None else f"{gap:.3%}"
    if solution.clock_cut:
        print(
            f"warning: the {args.time_limit:g} s time limit stopped the search before its work budget "
            "ran out; a rerun may give another solution (raise --time-limit or lower --budget)",
            file=sys.stderr,
        )
    return _write(
        f"status: {solution.status}  cost: {solution.cost:.17g}  lower bound: {bound}  gap: {gap_text}\n"
        f"peak usage: {solution.peak_memory}  limit: {problem.usage_limit}  "
        f"first feasible: {solution.time_to_first_feasible:.3f} s  total: {solution.solve_time:.3f} s  "
        f"clock cut: {'yes' if solution.clock_cut else 'no'}\n"
        "[" + ", ".join(str(int(s)) for s in solution.strategies) + "]\n"
    )


def _write(text: str) -> int:
    """Writes the answer to stdout in one piece: 0, or 1 when the reader has gone (`| head -1`), quietly,
    instead of a BrokenPipeError traceback at the next line or at exit."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush is quiet too
        return 1
    return 0


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        return f"cannot read {e.filename}: {e.strerror}"
    return " ".join(str(e).split())


if __name__ == "__main__":
    sys.exit(main())
