"""The same solver inside the passes: autopar's own intra-op strategy problems as contest files, solved with
the defaults the contest problems get (benchmarks/iopddl.py), and their gaps to the proven lower bound.

For each model (GPT 125M cut to 2 layers, MoE 380M cut to 2 layers, Wide-ResNet 250M: Alpa's suites in
benchmarks/models, lowered from abstract arguments and marked as `autopar.parallelize` marks them) and
each mesh (8, 2x4, 2x2x2: one, two and three axes of the same 8 devices), the problem autopar-intra-op
solves with default options (`autopar.passes.intra_op.strategy_problem`) is written as
`<out>/<model>_<mesh>.json.gz`, plus a memory-bound variant `<model>_<mesh>_mem<pct>.json.gz`: the same
problem built with memory-budget = m + FRACTION x (P - m), where P is the peak memory of the plan the
memory-free solve returned and m the peak of every node at its smallest usage (no plan peaks lower). A
plain fraction of P does not work on these models: the memory-free plans of GPT and MoE already peak within
~6 % of m, so 0.8 x P is below m (provably infeasible), while
the Wide-ResNet plans have room. Halfway (FRACTION 0.5) is below P, so the limit cuts off the memory-free
plan and the constraint binds (the solver must trade time for memory), and as far from m as from P, so the
problem is not trivially infeasible (the table marks a limit below m, which would be).

Every file is then read back and solved by `autopar.solver.solve(problem, time_limit=T)` (seed 0, no warm
start: the pass itself also warm-starts from its plan families, which this leaves out), and the solution
re-evaluated by `problem.evaluate` ("verified": same cost, peak and feasibility as reported). Costs are
seconds of the pass's cost model. Prints a markdown table; progress goes to stderr.

    python benchmarks/intra_op_problems.py [--models gpt,moe,wresnet] [--meshes 8,2x4,2x2x2]
        [--out build/intra_op_problems] [--time-limit 10] [--fraction 0.5] [--contest A,G,M,S]

`--contest` adds rows for the contest's own problems (--contest-dir or AUTOPAR_IOPDDL_DIR) solved with the
same time limit, so the gaps can be read side by side (`--models ""` for those alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # benchmarks.models; autopar as installed

import jax  # noqa: E402
import numpy as np  # noqa: E402
from benchmarks import contest_data  # noqa: E402
from benchmarks.models import gpt, moe, small, wide_resnet  # noqa: E402

from autopar import passes  # noqa: E402
from autopar.api.arguments import mark_roles  # noqa: E402
from autopar.ir import module_from_lowered  # noqa: E402
from autopar.passes.intra_op import PlanningGraph  # noqa: E402
from autopar.solver import StrategyProblem, relative_gap, solve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _gpt():
    cfg = gpt.GPTConfig("125M-2", 1024, 768, 2, 12, 51200, batch=8)
    return gpt.make_train_step(cfg), (gpt.abstract_params(cfg), *gpt.abstract_batch(cfg)), (1, 2)


def _moe():
    cfg = dataclasses.replace(moe.MOE_SUITE["380M"], layers=2)
    return moe.make_train_step(cfg), moe.abstract_args(cfg), (1,)


def _wresnet():
    cfg = wide_resnet.WRESNET_SUITE["250M"]
    return wide_resnet.make_train_step(cfg), wide_resnet.abstract_args(cfg), (1, 2)


# name -> () -> (step, abstract args, batch_argnums); "tiny" (benchmarks/models/small.py) is for smoke tests.
MODELS = {"gpt": _gpt, "moe": _moe, "wresnet": _wresnet, "tiny": small.mlp_sgd}


def lower(name: str):
    """@main of the model's training step as autopar-intra-op sees it: arguments marked batch / parameter as
    `autopar.parallelize` marks them, after autopar-inline."""
    step, args, batch_argnums = MODELS[name]()
    module = module_from_lowered(jax.jit(step, keep_unused=True).lower(*args))
    roles = [
        "batch" if i in batch_argnums and len(leaf.shape) >= 1 else "parameter"
        for i, arg in enumerate(args)
        for leaf in jax.tree.leaves(arg)
    ]
    mark_roles(module, roles)
    passes.run(module, "builtin.module(autopar-inline)")
    return module


def min_peak(problem: StrategyProblem) -> int:
    """Peak over time of every live node's smallest usage: no solution peaks lower."""
    a = problem.arrays()
    if problem.num_nodes == 0:
        return 0
    usage = np.minimum.reduceat(a.node_usage, a.strategy_offset[:-1])
    live = a.interval_end > a.interval_start  # [t, t) is never live
    usage, starts, ends = usage[live], a.interval_start[live], a.interval_end[live]
    if len(usage) == 0:
        return 0
    times = np.concatenate([starts, ends])
    deltas = np.concatenate([usage, -usage])
    order = np.lexsort((deltas, times))  # half-open intervals: at one moment, ends before starts
    return max(int(np.cumsum(deltas[order]).max()), 0)


def solve_file(path: Path, time_limit: float) -> dict:
    problem = StrategyProblem.from_json(path)
    sol = solve(problem, time_limit=time_limit)
    cost, peak, ok = problem.evaluate(sol.strategies) if len(sol.strategies) else (float("inf"), 0, False)
    verified = ok == sol.feasible and (not ok or (cost == sol.cost and peak == sol.peak_memory))
    return {
        "problem": path.name.removesuffix(".json.gz"),
        "nodes": problem.num_nodes,
        "edges": problem.num_edges,
        "limit": problem.usage_limit,
        "sol": sol,
        "verified": verified,
        "min_peak": min_peak(problem),
    }


HEADER = (
    "problem",
    "nodes",
    "edges",
    "usage_limit",
    "status",
    "cost",
    "lower bound",
    "gap %",
    "first-feasible s",
    "solve s",
    "verified",
)


def row(r: dict) -> str:
    sol = r["sol"]
    gap = relative_gap(sol.cost, sol.lower_bound) if sol.feasible else None
    cells = (
        r["problem"],
        str(r["nodes"]),
        str(r["edges"]),
        "none"
        if r["limit"] is None
        else f"{r['limit']}" + (" (< min peak)" if r["limit"] < r["min_peak"] else ""),
        sol.status,
        f"{sol.cost:.6g}" if sol.feasible else "-",
        "-" if sol.lower_bound is None else f"{sol.lower_bound:.6g}",
        "-" if gap is None else f"{100 * gap:.3f}",
        "-" if sol.time_to_first_feasible is None else f"{sol.time_to_first_feasible:.2f}",
        f"{sol.solve_time:.2f}",
        "yes" if r["verified"] else "NO",
    )
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="gpt,moe,wresnet", help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--meshes", default="8,2x4,2x2x2")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "intra_op_problems")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per solve")
    parser.add_argument(
        "--fraction",
        type=float,
        default=0.5,
        help="memory-bound variant's limit: this fraction of the way from the smallest conceivable peak to "
        "the memory-free plan's peak (0: no variant)",
    )
    parser.add_argument(
        "--contest",
        default="",
        help="also solve these IOPDDL contest problems with the same time limit, for comparison: comma list "
        "of letters (A,G,M,S: asplos-2025-iopddl-<letter>.json.gz in --contest-dir) or paths",
    )
    parser.add_argument(
        "--contest-dir",
        type=Path,
        default=contest_data.default_dir(),
        help=f"the contest's problem files (default: ${contest_data.ENV})",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER), flush=True)
    failures = 0
    for model in filter(None, args.models.split(",")):
        start = time.perf_counter()
        module = lower(model)  # kept alive: the graph's nodes point into it
        planning = PlanningGraph(module)
        print(
            f"{model}: lowered and read in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True
        )
        for mesh in args.meshes.split(","):
            variants = [(f"{model}_{mesh}", {})]
            while variants:
                name, options = variants.pop(0)
                path = args.out / f"{name}.json.gz"
                start = time.perf_counter()
                planning.strategy_problem(mesh, name=name, **options).to_json(path)
                written = time.perf_counter() - start
                r = solve_file(path, args.time_limit)
                sol = r["sol"]
                print(
                    f"{name}: written in {written:.1f} s ({path.stat().st_size >> 10} KiB), {sol.status} "
                    f"in {sol.solve_time:.1f} s: {sol.message}",
                    file=sys.stderr,
                    flush=True,
                )
                print(row(r), flush=True)
                failures += not (r["verified"] and sol.feasible)
                if not options and args.fraction > 0 and sol.feasible:
                    if sol.peak_memory <= r["min_peak"]:
                        print(f"{name}: the plan peaks at the minimum, no binding limit", file=sys.stderr)
                        continue
                    limit = r["min_peak"] + int(args.fraction * (sol.peak_memory - r["min_peak"]))
                    variants.append((f"{name}_mem{round(100 * args.fraction)}", {"memory_budget": limit}))
    for contest in filter(None, args.contest.split(",")):
        if "/" in contest:
            path = Path(contest)
        else:
            folder = contest_data.require_dir(args.contest_dir, "--contest-dir")
            path = contest_data.problem_file(folder, contest)
        r = solve_file(path, args.time_limit)
        print(f"{path.name}: {r['sol'].status}: {r['sol'].message}", file=sys.stderr, flush=True)
        print(row(r), flush=True)
        failures += not (r["verified"] and r["sol"].feasible)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
