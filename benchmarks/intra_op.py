"""autopar-intra-op planning benchmark: problem size, build and solve time, objective and bound for Alpa's
GPT suite (training step lowered with abstract arguments) on 1x8 and 2x4 meshes.

For every model it also evaluates the grid of hand-written plan families (families.py: data parallel,
Megatron tensor parallel, data x tensor per axis, ZeRO-2, ZeRO-3) under the same cost model: autopar's
objective must never be worse than the best of them (the pass warm-starts from that best plan).

    python benchmarks/intra_op.py [--models 125M,350M] [--meshes 1x8,2x4] [--planning-budget 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # benchmarks.models; autopar as installed

from benchmarks.models import gpt  # noqa: E402

from autopar import ir as aio  # noqa: E402
from autopar import passes  # noqa: E402
from autopar.passes.intra_op import _populate_rules  # noqa: E402
from autopar.passes.intra_op import config as config_lib  # noqa: E402
from autopar.passes.intra_op import families as families_lib  # noqa: E402
from autopar.passes.intra_op import graph as graph_lib  # noqa: E402
from autopar.passes.intra_op import problem as problem_lib  # noqa: E402
from autopar.passes.intra_op import solve as solve_lib  # noqa: E402


def lower_gpt(name: str, batch: int):
    cfg = dataclasses.replace(gpt.GPT_SUITE[name], batch=batch)
    module = aio.lower(gpt.make_train_step(cfg), gpt.abstract_params(cfg), *gpt.abstract_batch(cfg))
    passes.run(module, "builtin.module(autopar-inline)")
    main = next(op for op in module.body.operations if op.operation.name == "func.func").operation
    # Mark arguments as parallelize() does: params first, then (tokens, targets) as batch.
    num_params = len(main.regions[0].blocks[0].arguments) - 2
    _mark(module, main, num_params)
    _populate_rules(module.operation)
    return cfg, module, main


def _mark(module, main, num_params: int) -> None:
    from jaxlib.mlir import ir

    with module.context:
        n = len(main.regions[0].blocks[0].arguments)
        attrs = []
        for i in range(n):
            key = "autopar.parameter" if i < num_params else "autopar.batch"
            attrs.append(ir.DictAttr.get({key: ir.UnitAttr.get()}))
        main.attributes["arg_attrs"] = ir.ArrayAttr.get(attrs)


def plan(main, options: dict, budget: float):
    start = time.perf_counter()
    g = graph_lib.read_function(main)
    config = config_lib.from_options({**options, "planning_budget": budget})
    prob = problem_lib.build(g, config)
    built = time.perf_counter()
    sol = solve_lib.solve(
        prob,
        usage_limit=None,
        budget=budget,
        time_limit=config.time_limit,
        solver="auto",
        graph=g,
        config=config,
    )
    done = time.perf_counter()
    return g, prob, config, sol, built - start, done - built


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="125M,350M,760M,1.3B,2.6B")
    parser.add_argument("--meshes", default="1x8,2x4")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--planning-budget", type=float, default=config_lib.DEFAULT_PLANNING_BUDGET, help="counted seconds"
    )
    args = parser.parse_args()
    print(
        "| model | mesh | ops | strategies | edges | build s | solve s | total s | objective s | bound s "
        "| status | best family s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        t0 = time.perf_counter()
        _, _, main_op = lower_gpt(name, args.batch)
        lower_s = time.perf_counter() - t0
        for mesh in args.meshes.split(","):
            g, prob, config, sol, build_s, solve_s = plan(main_op, {"mesh": mesh}, args.planning_budget)
            family, family_name = _best_family(g, prob, config)
            fam = f"{family:.4g} ({family_name})"
            if sol.cost > family * (1 + 1e-9):
                fam += " autopar WORSE"
            print(
                f"| {name} | {mesh} | {len(g.nodes) - g.num_args} | {sum(len(c) for c in prob.node_costs)} "
                f"| {len(prob.edges)} | {build_s:.2f} | {solve_s:.2f} | {build_s + solve_s:.2f} "
                f"| {sol.cost:.4g} | {sol.lower_bound:.4g} | {sol.status} | {fam} |",
                flush=True,
            )
        print(f"<!-- {name}: lowering took {lower_s:.2f} s -->", flush=True)


def _best_family(g, prob, config) -> tuple[float, str]:
    """Best objective over the grid of hand-written families, each evaluated on the full problem."""
    core = solve_lib.to_solver_problem(prob, None)
    best = families_lib.best(families_lib.plans(g, prob, config, core, None))
    return (best.cost, best.name) if best is not None else (float("inf"), "none feasible")


if __name__ == "__main__":
    main()
