"""The memory-free (priced) strategy problem as a cost function network, solved by toulbar2.

Without its usage limit a strategy problem is a weighted CSP: one variable per node (its strategies), a unary
cost function per node and a binary one per edge. toulbar2 (pytoulbar2) solves exactly this: its
preprocessing (variable elimination, dead-end elimination, soft arc consistency) shrinks the IOPDDL problems
to a few thousand variables, and its hybrid best-first search then finds and often proves the optimum in
seconds. Measured on M without its limit (32,894 nodes, 47,067 edges): toulbar2 reaches 0.9187 x best known
and proves it optimal in 54 s; the large-neighbourhood search with HiGHS sub-ILPs stops at 0.986 in 60 s.
That is why the memory-pricing phase (cfn_pricing.py, `price_memory_cfn`) asks toulbar2 for priced optima.
Where the full priced network does not close (S), `solve(..., domains=restricted_domains(...))` finds the
priced optimum over a few strategies per node (restricted.py, `price_memory_restricted`); without a usage
limit, memory_free.py's rounds use the unpriced network.

    cfn = PricedCfn(problem._core)
    result = cfn.solve(node_price, upper_bound=value_of_incumbent, backtrack_limit=20_000)

Costs are rounded to integers (toulbar2's costs are integers). The IOPDDL costs are integers in the millions
and above and are taken as they are; any other problem (the intra-op pass's costs are seconds) is scaled so
that its cost tables span about 1e14 units first (`scale`). Every value in and out of this class is in the
problem's own units, and every solution is re-evaluated exactly by the core afterwards.

The constants below (toulbar2's cost range, the scaling spans, TRW-S's accuracy, posting time per entry)
were measured on the public problems A and L and on the intra-op pass's 2x4 networks, on the 2-core
development machine; each comment says how.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
import time
from dataclasses import dataclass

import numpy as np

from autopar import _core, native_output
from autopar.solver.cfn_peel import Peeled, peel

__all__ = ["CfnResult", "PricedCfn"]

_FORBIDDEN = 1e17  # costs at or above this are forbidden (the contest's 10^18)
# toulbar2 counts costs in 64-bit integers below its MAX_COST (5.1e17); measured, posting tables whose
# costs add up to 1e16 already raised Contradiction. Networks beyond this are not built.
_MAX_TOTAL_COST = 2e15
# The span non-integral costs are scaled to: a twentieth of the range toulbar2 counts, so that node prices
# (memory pricing) still fit on top, and rounding each entry to an integer changes a table by at most 5e-15
# of the whole span.
_SCALED_SPAN = 1e14
# A network that is never priced (a problem without a usage limit) is scaled to half the range: its
# rounding is 10x finer, which is what lets toulbar2's proofs meet the 1e-9 that "optimal" demands (the
# rounding of the intra-op pass's 2x4 GPT networks was 8e-9 of their optimum at 1e14, 8e-10 at 1e15).
_UNPRICED_SPAN = 1e15
# TRW-S (tree-reweighted message passing, run by toulbar2 before its search when trwsAccuracy >= 0; off by
# default) stops when an iteration improves its bound by less than this fraction. It tightens the dual bound
# of the intra-op pass's 2-axis networks where soft arc consistency stalls: measured on the 2x4 problems of
# benchmarks/mesh_axes.py, HF BERT's bound rose from 0.0015188 to the proven optimum 0.0015205 in 60
# backtracks and T5's from 0.001474 to its optimum 0.0016005 in 401, where 100,000 backtracks without it
# closed neither. toulbar2's VAC (Option.vac) would do the same job but segfaults on these networks.
_TRWS_ACCURACY = 1e-4
# Wall seconds per table entry (of the network before peeling) of peeling and posting a network to toulbar2.
# Measured on the ten public IOPDDL problems' full networks (2026-12-04, on this 2-core machine): 0.15 (L) to
# 0.30 (N) microseconds; counted high. A solve whose network would not be posted before its time limit is
# skipped (reported as cut by the clock): posting cannot be interrupted. (Until 2026-12-04 this was 1e-6,
# from a measurement of A that included toulbar2's preprocessing: it skipped solves that had time to run.)
_POST_SECONDS_PER_ENTRY = 0.4e-6
# Variables of at most this many neighbours are peeled before posting (cfn_peel): 1 folds leaves and
# isolated variables, 2 also chains (measured on D, K and S, seeds 0-2: K 2-4 % worse on every seed;
# docs/solver.md, "Peeling the tree parts before toulbar2"); 0 only isolated variables.
PEEL_DEGREE = 1


@dataclass(frozen=True)
class CfnResult:
    """One toulbar2 solve of the priced problem.

    Attributes:
      solution: strategy per node, or None when toulbar2 found nothing below the upper bound.
      value: the priced cost of `solution` as toulbar2 counts it (rounded costs), or None.
      dual_bound: toulbar2's proven lower bound on the priced optimum (rounded costs).
      optimal: toulbar2 proved `solution` optimal for the rounded priced costs.
      backtracks: backtracks toulbar2 made (its deterministic measure of search work).
      clock_cut: the wall-clock safety net stopped the search before its backtrack limit.
      seconds: wall seconds of the solve.
      nodes: search nodes toulbar2 opened (each backtrack follows a dive of several).
    """

    solution: np.ndarray | None
    value: float | None
    dual_bound: float
    optimal: bool
    backtracks: int
    clock_cut: bool
    seconds: float
    nodes: int = 0


class PricedCfn:
    """Holds a problem's costs in the shape toulbar2 takes (built once, priced per solve)."""

    def __init__(self, core: _core.StrategyProblem, priced: bool = True):
        """`priced=False`: every solve will have node_price None, so costs may use finer units."""
        a = core.arrays()
        self.num_nodes = core.num_nodes
        self._offset = a.strategy_offset
        self._usage = a.node_usage.astype(np.float64)
        self._node_cost = a.node_cost.astype(np.float64)
        # The problem's validation rejects self-edges, so every edge is a binary cost function.
        self._edge_u, self._edge_v = a.edge_u, a.edge_v
        self._edge_offset = a.edge_offset
        span = _SCALED_SPAN if priced else _UNPRICED_SPAN
        self.scale = _integer_scale(self._node_cost, a.strategy_offset, a.edge_cost, a.edge_offset, span)
        self._edge_cost_exact = np.where(a.edge_cost >= _FORBIDDEN, np.inf, a.edge_cost)
        edge_cost = a.edge_cost * self.scale
        self._edge_cost = np.where(a.edge_cost >= _FORBIDDEN, np.inf, np.round(edge_cost))
        self.num_table_entries = int(len(a.edge_cost) + len(self._node_cost))
        self._edge_range = _segment_spread(self._edge_cost, self._edge_offset)
        self._tables: list[np.ndarray] | None = None
        self._peeled_sizes: tuple[int, int] | None = None

    @property
    def unit(self) -> float:
        """One integer step of the costs toulbar2 sees, in the problem's units."""
        return 1.0 / self.scale

    @property
    def rounding(self) -> float:
        """A bound on how far the rounded cost of any solution is from its exact cost (problem's units)."""
        return (1.0 + 0.5 * (self.num_nodes + len(self._edge_u))) * self.unit

    def rounding_for(self, node_price: np.ndarray | None) -> float:
        """`rounding` for a solve with `node_price`: none for unpriced integral costs, which are exact."""
        return 0.0 if node_price is None and self.scale == 1.0 else self.rounding

    def priced_costs(self, node_price: np.ndarray | None) -> np.ndarray:
        """Node costs plus price x usage per strategy (forbidden strategies stay forbidden), scaled and
        rounded as toulbar2 sees them."""
        cost = self._node_cost
        if node_price is not None:
            per_strategy = np.repeat(np.asarray(node_price, np.float64), np.diff(self._offset))
            cost = cost + per_strategy * self._usage
        return np.where(self._node_cost >= _FORBIDDEN, np.inf, np.round(cost * self.scale))

    def value(self, solution: np.ndarray, node_price: np.ndarray | None) -> float:
        """The priced cost of `solution` with the rounded costs toulbar2 sees (problem's units)."""
        return self._scaled_value(solution, node_price) * self.unit

    def _scaled_value(self, solution: np.ndarray, node_price: np.ndarray | None) -> float:
        x = np.asarray(solution, dtype=np.int64)
        node = self.priced_costs(node_price)[self._offset[:-1] + x].sum()
        width = self._offset[self._edge_v + 1] - self._offset[self._edge_v]
        edge = self._edge_cost[self._edge_offset[:-1] + x[self._edge_u] * width + x[self._edge_v]].sum()
        return float(node + edge)

    def restricted_domains(
        self, node_price: np.ndarray | None, solutions: list[np.ndarray], cheapest: int
    ) -> list[np.ndarray]:
        """Per node, the strategies any of `solutions` uses plus its `cheapest` strategies by priced node
        cost (ties to the lower index), sorted: the domains of a restricted solve."""
        costs = self.priced_costs(node_price)
        chosen = np.stack([np.asarray(x, dtype=np.int64) for x in solutions], axis=1)
        offset = self._offset
        domains = []
        for i in range(self.num_nodes):
            c = costs[offset[i] : offset[i + 1]]
            low = np.argsort(c, kind="stable")[:cheapest] if cheapest > 0 else np.zeros(0, np.int64)
            domains.append(np.unique(np.concatenate([chosen[i], low])))
        return domains

    def conditional_domains(
        self, solution: np.ndarray, solutions: list[np.ndarray], cheapest: int
    ) -> list[np.ndarray]:
        """Per node, the strategies any of `solutions` (and `solution`) uses plus its `cheapest` strategies by
        conditional cost: its node cost plus the edge costs to its neighbours' strategies in `solution`
        (ties to the lower index), sorted. Unlike node costs alone, these see the communication a strategy
        causes where it stands, so a restricted solve over them is a strong neighbourhood of `solution`."""
        x = np.asarray(solution, dtype=np.int64)
        offset, edge_offset = self._offset, self._edge_offset
        u, v = self._edge_u, self._edge_v
        width_u, width_v = offset[u + 1] - offset[u], offset[v + 1] - offset[v]
        conditional = self._node_cost.astype(np.float64, copy=True)
        # Row x[u] of each edge table adds to v's strategies, column x[v] to u's.
        rows_start = edge_offset[:-1] + x[u] * width_v
        self._add_segments(conditional, offset[v], rows_start, width_v, 1)
        self._add_segments(conditional, offset[u], edge_offset[:-1] + x[v], width_u, width_v)
        conditional = np.where(self._node_cost >= _FORBIDDEN, np.inf, conditional)
        chosen = np.stack([x] + [np.asarray(y, dtype=np.int64) for y in solutions], axis=1)
        domains = []
        for i in range(self.num_nodes):
            c = conditional[offset[i] : offset[i + 1]]
            low = np.argsort(c, kind="stable")[:cheapest]
            domains.append(np.unique(np.concatenate([chosen[i], low])))
        return domains

    def _add_segments(
        self, target: np.ndarray, target_start: np.ndarray, source_start: np.ndarray, length: np.ndarray, step
    ) -> None:
        """target[target_start[e] + j] += edge_cost[source_start[e] + j * step[e]] for j < length[e]."""
        total = int(length.sum())
        if total == 0:
            return
        edge = np.repeat(np.arange(len(length)), length)
        j = np.arange(total) - np.repeat(np.cumsum(length) - length, length)
        step = np.broadcast_to(np.asarray(step, dtype=np.int64), length.shape)
        values = self._edge_cost_exact[source_start[edge] + j * step[edge]]
        np.add.at(target, target_start[edge] + j, values)

    def peeled_entries(self) -> tuple[int, int]:
        """Of the full network after peeling (what toulbar2 is given): its table entries (unary and pair), and
        the entries of its functional pair tables, those where every row or every column holds at most one
        finite entry (toulbar2 eliminates such variables in its preprocessing). Structural: the same for
        every price, so counted once."""
        if self._peeled_sizes is None:
            peeled = self._peeled(self.priced_costs(None), None)
            kept = sum(len(u) for u in peeled.unary) + sum(t.size for t in peeled.tables)
            functional = sum(t.size for t in peeled.tables if _functional(t))
            self._peeled_sizes = (int(kept), int(functional))
        return self._peeled_sizes

    def table_entries(self, domains: list[np.ndarray] | None) -> int:
        """Cost table entries of the network over `domains` (None: every strategy)."""
        if domains is None:
            return self.num_table_entries
        size = np.array([len(d) for d in domains], dtype=np.int64)
        return int(size.sum() + (size[self._edge_u] * size[self._edge_v]).sum())

    def solve(
        self,
        node_price: np.ndarray | None,
        upper_bound: float | None,
        backtrack_limit: int,
        time_limit: float,
        seed: int = 0,
        domains: list[np.ndarray] | None = None,
        trws_iterations: int = 0,
    ) -> CfnResult:
        """Minimises the priced cost; only solutions strictly below `upper_bound` count (give the priced
        value of a known finite-cost solution plus `unit`: it also keeps forbidden strategies out).
        `domains` (sorted strategy indices per node, see restricted_domains) restricts every node to its
        listed strategies: the optimum over all combinations of them, which toulbar2 closes where the full
        network does not. `trws_iterations` > 0 runs toulbar2's TRW-S preprocessing (at most that many
        iterations) before the search: see _TRWS_ACCURACY."""
        import pytoulbar2  # imported here: only this phase needs it

        began = time.perf_counter()
        costs = self.priced_costs(node_price)
        if _segment_spread(costs, self._offset) + self._edge_range > _MAX_TOTAL_COST:
            return CfnResult(None, None, -np.inf, False, 0, False, 0.0)  # toulbar2 cannot count that high
        if domains is not None and len(domains) != self.num_nodes:
            raise ValueError(f"domains: expected one per node ({self.num_nodes}), got {len(domains)}")
        if _POST_SECONDS_PER_ENTRY * self.table_entries(domains) >= time_limit:
            return CfnResult(None, None, -np.inf, False, 0, True, 0.0)  # no time to post it
        # Reseeds toulbar2's generator: it otherwise carries over between solves (not reproducible).
        pytoulbar2.pytb2.init()
        if upper_bound is None or not np.isfinite(upper_bound):
            # toulbar2 needs a finite top for its forbidden (inf) entries: without one (measured on L) it
            # returned a "solution" with unassigned variables (strategy 2**31 - 1) and a dual bound of 8.7e18.
            # Any finite-cost solution is below the sum of every table's largest finite entry.
            upper_bound = (self._finite_total(costs) + 1.0) * self.unit
        upper_bound = float(np.round(upper_bound * self.scale))
        peeled = self._peeled(costs, domains)
        reduced_bound = upper_bound - peeled.constant
        if not reduced_bound > 0:  # the tree parts alone cost the bound: nothing below it
            seconds = time.perf_counter() - began
            return CfnResult(None, None, upper_bound * self.unit, False, 0, False, seconds)
        if len(peeled.kept) == 0:  # the network was a forest: peeling solved it
            solution = self._solution(peeled, [], domains)
            value = peeled.constant * self.unit
            return CfnResult(solution, value, value, True, 0, False, time.perf_counter() - began)
        cfn = pytoulbar2.CFN(ubinit=reduced_bound, verbose=-1, seed=int(seed) % (2**31))
        cfn.Option.backtrackLimit = int(backtrack_limit)
        if trws_iterations > 0:
            cfn.Option.trwsAccuracy = _TRWS_ACCURACY
            cfn.Option.trwsNIter = int(trws_iterations)
        with native_output.captured():
            try:
                _post(cfn, peeled)
                seconds_left = time_limit - (time.perf_counter() - began)
                if seconds_left <= 0:
                    return CfnResult(None, None, -np.inf, False, 0, True, time.perf_counter() - began)
                with _wall_clock_alarm(cfn, seconds_left):
                    result = cfn.Solve(timeLimit=max(1, int(np.ceil(seconds_left))))
            except cfn.Contradiction:  # nothing below the upper bound, found while posting or solving
                result = None
            finally:
                cfn.CFN.timerStop()  # else its alarm fires later, in whatever runs next
        backtracks = int(cfn.GetNbBacktracks())
        nodes = int(cfn.GetNbNodes())
        seconds = time.perf_counter() - began
        clock_cut = backtracks < backtrack_limit and seconds >= time_limit
        # A search no limit stopped is complete: it proved its last solution optimal (or that nothing is
        # below the bound). toulbar2's dual bound is then the last one it reported while searching, not
        # raised at the end: T5's 2x4 network ended "Optimum: ..." after 83 backtracks with it 0.08 % below.
        complete = not (pytoulbar2.pytb2.option.limited or clock_cut or backtracks >= backtrack_limit)
        dual = cfn.GetDDualBound() + peeled.constant
        if result is None:
            if complete:  # every solution costs at least the bound toulbar2 was given
                dual = max(dual, upper_bound)
            dual_bound = float(dual) * self.unit
            return CfnResult(None, None, dual_bound, False, backtracks, clock_cut, seconds, nodes)
        solution = self._solution(peeled, result[0], domains)
        value = float(result[1]) + peeled.constant
        if complete:
            dual = max(dual, value)
        dual_bound = float(dual) * self.unit
        optimal = dual >= value - 0.5
        return CfnResult(
            solution, value * self.unit, dual_bound, optimal, backtracks, clock_cut, seconds, nodes
        )

    def _peeled(self, costs: np.ndarray, domains: list[np.ndarray] | None) -> Peeled:
        """The network over `domains` (None: every strategy) with its tree parts peeled (cfn_peel)."""
        offset = self._offset
        if domains is None:
            unary = [costs[offset[i] : offset[i + 1]] for i in range(self.num_nodes)]
            tables = self._full_tables()
        else:
            unary = [costs[offset[i] + domains[i]] for i in range(self.num_nodes)]
            pairs = zip(self._edge_u.tolist(), self._edge_v.tolist(), self._full_tables(), strict=True)
            tables = [table[np.ix_(domains[u], domains[v])] for u, v, table in pairs]
        return peel(unary, self._edge_u, self._edge_v, tables, PEEL_DEGREE)

    def _full_tables(self) -> list[np.ndarray]:
        """Each edge's cost table over every strategy (views, built once: every solve peels them)."""
        if self._tables is None:
            offset, edge_offset = self._offset, self._edge_offset
            width = (offset[self._edge_v + 1] - offset[self._edge_v]).tolist()
            segments = zip(edge_offset[:-1].tolist(), edge_offset[1:].tolist(), width, strict=True)
            self._tables = [self._edge_cost[a:b].reshape(-1, w) for a, b, w in segments]
        return self._tables

    @staticmethod
    def _solution(peeled: Peeled, kept_values, domains: list[np.ndarray] | None) -> np.ndarray:
        """Strategy per node from toulbar2's values of the kept variables."""
        values = peeled.expand(np.asarray(kept_values, dtype=np.int64))
        if domains is None:
            return values
        return np.array([d[k] for d, k in zip(domains, values.tolist(), strict=True)], np.int64)

    def _finite_total(self, costs: np.ndarray) -> float:
        """Sum over the node tables `costs` (scaled) and the edge tables of their largest finite entry."""
        node = np.where(np.isfinite(costs), costs, -np.inf)
        edge = np.where(np.isfinite(self._edge_cost), self._edge_cost, -np.inf)
        top = np.maximum.reduceat(node, self._offset[:-1]).clip(min=0).sum()
        top += np.maximum.reduceat(edge, self._edge_offset[:-1]).clip(min=0).sum() if len(edge) else 0.0
        return float(top)


def _functional(table: np.ndarray) -> bool:
    """Whether a pair table (both domains above one value) fixes one variable's value given the other's:
    every row, or every column, holds at most one finite entry."""
    if min(table.shape) < 2:
        return False
    finite = np.isfinite(table)
    return bool((finite.sum(axis=1) <= 1).all() or (finite.sum(axis=0) <= 1).all())


def _post(cfn, peeled: Peeled) -> None:
    """Posts the peeled network to toulbar2 (variable k is peeled.kept[k])."""
    for k, costs in enumerate(peeled.unary):
        cfn.AddVariable(f"x{k}", range(len(costs)))
    for k, costs in enumerate(peeled.unary):
        cfn.AddFunction([k], costs.tolist())
    for a, b, table in zip(peeled.edges_u.tolist(), peeled.edges_v.tolist(), peeled.tables, strict=True):
        cfn.AddFunction([a, b], table.ravel().tolist())


def _integer_scale(
    node_cost: np.ndarray,
    node_offset: np.ndarray,
    edge_cost: np.ndarray,
    edge_offset: np.ndarray,
    target: float,
) -> float:
    """1 when every finite cost is an integer (the contest's problems), else the factor that makes the cost
    tables span `target` units."""
    finite = np.concatenate([node_cost[node_cost < _FORBIDDEN], edge_cost[edge_cost < _FORBIDDEN]])
    if np.all(finite == np.round(finite)):
        return 1.0
    span = _segment_spread(np.where(node_cost < _FORBIDDEN, node_cost, np.inf), node_offset)
    span += _segment_spread(np.where(edge_cost < _FORBIDDEN, edge_cost, np.inf), edge_offset)
    return target / span if span > 0 else 1.0


def _segment_spread(values: np.ndarray, offsets: np.ndarray) -> float:
    """Sum over the tables values[offsets[k]:offsets[k + 1]] (none empty) of their largest finite entry
    minus min(their smallest, 0): a bound on the total |cost| toulbar2 would add up."""
    if len(values) == 0:
        return 0.0
    finite = np.isfinite(values)
    high = np.maximum.reduceat(np.where(finite, values, -np.inf), offsets[:-1])
    low = np.minimum.reduceat(np.where(finite, values, np.inf), offsets[:-1])
    return float(np.where(np.isfinite(high), high - np.minimum(low, 0.0), 0.0).sum())


class _SigAction(ctypes.Structure):
    """glibc's `struct sigaction` (the same on x86-64 and aarch64 Linux)."""

    _fields_ = [
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ulong * 16),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    ]


@contextlib.contextmanager
def _wall_clock_alarm(cfn, seconds: float):
    """Stops toulbar2's search after `seconds` of wall time, not only of CPU time.

    Why: toulbar2's time limit counts the process's user CPU time (ITIMER_VIRTUAL, SIGVTALRM). On a loaded
    machine that runs slower than the wall clock: measured at load 11 on 2 cores, L's second priced solve
    took 51 s of wall time under a 40 s limit, and the whole 180 s run ended after 308 s. Here a real-time
    timer delivers SIGALRM to toulbar2's own timeout handler (a C function, so no Python runs in the
    signal), and the previous SIGALRM disposition is restored afterwards. Only on Linux, and only when no
    other real-time timer is pending (pytest-timeout and the like own it then): elsewhere the CPU limit
    alone applies.
    """
    if sys.platform != "linux" or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    toulbar2_handler, previous = _SigAction(), _SigAction()
    cfn.CFN.timer(1 << 30)  # installs toulbar2's timeout handler on SIGVTALRM: read it back
    try:
        found = libc.sigaction(signal.SIGVTALRM, None, ctypes.byref(toulbar2_handler)) == 0
    finally:
        cfn.CFN.timerStop()
    if not found or libc.sigaction(signal.SIGALRM, ctypes.byref(toulbar2_handler), ctypes.byref(previous)):
        yield
        return
    try:
        signal.setitimer(signal.ITIMER_REAL, max(float(seconds), 1e-3))
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        libc.sigaction(signal.SIGALRM, ctypes.byref(previous), None)
