"""What `solve` returns, and the one rule for calling a cost optimal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OPTIMALITY_TOLERANCE", "Solution", "proven_optimal", "relative_gap"]

# "optimal" is claimed only when the proven lower bound meets the cost to this relative tolerance.
OPTIMALITY_TOLERANCE = 1e-9


def proven_optimal(cost: float, lower_bound: float | None) -> bool:
    """Whether `lower_bound` proves `cost` optimal (relative OPTIMALITY_TOLERANCE): the one rule every
    status autopar prints follows."""
    return lower_bound is not None and lower_bound >= cost - OPTIMALITY_TOLERANCE * abs(cost)


def relative_gap(cost: float, lower_bound: float | None) -> float | None:
    """(cost - bound) / |cost|, 0 for a zero cost proven optimal, None without a bound."""
    if lower_bound is None:
        return None
    if cost == 0:
        return 0.0 if lower_bound >= 0 else float("inf")
    return max(cost - lower_bound, 0.0) / abs(cost)


@dataclass(frozen=True)
class Solution:
    """The result of `solve`.

    Attributes:
      strategies: chosen strategy per node (int64 [N]).
      cost: total cost of `strategies`.
      peak_memory: peak usage of `strategies`; when status is "infeasible", the minimum achievable peak
        found.
      lower_bound: proven lower bound on the optimal cost, or None when none is known.
      status: "optimal" (proven), "feasible", "infeasible" (proven: no solution satisfies the limit with
        finite costs), or "unknown" (no feasible solution found within the time limit, none proven
        impossible: give it more time).
      feasible: status is "optimal" or "feasible".
      time_to_first_feasible: seconds until the first feasible solution (None if none).
      solve_time: total seconds.
      message: one line saying how the result was obtained.
      time_to_best: seconds until `strategies` was found.
      clock_cut: the wall clock stopped some phase before its work budget ran out (the result may then
        differ between runs with the same seed).
      trace: (seconds, cost) of each improvement of the best feasible solution, in order (the quality
        curve of the run).
    """

    strategies: np.ndarray
    cost: float
    peak_memory: int
    lower_bound: float | None
    status: str
    time_to_first_feasible: float | None
    solve_time: float
    message: str = ""
    time_to_best: float = 0.0
    clock_cut: bool = False
    trace: tuple = ()

    @property
    def feasible(self) -> bool:
        return self.status in ("optimal", "feasible")
