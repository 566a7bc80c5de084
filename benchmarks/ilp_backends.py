"""HiGHS (highspy) against CBC (through pulp) on the whole presolved group ILP of a public problem.

    python benchmarks/ilp_backends.py [--problem G] [--time-limit 60] [--bench-dir DIR]

Both get the same model (autopar._core.GroupModel(...).build), one thread, no warm start; prints the time to
solve, the objective and the status of each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))

from benchmarks import contest_data  # noqa: E402

from autopar import _core  # noqa: E402
from autopar.solver import StrategyProblem  # noqa: E402
from autopar.solver.highs import solve_ilp  # noqa: E402

FILES = {"G": "asplos-2025-iopddl-G.json.gz", "example": "example.json"}


def solve_cbc(model: _core.GroupIlp, time_limit: float) -> tuple[float, str]:
    import pulp

    a = model.arrays()
    prob = pulp.LpProblem("group_ilp", pulp.LpMinimize)
    cols = [
        pulp.LpVariable(
            f"c{j}",
            0,
            float(a.col_upper[j]),
            cat=pulp.LpBinary if a.col_integer[j] and a.col_upper[j] > 0 else pulp.LpContinuous,
        )
        for j in range(model.num_cols)
    ]
    prob += pulp.lpSum(float(c) * v for c, v in zip(a.col_cost, cols, strict=True) if c != 0)
    start, index, value = a.row_start, a.row_index, a.row_value
    for r in range(model.num_rows):
        expr = pulp.lpSum(float(value[k]) * cols[index[k]] for k in range(start[r], start[r + 1]))
        lo, hi = a.row_lower[r], a.row_upper[r]
        if lo == hi:
            prob += expr == float(lo)
        else:
            prob += expr <= float(hi)
    status = prob.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, threads=1))
    return float(pulp.value(prob.objective) or 0) + model.objective_offset, pulp.LpStatus[status]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="G", choices=sorted(FILES))
    parser.add_argument("--time-limit", type=float, default=60.0)
    contest_data.add_bench_dir(parser)
    args = parser.parse_args()
    folder = contest_data.require_dir(args.bench_dir, "--bench-dir")
    p = StrategyProblem.from_json(folder / FILES[args.problem])
    gm = _core.GroupModel(p._core)
    model = gm.build(np.zeros(gm.num_groups, np.int32), np.zeros(0, np.int32), 10**8)
    print(f"model: {model.num_cols} columns, {model.num_rows} rows, {model.num_nonzeros} nonzeros")
    t = time.perf_counter()
    values, bound, optimal, _ = solve_ilp(model, None, args.time_limit, 0, None)
    cost = p.evaluate(gm.expand(model.decode(values, np.zeros(gm.num_groups, np.int32))))[0]
    print(f"HiGHS: {time.perf_counter() - t:.1f} s, cost {cost:.0f}, bound {bound}, optimal {optimal}")
    t = time.perf_counter()
    objective, status = solve_cbc(model, args.time_limit)
    print(
        f"CBC (pulp, incl. model building): {time.perf_counter() - t:.1f} s, objective {objective:.0f}, "
        f"status {status}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
