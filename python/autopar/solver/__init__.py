"""The intra-op strategy problem and its solver.

A strategy problem (the IOPDDL contest's shape): pick one strategy per node so that node costs plus edge
(resharding) costs are minimal while the summed usage of the nodes live at every moment stays under a limit.

    p = StrategyProblem.from_json("problem.json.gz")
    sol = solve(p, time_limit=10.0, seed=0)
    sol.strategies, sol.cost, sol.status, sol.lower_bound

`solve` presolves into groups of nodes that move together (passes/intra_op/presolve.h), runs the C++ fast path
(greedy, memory repair, local search; passes/intra_op/heuristic.h), then either the exact path (the whole
reduced 0-1 ILP solved by HiGHS, warm-started; proves optimality or reports a bound) when it is small enough,
or large-neighbourhood search with HiGHS sub-ILPs, preceded by toulbar2 priced optima (the memory-free
optimum, then Lagrangian prices on usage) and, on usage-limited problems, a priced large-neighbourhood phase
and toulbar2 priced optima over restricted domains. docs/solver.md has the design and measurements.

Modules (each phase keeps its tuning constants, and how they were measured, at its top):
  problem      StrategyProblem: the problem held by the C++ core, read from / written to contest JSON
  solution     Solution, proven_optimal, relative_gap
  orchestrate  solve: the order of the phases and what each hands the next
  state        Incumbent: the best solution so far, the one state the phases share
  fast_path    the C++ greedy + repair + local search, and the repair of priced solutions
  exact        the whole presolved ILP with HiGHS
  highs        HiGHS on one group ILP (warm start, lazy rows, LP first)
  lns          large-neighbourhood search with HiGHS sub-ILPs
  memory_free  toulbar2 without the usage limit: the memory-free round, conditional rounds
  cfn_pricing  toulbar2 priced optima (Lagrangian prices on usage)
  pricing      memory pricing with the large-neighbourhood search; the price itself
  restricted   toulbar2 priced optima over restricted domains
  cfn          the problem as a toulbar2 cost function network
  cli          the `autopar-solve` command (also `python -m autopar.solver`)

The names below load their module on first use, so `import autopar.solver` costs nothing (and never imports
jax: nothing in this package does).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "INFINITE_COST",
    "OPTIMALITY_TOLERANCE",
    "Solution",
    "StrategyProblem",
    "proven_optimal",
    "relative_gap",
    "solve",
]

# name -> (module, attribute).
_LAZY = {
    "INFINITE_COST": ("problem", "INFINITE_COST"),
    "StrategyProblem": ("problem", "StrategyProblem"),
    "Solution": ("solution", "Solution"),
    "OPTIMALITY_TOLERANCE": ("solution", "OPTIMALITY_TOLERANCE"),
    "proven_optimal": ("solution", "proven_optimal"),
    "relative_gap": ("solution", "relative_gap"),
    "solve": ("orchestrate", "solve"),
}

if TYPE_CHECKING:
    from autopar.solver.orchestrate import solve
    from autopar.solver.problem import INFINITE_COST, StrategyProblem
    from autopar.solver.solution import OPTIMALITY_TOLERANCE, Solution, proven_optimal, relative_gap


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
