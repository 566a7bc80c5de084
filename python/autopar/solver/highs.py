"""HiGHS on a group ILP (the whole reduced problem of the exact path, or one region of the
large-neighbourhood search): warm start, lazy memory rows, the LP relaxation first, and a check of the
objective HiGHS reports.

Tuning constant: LAZY_MAX_RUNS, HiGHS runs per lazily built model before giving up (each run adds the rows
its solution violated); lazy rows are off by default (lns.LAZY_MEMORY says why).
"""

from __future__ import annotations

import time

import numpy as np

from autopar import _core, native_output

__all__ = ["objective_matches", "solve_ilp"]

# HiGHS runs per lazily built model before giving up (each run adds the rows its solution violated).
LAZY_MAX_RUNS = 8


def solve_ilp(
    model: _core.GroupIlp,
    start: np.ndarray | None,
    time_limit: float,
    seed: int,
    max_nodes: int | None,
    stats: dict | None = None,
    lp_first: bool = False,
) -> tuple[np.ndarray, float | None, bool, bool] | None:
    """Solves a group ILP with HiGHS, warm-started from the assignment `start`; returns (column values,
    lower bound, proven optimal, proven infeasible), or None when HiGHS found no solution and proved
    nothing.

    Memory rows a lazy build left in the model's pool are added only when a solution violates them, then
    HiGHS runs again (the start, feasible for every row, stays its incumbent): the answer is exactly the
    full model's, and most rows (segments far from the limit) never enter it. `stats` (when given)
    accumulates simplex iterations, branch-and-bound nodes, HiGHS runs and rows added, the deterministic
    measures of the work done. lp_first: solve the LP relaxation first (no presolve: a tenth of the MIP's
    setup on region models); when its strategy columns are integral it is the optimum (the pair columns then
    follow) and the MIP is skipped."""
    import highspy  # imported here: only the ILP phases need it

    if model.num_cols == 0:
        return np.zeros(0), model.objective_offset, True, False
    deadline = time.perf_counter() + time_limit  # for every HiGHS run below together
    arrays = model.arrays()
    h = _highs_model(model, arrays, time_limit, seed, max_nodes)
    start_values = None if start is None else model.start_vector(np.asarray(start, dtype=np.int32))
    stats = {} if stats is None else stats
    began = time.perf_counter()
    if lp_first and model.num_pool_rows == 0:
        relaxed = _integral_lp_solution(h, arrays.col_integer, stats)
        if relaxed is not None:
            stats["secs"] = time.perf_counter() - began
            return relaxed, float(h.getInfo().objective_function_value), True, False
        # The MIP gets what the relaxation left: each run given the whole limit overran it (C's LNS
        # ended 2-4 s past its deadline).
        h.setOptionValue("time_limit", max(deadline - time.perf_counter(), 0.05))
    while True:
        if start_values is not None:
            sol = highspy.HighsSolution()
            sol.col_value = list(start_values)
            sol.value_valid = True
            h.setSolution(sol)
        with native_output.captured():
            h.run()
        info = h.getInfo()
        stats["simplex"] = stats.get("simplex", 0) + max(int(info.simplex_iteration_count), 0)
        stats["nodes"] = stats.get("nodes", 0) + max(int(info.mip_node_count), 0)
        stats["runs"] = stats.get("runs", 0) + 1
        status = h.getModelStatus()
        stats["secs"] = time.perf_counter() - began
        if status == highspy.HighsModelStatus.kTimeLimit:
            stats["clock"] = True  # the safety net stopped HiGHS: not reproducible
        if status == highspy.HighsModelStatus.kInfeasible:
            return np.zeros(model.num_cols), None, False, True
        if info.primal_solution_status != 2:  # kSolutionStatusFeasible
            return None
        values = np.asarray(h.getSolution().col_value, dtype=np.float64)
        if model.num_pool_rows == 0 or start is None:
            break
        violated = model.pool_violations(model.decode(values, np.asarray(start, dtype=np.int32)))
        if len(violated) == 0:
            break
        if stats["runs"] >= LAZY_MAX_RUNS or time.perf_counter() >= deadline:
            stats["clock"] = stats.get("clock", False) or stats["runs"] < LAZY_MAX_RUNS
            # Give up on this model: the start is feasible for every row.
            return start_values, None, False, False
        rows = model.pool_rows(violated.astype(np.int32))
        n = len(violated)
        h.addRows(
            n,
            np.full(n, -np.inf),
            rows.upper,
            len(rows.index),
            rows.start,
            rows.index,
            rows.value,
        )
        stats["rows_added"] = stats.get("rows_added", 0) + n
        h.setOptionValue("time_limit", max(deadline - time.perf_counter(), 0.05))
    bound = info.mip_dual_bound if np.isfinite(info.mip_dual_bound) else None
    optimal = status == highspy.HighsModelStatus.kOptimal
    if not objective_matches(arrays.col_cost, model.objective_offset, values, info.objective_function_value):
        # HiGHS reported an objective its own solution does not have (1.16.0 returned the warm start as
        # "optimal" after presolve solved the model): keep the values, claim nothing about them.
        stats["mismatch"] = stats.get("mismatch", 0) + 1
        optimal = False
    return values, bound, optimal, False


def objective_matches(col_cost: np.ndarray, offset: float, values: np.ndarray, reported: float) -> bool:
    """Whether `values` have the objective HiGHS reported for them (relative 1e-6)."""
    actual = float(np.dot(col_cost, values)) + offset
    return abs(actual - reported) <= 1e-6 * max(1.0, abs(actual), abs(reported))


def _integral_lp_solution(h, col_integer: np.ndarray, stats: dict) -> np.ndarray | None:
    """Solves the LP relaxation of the MIP loaded in `h`; returns its column values when every integer
    column is integral (then they are an optimal MIP solution), else restores `h` for the MIP and returns
    None."""
    import highspy

    integer = np.flatnonzero(col_integer).astype(np.int32)
    h.changeColsIntegrality(len(integer), integer, np.zeros(len(integer), np.uint8))  # kContinuous
    h.setOptionValue("presolve", "off")
    with native_output.captured():
        h.run()
    info = h.getInfo()
    stats["lp_simplex"] = stats.get("lp_simplex", 0) + max(int(info.simplex_iteration_count), 0)
    if h.getModelStatus() == highspy.HighsModelStatus.kTimeLimit:
        # The safety net stopped the relaxation: the MIP that follows is not the run's own choice, so the
        # result and its counted work may differ between runs (reported like a cut MIP).
        stats["clock"] = True
    if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
        values = np.asarray(h.getSolution().col_value, dtype=np.float64)
        x = values[integer]
        if np.all(np.minimum(x, 1.0 - x) < 1e-7):
            stats["lp_integral"] = 1
            return np.round(values, 9)
    h.changeColsIntegrality(len(integer), integer, np.ones(len(integer), np.uint8))  # kInteger
    h.setOptionValue("presolve", "choose")
    h.clearSolver()
    return None


def _highs_model(
    model: _core.GroupIlp, a: _core.IlpArrays, time_limit: float, seed: int, max_nodes: int | None
):
    import highspy

    with native_output.captured():  # highspy 1.16 prints a banner here, before any option applies
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("random_seed", int(seed) % (2**31))
    h.setOptionValue("threads", 1)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 1e-6)
    # Feasibility jump, the primal heuristic HiGHS runs before its root LP, does not read the time limit: on a
    # 181k-column exact-path model it ran 3-4.5 s under a 1.5 s limit, a warm start given or not (highspy
    # 1.15.1; tests/solver/test_solver.py::test_the_exact_path_keeps_the_time_limit_on_a_wide_problem).
    # Every model here gets a feasible start whenever one is known, so a first solution is not its job.
    h.setOptionValue("mip_heuristic_run_feasibility_jump", False)
    if max_nodes is not None:
        h.setOptionValue("mip_max_nodes", int(max_nodes))
    lp = highspy.HighsLp()
    lp.num_col_ = model.num_cols
    lp.num_row_ = model.num_rows
    lp.col_cost_ = a.col_cost
    lp.col_lower_ = np.zeros(model.num_cols)
    lp.col_upper_ = a.col_upper
    lp.row_lower_ = a.row_lower
    lp.row_upper_ = a.row_upper
    lp.offset_ = model.objective_offset
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = model.num_cols
    lp.a_matrix_.num_row_ = model.num_rows
    lp.a_matrix_.start_ = a.row_start.astype(np.int32)
    lp.a_matrix_.index_ = a.row_index
    lp.a_matrix_.value_ = a.row_value
    lp.integrality_ = [
        highspy.HighsVarType.kInteger if k else highspy.HighsVarType.kContinuous for k in a.col_integer
    ]
    h.passModel(lp)
    return h
