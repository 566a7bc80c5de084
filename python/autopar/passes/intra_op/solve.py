"""Solving the strategy problem.

TEMPORARY: a private HiGHS ILP until `autopar.solver` lands on main; `solve` keeps the solver's interface
(`Solution` with strategies, cost, peak_memory, lower_bound, status, feasible) so the switch is one import.
"""

from __future__ import annotations

import dataclasses

import highspy
import numpy as np

from autopar.passes.intra_op.problem import Problem
from autopar.passes.intra_op.strategies import FORBIDDEN


@dataclasses.dataclass(frozen=True)
class Solution:
    strategies: list[int]
    cost: float
    peak_memory: int
    lower_bound: float
    status: str

    @property
    def feasible(self) -> bool:
        return self.status in ("optimal", "feasible")


def solve(problem: Problem, *, usage_limit: int | None, time_limit: float, solver: str) -> Solution:
    del solver
    return _solve_ilp(problem, usage_limit, time_limit)


def _solve_ilp(problem: Problem, usage_limit: int | None, time_limit: float) -> Solution:
    sizes = [len(c) for c in problem.node_costs]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    num_x = int(offsets[-1])
    cols_cost = [np.concatenate(problem.node_costs)] if sizes else [np.zeros(0)]
    upper = [np.where(cols_cost[0] >= FORBIDDEN, 0.0, 1.0)]
    cols_cost[0] = np.where(cols_cost[0] >= FORBIDDEN, 0.0, cols_cost[0])
    rows_i, rows_j, vals, lower, upper_rows = [], [], [], [], []
    row = 0
    for v, n in enumerate(sizes):  # one strategy per node
        rows_i.append(np.full(n, row))
        rows_j.append(np.arange(offsets[v], offsets[v] + n))
        vals.append(np.ones(n))
        lower.append(1.0)
        upper_rows.append(1.0)
        row += 1
    col = num_x
    for (u, v), cost in zip(problem.edges, problem.edge_costs, strict=True):
        su, sv = sizes[u], sizes[v]
        ids = col + np.arange(su * sv)
        cols_cost.append(np.where(cost >= FORBIDDEN, 0.0, cost))
        upper.append(np.where(cost >= FORBIDDEN, 0.0, 1.0))
        grid_i, grid_j = np.divmod(np.arange(su * sv), sv)
        # sum_j y[i, j] - x[u, i] = 0 and sum_i y[i, j] - x[v, j] = 0
        rows_i += [row + grid_i, row + np.arange(su), row + su + grid_j, row + su + np.arange(sv)]
        rows_j += [ids, offsets[u] + np.arange(su), ids, offsets[v] + np.arange(sv)]
        vals += [np.ones(su * sv), -np.ones(su), np.ones(su * sv), -np.ones(sv)]
        lower += [0.0] * (su + sv)
        upper_rows += [0.0] * (su + sv)
        row += su + sv
        col += su * sv
    if usage_limit:
        for t in np.unique(problem.intervals[:, 0]):
            live = np.nonzero((problem.intervals[:, 0] <= t) & (problem.intervals[:, 1] >= t))[0]
            for v in live:
                rows_i.append(np.full(sizes[v], row))
                rows_j.append(np.arange(offsets[v], offsets[v] + sizes[v]))
                vals.append(problem.node_usages[v].astype(np.float64))
            lower.append(-highspy.kHighsInf)
            upper_rows.append(float(usage_limit))
            row += 1
    lp = highspy.HighsLp()
    lp.num_col_ = col
    lp.num_row_ = row
    lp.col_cost_ = np.concatenate(cols_cost)
    lp.col_lower_ = np.zeros(col)
    lp.col_upper_ = np.concatenate(upper)
    lp.row_lower_ = np.asarray(lower)
    lp.row_upper_ = np.asarray(upper_rows)
    ri, rj, rv = np.concatenate(rows_i), np.concatenate(rows_j), np.concatenate(vals)
    order = np.lexsort((ri, rj))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.searchsorted(rj[order], np.arange(col + 1)).astype(np.int32)
    lp.a_matrix_.index_ = ri[order].astype(np.int32)
    lp.a_matrix_.value_ = rv[order]
    lp.integrality_ = [highspy.HighsVarType.kInteger] * num_x + [highspy.HighsVarType.kContinuous] * (col - num_x)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("threads", 1)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    if status == highspy.HighsModelStatus.kInfeasible or info.primal_solution_status == 0:
        return Solution([], float("inf"), 0, float("inf"), "infeasible")
    x = np.asarray(h.getSolution().col_value[:num_x])
    chosen = [int(np.argmax(x[offsets[v]: offsets[v + 1]])) for v in range(len(sizes))]
    optimal = status == highspy.HighsModelStatus.kOptimal
    return Solution(
        strategies=chosen,
        cost=problem.objective(chosen),
        peak_memory=problem.peak_memory(chosen),
        lower_bound=float(info.mip_dual_bound) if not optimal else problem.objective(chosen),
        status="optimal" if optimal else "feasible",
    )
