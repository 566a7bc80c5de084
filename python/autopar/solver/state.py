"""The one piece of state the phases share: the best feasible solution so far, and the clock it is timed by.

Owner: `orchestrate.solve` makes one `Incumbent` per run and passes it (through `improve`) to every phase
that may find a feasible solution; a phase reads `best` (to start from it or bound its search) and calls
`keep` when it finds a cheaper one, nothing else. Everything else a phase learns (work used, bounds,
proofs, whether the clock cut it, prices to hand on) it returns as a value, and the phase order in
`orchestrate` decides what to do with it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

# Debug-level: each phase's start and each improvement, with the seconds since the clock started (the
# command line's -v prints it).
_log = logging.getLogger("autopar.solver")


@dataclass
class Incumbent:
    """The best feasible solution found after the fast path, and when.

    Attributes:
      start: the `time.perf_counter()` reading the run's times count from.
      best: strategy per node of the cheapest feasible solution the phases found, or None.
      best_time: seconds from `start` until `best` was found.
      trace: (seconds, cost) each time `best` improved, in order.
    """

    start: float
    best: np.ndarray | None = None
    best_time: float = 0.0
    trace: list[tuple[float, float]] = field(default_factory=list)

    def keep(self, solution: np.ndarray, cost: float) -> float:
        """Makes `solution` (feasible, costing `cost`) the best so far; returns `cost`."""
        self.best, self.best_time = solution, time.perf_counter() - self.start
        self.trace.append((self.best_time, float(cost)))
        _log.debug("%.2f s: cost %.17g", self.best_time, cost)
        return float(cost)

    def log(self, what: object) -> None:
        """Logs a phase's start or one of its rounds at debug level, with the seconds since `start`."""
        _log.debug("%.2f s: %s", time.perf_counter() - self.start, what)
