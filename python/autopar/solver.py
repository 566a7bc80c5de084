"""The intra-op strategy problem and its solver.

A strategy problem (the IOPDDL contest's shape): pick one strategy per node so that node costs plus edge
(resharding) costs are minimal while the summed usage of the nodes live at every moment stays under a limit.

    p = StrategyProblem.from_json("problem.json.gz")
    sol = solve(p, time_limit=10.0, seed=0)
    sol.strategies, sol.cost, sol.status, sol.lower_bound

`solve` presolves into groups of nodes that move together (passes/intra_op/presolve.h), runs the C++ fast path
(greedy, memory repair, local search; passes/intra_op/heuristic.h), then either the exact path (the whole
reduced 0-1 ILP solved by HiGHS, warm-started; proves optimality or reports a bound) when it is small enough,
or large-neighbourhood search with HiGHS sub-ILPs, preceded by toulbar2 priced optima (autopar.cfn: the
memory-free optimum, then Lagrangian prices on usage) and, on usage-limited problems, a priced
large-neighbourhood phase and toulbar2 priced optima over restricted domains. docs/solver.md has the design
and measurements.
"""

from __future__ import annotations

import gzip
import logging
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autopar import _core, native_output
from autopar.cfn import PricedCfn

# Debug-level: each phase's start and each improvement, with the seconds since the clock started.
_log = logging.getLogger("autopar.solver")

__all__ = ["INFINITE_COST", "Solution", "StrategyProblem", "proven_optimal", "relative_gap", "solve"]

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


INFINITE_COST = 1e18
# The exact path is tried when the reduced ILP has at most this many nonzeros (HiGHS solves models of this
# size in seconds to minutes; bigger ones rarely close the gap within a compile-time budget).
MAX_ILP_NONZEROS = 2_000_000


class StrategyProblem:
    """A validated strategy problem held by the C++ core (flat arrays).

    Attributes:
      num_nodes: number of nodes.
      num_edges: number of edges.
      usage_limit: the per-moment usage limit, or None when unlimited.
      name: the problem's name ("" if none).
    """

    def __init__(self, core: _core.StrategyProblem):
        self._core = core

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> StrategyProblem:
        """Reads the contest format from .json or .json.gz (gzip detected by its magic bytes)."""
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as e:
                raise ValueError(f"{path}: not a readable gzip file ({e})") from None
        try:
            return cls(_core.StrategyProblem.from_json_text(raw))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    @classmethod
    def from_arrays(
        cls,
        intervals: np.ndarray | Sequence[Sequence[int]],
        node_costs: Sequence[Sequence[float]],
        node_usages: Sequence[Sequence[int]],
        edges: np.ndarray | Sequence[Sequence[int]],
        edge_costs: Sequence[Sequence[float]],
        usage_limit: int | None = None,
        name: str = "",
    ) -> StrategyProblem:
        """Builds a problem from per-node / per-edge arrays (see the module docstring for shapes)."""
        iv = _as_pairs(intervals, "intervals")
        ed = _as_pairs(edges, "edges")
        costs, cost_off = _flatten(node_costs, np.float64, "node_costs")
        usages, usage_off = _flatten(node_usages, np.int64, "node_usages")
        ecosts, ecost_off = _flatten(edge_costs, np.float64, "edge_costs")
        if usage_limit is not None:
            usage_limit = int(usage_limit)
        core = _core.StrategyProblem.from_flat(
            name,
            iv[:, 0].copy(),
            iv[:, 1].copy(),
            cost_off,
            costs,
            usage_off,
            usages,
            ed[:, 0].copy(),
            ed[:, 1].copy(),
            ecost_off,
            ecosts,
            usage_limit,
        )
        return cls(core)

    @property
    def num_nodes(self) -> int:
        return self._core.num_nodes

    @property
    def num_edges(self) -> int:
        return self._core.num_edges

    @property
    def usage_limit(self) -> int | None:
        return self._core.usage_limit

    @property
    def name(self) -> str:
        return self._core.name

    def num_strategies(self, node: int) -> int:
        return self._core.num_strategies(int(node))

    def evaluate(self, solution: Sequence[int] | np.ndarray) -> tuple[float, int, bool]:
        """(cost, peak usage, feasible); feasible means no forbidden cost and peak <= usage_limit."""
        return self._core.evaluate(_as_solution(solution))

    def arrays(self) -> _core.ProblemArrays:
        """Copies of the flat arrays, as numpy attributes (interval_start/end, strategy_offset, node_cost,
        node_usage, edge_u/v, edge_offset, edge_cost)."""
        return self._core.arrays()

    def to_json(self, path: str | os.PathLike) -> None:
        """Writes the contest format that `from_json` reads, gzipped when `path` ends with .gz.

        Integer-valued costs are written as integers, other costs in Python's shortest round-trip form (so
        a reread problem has bit-identical costs); forbidden costs (>= INFINITE_COST, inf, nan) as 1e18;
        no "usage_limit" key when there is none. The file appears atomically (a temporary file in the same
        directory, then os.replace), so a reader never sees half a problem.
        """
        import json  # local: this class is all of solver.py this method may touch
        import tempfile

        a = self.arrays()
        starts, ends = a.interval_start.tolist(), a.interval_end.tolist()
        node_rows = self._json_cost_rows(a.node_cost, a.strategy_offset)
        usages, offsets = a.node_usage.tolist(), a.strategy_offset.tolist()
        edge_rows = self._json_cost_rows(a.edge_cost, a.edge_offset)
        out = [
            '{"problem": {"name": ',
            json.dumps(self.name),
            ',\n"nodes": {"intervals": [',
            ",".join(f"[{s},{e}]" for s, e in zip(starts, ends, strict=True)),
            '],\n"costs": [',
            ",\n".join(node_rows),
            '],\n"usages": [',
            ",\n".join(
                "[" + ",".join(map(str, usages[b:e])) + "]"
                for b, e in zip(offsets[:-1], offsets[1:], strict=True)
            ),
            ']},\n"edges": {"nodes": [',
            ",".join(f"[{u},{v}]" for u, v in zip(a.edge_u.tolist(), a.edge_v.tolist(), strict=True)),
            '],\n"costs": [',
            ",\n".join(edge_rows),
            "]}",
        ]
        if self.usage_limit is not None:
            out.append(f',\n"usage_limit": {int(self.usage_limit)}')
        out.append("}}\n")
        data = "".join(out).encode()
        path = Path(path)
        if path.name.endswith(".gz"):
            data = gzip.compress(data, mtime=0)  # mtime 0: the same problem, the same bytes
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            umask = os.umask(0o22)  # mkstemp makes the file 0600; give it what open() would have
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _json_cost_rows(costs: np.ndarray, offsets: np.ndarray) -> list[str]:
        """One JSON list per row of `costs` (split at `offsets`): integral values as integers, forbidden ones
        as 1e18, the rest by repr (shortest text that reads back as the same double)."""
        # Tokenised once per distinct value: the intra-op pass's reshard tables repeat a few values millions
        # of times on 3-axis meshes.
        values, index = np.unique(costs, return_inverse=True)  # nan sorts last; all nan are forbidden
        forbidden = ~(values < INFINITE_COST)
        integral = ~forbidden & (np.abs(values) < 2.0**53) & (values == np.floor(values))
        unique = np.array(
            [
                "1e18" if f else str(int(c)) if i else repr(c)
                for c, f, i in zip(values.tolist(), forbidden.tolist(), integral.tolist(), strict=True)
            ],
            dtype=object,
        )
        tokens = unique[index.reshape(-1)].tolist()
        bounds = offsets.tolist()
        return ["[" + ",".join(tokens[b:e]) + "]" for b, e in zip(bounds[:-1], bounds[1:], strict=True)]


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


def solve(
    problem: StrategyProblem,
    time_limit: float = 10.0,
    seed: int = 0,
    *,
    budget: float | None = None,
    max_rounds: int | None = None,
    exact: bool = True,
    work_limit: float | None = None,
    initial: Sequence[int] | np.ndarray | None = None,
    candidates: Sequence[np.ndarray] = (),
    clock_start: float | None = None,
) -> Solution:
    """Solves `problem` with `budget` seconds of counted work, stopping by `time_limit` wall seconds.

    Determinism: every phase stops on counted work (heuristic rounds, toulbar2 backtracks and table entries,
    large-neighbourhood iterations weighted by sub-ILP size, HiGHS node limits), derived from `budget`
    (default: `time_limit`) by fixed rates measured on a 2-core machine (or given as `work_limit`); the wall
    clock only caps the run. The same problem, seed and budget give the same solution unless
    `Solution.clock_cut` is True (the clock stopped a phase first: a slower or loaded machine).

    exact=False skips presolve and every ILP (fast path only); max_rounds bounds its perturbation rounds.
    `initial` (a strategy per node) warm-starts the fast path, which only improves on it when it is
    feasible: the result then costs at most as much. `candidates` are other known solutions (plans of
    hand-written families, say) whose strategies the restricted searches keep in reach.
    `clock_start` (a `time.perf_counter()` reading, default now) is when the time limit started counting:
    a command-line solver passes its process start, so that loading counts against the limit too.
    """
    if not time_limit > 0:
        raise ValueError(f"time_limit must be > 0, got {time_limit}")
    budget = time_limit if budget is None else float(budget)
    if not budget > 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    start = time.perf_counter() if clock_start is None else float(clock_start)
    core = problem._core
    gm = _core.GroupModel(core) if exact else None
    presolve_infeasible = gm is not None and gm.infeasible
    rounds = -1 if max_rounds is None else int(max_rounds)
    if presolve_infeasible:
        rounds = 0  # only the minimum-usage evidence is wanted
    elif max_rounds is None:
        # Work-bounded, hence deterministic; the ILPs close the gap afterwards.
        rounds = 20 * core.num_nodes + 1000
        if exact:
            rounds = min(rounds, _HEURISTIC_ROUNDS)
    heuristic_limit = max(start + time_limit - time.perf_counter(), 0.0) * (0.3 if exact else 0.95)
    start_solution = None if initial is None else np.ascontiguousarray(initial, dtype=np.int64)
    if start_solution is not None and start_solution.shape != (core.num_nodes,):
        raise ValueError(f"initial: expected {core.num_nodes} strategies, got shape {start_solution.shape}")
    h = _core.solve_heuristic(core, heuristic_limit, int(seed), rounds, start_solution)
    clock_cut = rounds < 0 or (h.rounds < rounds and time.perf_counter() - start >= heuristic_limit)
    best, first = h.solution, h.time_to_first_feasible
    limit = core.usage_limit
    if not h.feasible and (presolve_infeasible or (limit is not None and h.min_peak_usage > limit)):
        peak = int(h.min_peak_usage)
        msg = (
            f"infeasible: the smallest strategies peak at {peak}, above the usage limit {limit}"
            if limit is not None and peak > limit
            else "infeasible: every strategy of some node is forbidden or over the usage limit"
        )
        elapsed = time.perf_counter() - start
        return Solution(best, float(h.cost), peak, None, "infeasible", None, elapsed, msg)
    lower_bound, optimal, msg = None, False, "fast path (greedy + local search)"
    best_time = float(h.time_to_best)
    trace = [(best_time, float(h.cost))] if h.feasible else []
    if gm is not None:
        improved = _improve(core, gm, h, time_limit, budget, int(seed), start, work_limit, candidates)
        if improved.best is not None:
            best, best_time = improved.best, improved.best_time
            if first < 0:
                first = improved.best_time
        lower_bound, optimal, msg = improved.lower_bound, improved.optimal, improved.message
        clock_cut = clock_cut or improved.clock_cut
        trace += improved.trace
    cost, peak, ok = core.evaluate(best)
    elapsed = time.perf_counter() - start
    if not ok:
        # Nothing feasible found: "infeasible" only when HiGHS proved it, else say we do not know.
        status = "infeasible" if optimal else "unknown"
        if not optimal:
            # Say when the search ended: its phases may stop well before the limit (no feasible start).
            msg = (
                "unknown: no finite-cost solution within the usage limit was found "
                f"(the search ended after {elapsed:.1f} s of the {time_limit:g} s limit)"
            )
        return Solution(best, cost, int(peak), lower_bound, status, None, elapsed, msg, clock_cut=clock_cut)
    if optimal and lower_bound is None:  # a proof without a bound (presolve fixed everything)
        lower_bound = float(cost)
    return Solution(
        np.asarray(best, dtype=np.int64),
        float(cost),
        int(peak),
        lower_bound,
        "optimal" if proven_optimal(cost, lower_bound) else "feasible",
        None if first < 0 else float(first),
        elapsed,
        msg,
        best_time,
        clock_cut,
        tuple(trace),
    )


# Heuristic rounds before the ILP phases take over (its perturbation rounds gain little once presolved ILPs
# are available).
_HEURISTIC_ROUNDS = 300
# Work rate of the large-neighbourhood search in _ilp_work units per second of time limit. Measured on this
# 2-core machine (shared, load 3-4) with two search threads: M 1.08M, S 1.03M units per wall second (and S
# about 0.8x that at load 5); at 0.65M the work budget, not the clock, ends the search with a margin of about
# 1.3x under load 5, at the price of stopping early. Deterministic results need the budget to bind.
_LNS_WORK_PER_SECOND = 0.65e6
# Lazy memory rows for the large-neighbourhood sub-ILPs (see _solve_ilp). Off: measured on M and S regions of
# 60 groups, once identical rows are merged the memory rows are a small part of the model, and the extra
# HiGHS runs cost more (M: 3.3 s vs 1.9 s for six regions; S: 1.6 s vs 1.2 s).
_LAZY_MEMORY = False
# Region models above this many nonzeros are not solved (the region shrinks): measured on S, a 976k-nonzero
# region took 24 s of HiGHS, cut by its time limit (not reproducible), for a few hundred thousand elsewhere.
_LNS_MAX_NONZEROS = 400_000
# LNS sub-ILPs try their LP relaxation first (see _solve_ilp).
_LP_FIRST = True
# Disjoint regions solved at once per search round (one HiGHS per thread).
_LNS_THREADS = 2
# Share of regions drawn around a moment of near-peak usage (within _TIME_WINDOW_SLACK of the peak).
_TIME_WINDOW_SHARE = 0.3
_TIME_WINDOW_SLACK = 0.01
# Groups in the first region (regions adapt afterwards).
_LNS_START_SIZE = 40
# Work units of _ilp_work (about a microsecond of one core of this machine each). Weighted so that the wall
# rate is the same on M (many small regions, LP relaxations often integral) and S (simplex-bound MIPs):
# measured with two threads at load 3, M 1.05M/s and S 1.0M/s. (4/nonzero and 250/simplex before LP-first:
# M 1.66M/s, S 1.0-1.2M/s; LP simplex iterations without presolve cost a sixth of the MIP's.)
_WORK_PER_NONZERO = 1.0
_WORK_PER_SIMPLEX = 350.0
_WORK_PER_LP_SIMPLEX = 60.0
_WORK_PER_NODE = 1000.0
_WORK_PER_MODEL = 10000.0
# Memory pricing (_price_memory): share of the work budget, first price level (x best cost / usage limit),
# growth per round while the priced solution exceeds the limit (before / after it first fits), shrink per
# round once it fits, and work per round. Measured at 60 s, a geometric bisection of mu after the first fit
# did worse than this (S 1.066 vs 1.056, M 1.049 vs 1.046). The rate is A's (2.15M units per wall second,
# S and M about 3M): at 2.4M, A's run after the toulbar2 phase ended 1 s short of its clock.
_PRICE_SHARE = 0.5
_PRICE_WORK_PER_SECOND = 2.0e6
_PRICE_START = 0.02
_PRICE_GROW_FIRST = 1.5
_PRICE_GROW = 1.2
_PRICE_SHRINK = 1.1
_PRICE_ROUND_WORK = 2e6
# Work charged per repair (the fast path after each round; not counted by _ilp_work): A's takes 0.4 s, S's
# 0.09 s, M's 0.13 s; a fixed charge keeps the phase deterministic and the slowest case within its share.
_PRICE_REPAIR_WORK = 1e6
# The pricing phase ends early when its best repaired cost gained less than this share over this many rounds.
_PRICE_PATIENCE = 12
_PRICE_MIN_GAIN = 1e-4
# Largest region (groups) of the priced search: its sub-ILPs have no memory rows and grow while they solve
# fast; on S, regions of 500-620 groups whose LP was fractional took 19-23 s of HiGHS (the clock then cut
# them), those of 270-330 groups 0.2-0.3 s.
_PRICE_MAX_REGION = 300.0
# toulbar2 pricing (_price_memory_cfn): share of the time limit, backtracks per priced solve, first price
# level (x best cost / usage limit), and the relative width of the price bracket at which it stops. Work is
# charged per table entry (building and preprocessing the network: A's 6.2M entries take 4.5 s, over-charged
# so that A stops after three rounds, the third fitting) and per backtrack (M 2 ms, S 6-17 ms; S stops on
# the proof rule instead). The phase ends after _CFN_UNPROVEN rounds in a row without a proof.
_CFN_SHARE = 0.3
_CFN_BACKTRACKS = 1000
_CFN_PRICE_START = 0.05
_CFN_PRICE_TOLERANCE = 0.01
_CFN_WORK_PER_ENTRY = 1.0
_CFN_WORK_PER_BACKTRACK = 3000.0
_CFN_UNPROVEN = 3
# Work units per wall second of the toulbar2 phases (their budgets are seconds x this), and the slack of the
# wall-clock cap on each of their solves: a solve may take at most this many times the seconds its phase has
# left in work. Why: toulbar2's backtracks cost 2 ms on M and 6-17 ms on S but 0.6 s on L, whose second
# priced solve (266 backtracks, charged 0.8 s of work) took 160 s of its 180 s. The cap only binds on such
# problems (and is then reported as a clock cut): elsewhere the counted work ends the phase first.
_CFN_WORK_PER_SECOND = 1e6
_CFN_WALL_SLACK = 1.5
# Restricted priced optima (_price_memory_restricted): share of the time limit (of what the earlier phases
# left), backtracks per toulbar2 solve, cheapest strategies per node added to the candidates' in each
# node's domain, the first extra price at the violated moments (x the priced phase's level), its growth while
# over the limit, and its fall and the decay of the accumulated extra price after a fit. Measured on S from
# the priced phase's best round: 12 cheapest and 5,000 backtracks close or nearly close in 11-17 s each;
# 40 cheapest did no better within 20,000 backtracks. S at 240 s, seeds 0 / 1: share 0.6 with fall 0.5 and
# decay 0.7 gave 1.0152 / 1.0263; share 0.8 1.0058 / 1.0297; share 0.8 with 0.75 and 0.85 1.0050 / 1.0283.
_RESTRICTED_SHARE = 0.8
_RESTRICTED_BACKTRACKS = 5000
_RESTRICTED_CHEAPEST = 12
_RESTRICTED_EXTRA_START = 0.25
_RESTRICTED_EXTRA_GROW = 1.5
_RESTRICTED_EXTRA_FALL = 0.75
_RESTRICTED_EXTRA_DECAY = 0.85
# Work per cost function posted to toulbar2 (building the restricted domains and tables in Python): A's
# 90k functions take 4 s per round, S's 67k about 3 s.
_RESTRICTED_WORK_PER_FUNCTION = 50.0
# Work per backtrack of a restricted solve: S's take 1.0-1.3 ms each (full networks: 6-17 ms).
_RESTRICTED_WORK_PER_BACKTRACK = 1500.0
# HiGHS branch-and-bound node limit per neighbourhood (deterministic, unlike its time limit).
_LNS_MAX_NODES = 200


@dataclass
class _Improved:
    best: np.ndarray | None = None
    best_time: float = 0.0
    lower_bound: float | None = None
    optimal: bool = False
    clock_cut: bool = False
    message: str = ""
    iterations: int = 0
    log: list = field(default_factory=list)  # per LNS iteration, for benchmarks
    memory_free: np.ndarray | None = None  # toulbar2's memory-free solution (round 0), when it found one
    trace: list = field(default_factory=list)  # (seconds, cost) each time `best` improved

    def keep(self, solution, cost: float, start: float) -> float:
        """Makes `solution` (feasible, costing `cost`) the best so far; returns `cost`."""
        self.best, self.best_time = solution, time.perf_counter() - start
        self.trace.append((self.best_time, float(cost)))
        _log.debug("%.2f s: cost %.17g", self.best_time, cost)
        return float(cost)

    def begin(self, phase: str, start: float) -> None:
        _log.debug("%.2f s: %s", time.perf_counter() - start, phase)

    def note(self, entry: dict, start: float) -> None:
        """Records one round of a pricing phase (for benchmarks and the debug log)."""
        self.log.append(entry)
        _log.debug("%.2f s: %s", time.perf_counter() - start, entry)


def _improve(
    core: _core.StrategyProblem,
    gm: _core.GroupModel,
    h: _core.HeuristicResult,
    time_limit: float,
    seconds: float,
    seed: int,
    start: float,
    work_limit: float | None,
    candidates: Sequence[np.ndarray] = (),
) -> _Improved:
    """The phases after the fast path, over the presolved groups, with `seconds` of counted work: the
    exact path when the whole reduced ILP is small enough (proves optimality or gives a bound), else
    large-neighbourhood search from the heuristic's solution."""
    out = _Improved(message="fast path (greedy + local search)")
    assignment = gm.encode(h.solution) if h.feasible else None
    best_cost = float(h.cost) if h.feasible else float("inf")
    if assignment is None:
        assignment = np.zeros(gm.num_groups, np.int32)
    whole = gm.build(assignment, np.zeros(0, np.int32), MAX_ILP_NONZEROS)
    deadline = start + time_limit
    if not gm.has_usage_limit:
        return _without_usage_limit(core, gm, whole, h, seconds, seed, start, deadline, out, candidates)
    if not whole.too_big:
        return _exact_path(core, gm, whole, h, seconds, seed, start, deadline, out)
    if not h.feasible:
        return out
    rng = np.random.default_rng(seed)
    budget = work_limit if work_limit is not None else _LNS_WORK_PER_SECOND * seconds
    deadline = start + time_limit * 0.97
    out.message = "large-neighbourhood search (presolve + HiGHS sub-ILPs)"
    # Each phase gets its share of what the earlier ones left (they stop early when they converge).
    share, price, cfn, settled = 0.0, None, None, None
    if _CFN_SHARE > 0:
        cfn = PricedCfn(core)
        # Without a usage limit only the memory-free round runs, and it is the whole search.
        cfn_share = _CFN_SHARE if gm.has_usage_limit else 1.0
        cfn_budget = cfn_share * (work_limit if work_limit is not None else 1e6 * seconds)
        out.begin("toulbar2 priced optima", start)
        used, price = _price_memory_cfn(
            core, h.solution, best_cost, cfn_budget, seed, deadline, start, out, cfn
        )
        share = cfn_share * used
        out.message = "toulbar2 priced optima + large-neighbourhood search (presolve + HiGHS sub-ILPs)"
        if out.optimal:
            out.message = "toulbar2 (memory-free optimum fits the usage limit): proven optimal"
            return out
        if out.best is not None:
            best_cost = float(core.evaluate(out.best)[0])
            assignment = gm.encode(out.best)
    if gm.has_usage_limit and _PRICE_SHARE > 0:
        out.message = "toulbar2 priced optima + memory pricing + large-neighbourhood search"
        price_budget = (
            (1 - share)
            * _PRICE_SHARE
            * (work_limit if work_limit is not None else _PRICE_WORK_PER_SECOND * seconds)
        )
        # Without a bracketed price the priced search starts where it did without toulbar2 (from the fast
        # path's solution, its first price set by that cost); the best solution so far is kept in `out`.
        first = h.solution
        out.begin("memory pricing", start)
        used, settled = _price_memory(
            core, gm, first, best_cost, price_budget, rng, deadline, start, out, price
        )
        # A stalled pricing phase leaves its time to the exact-memory search.
        share += (1 - share) * _PRICE_SHARE * used
    if cfn is not None and settled is not None and out.best is not None and _RESTRICTED_SHARE > 0:
        out.message = "toulbar2 priced optima + memory pricing + restricted priced optima + LNS"
        restricted_budget = (
            (1 - share) * _RESTRICTED_SHARE * (work_limit if work_limit is not None else 1e6 * seconds)
        )
        out.begin("restricted priced optima", start)
        used = _price_memory_restricted(core, cfn, settled, restricted_budget, seed, deadline, start, out)
        share += (1 - share) * _RESTRICTED_SHARE * used
    if out.best is not None:
        best_cost = float(core.evaluate(out.best)[0])
        assignment = gm.encode(out.best)
    search = _Search()
    objective = _Objective(core)
    out.begin("large-neighbourhood search", start)
    _lns(gm, assignment, best_cost, objective, (1 - share) * budget, rng, deadline, start, out, search)
    return out


def _without_usage_limit(
    core: _core.StrategyProblem,
    gm: _core.GroupModel,
    whole: _core.GroupIlp,
    h: _core.HeuristicResult,
    seconds: float,
    seed: int,
    start: float,
    deadline: float,
    out: _Improved,
    candidates: Sequence[np.ndarray] = (),
) -> _Improved:
    """A problem without a usage limit (the intra-op pass's default) is a weighted CSP, toulbar2's problem:
    1. toulbar2 on the whole network, when the budget affords posting it: it proves most such problems
       optimal (an MLP step on 2x2x2 in 0.05 s, where HiGHS needs 2.7 s for the same proof);
    2. otherwise (or unproven) toulbar2 over conditional domains, round after round (_conditional_rounds);
    3. the whole ILP, if HiGHS can afford it, or the large-neighbourhood search with what is left."""
    cfn = PricedCfn(core, priced=False)
    units = 1e6 * seconds
    free_budget = _FREE_CFN_SHARE * units
    if _free_post_work(cfn) >= free_budget:
        # A network too large for its share: posting it (and its TRW-S bound, the only bound worth reading
        # on such problems) is worth most of the budget; the conditional rounds then start from its answer.
        free_budget = _FREE_CFN_MAX_SHARE * units
    used = _memory_free_round(core, cfn, h, free_budget, seed, deadline, start, out)
    if out.optimal or _gap_closed(core, h, out):
        out.message = "toulbar2 (no usage limit): proven optimal"
        return out
    if out.best is not None or h.feasible:
        share = _CONDITIONAL_SHARE * (units - used)
        used += _conditional_rounds(core, cfn, h, candidates, share, seed, deadline, start, out)
        out.message = "toulbar2 over conditional domains (no usage limit)"
        if _gap_closed(core, h, out):
            return out
    left = max(seconds - used / 1e6, 0.0)
    if not whole.too_big and whole.num_nonzeros <= _EXACT_NONZEROS_PER_SECOND * seconds:
        return _highs_exact(core, gm, whole, h, left, seed, start, deadline, out)
    best = out.best if out.best is not None else (h.solution if h.feasible else None)
    if best is None or left <= 0:
        return out
    out.message = "toulbar2 + large-neighbourhood search (presolve + HiGHS sub-ILPs)"
    cost = float(core.evaluate(best)[0])
    rng = np.random.default_rng(seed)
    budget = _LNS_WORK_PER_SECOND * left
    _lns(gm, gm.encode(best), cost, _Objective(core), budget, rng, deadline, start, out, _Search())
    return out


def _memory_free_round(
    core: _core.StrategyProblem,
    cfn: PricedCfn,
    h: _core.HeuristicResult,
    budget: float,
    seed: int,
    deadline: float,
    start: float,
    out: _Improved,
) -> float:
    """toulbar2 on the problem without its usage limit, below the fast path's solution, with as many
    backtracks as `budget` (work units) affords after posting the network; skipped when posting alone costs
    more. Keeps an improving solution that fits the limit in `out`, sets `out.optimal` when toulbar2 proves
    a fitting optimum of integral costs (scaled costs are rounded: their bound, less the rounding, decides),
    and raises `out.lower_bound`. Returns the work used."""
    entries = cfn.num_table_entries
    post = _free_post_work(cfn)
    per_backtrack = max(_FREE_MIN_WORK_PER_BACKTRACK, _FREE_WORK_PER_ENTRY_BACKTRACK * entries)
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        out.clock_cut = True
        return 0.0
    if post >= budget:
        return 0.0
    incumbent = np.asarray(h.solution, dtype=np.int64) if h.feasible else None
    upper = None if incumbent is None else cfn.value(incumbent, None) + cfn.unit
    backtracks = int((budget - post) / per_backtrack)
    result = cfn.solve(None, upper, backtracks, remaining, seed, trws_iterations=_TRWS_ITERATIONS)
    out.clock_cut = out.clock_cut or result.clock_cut
    exact = cfn.scale == 1.0  # integral costs: toulbar2's proof is a proof
    slack = cfn.rounding_for(None)
    if np.isfinite(result.dual_bound):
        bound = result.dual_bound - slack
        out.lower_bound = bound if out.lower_bound is None else max(out.lower_bound, bound)
    fits = False
    if result.solution is not None:
        cost, _, fits = core.evaluate(result.solution)
        if fits and (incumbent is None or cost < float(h.cost)):
            out.keep(result.solution, cost, start)
        out.optimal = fits and exact and result.optimal
    elif incumbent is not None and exact:
        # Nothing below the fast path's solution, and the search was complete: it is optimal.
        out.optimal = result.dual_bound >= cfn.value(incumbent, None) - 0.5
    return post + per_backtrack * result.backtracks


def _free_post_work(cfn: PricedCfn) -> float:
    """Work units of posting the whole network and running TRW-S on it."""
    return (_FREE_WORK_PER_ENTRY + _TRWS_WORK_PER_ENTRY) * cfn.num_table_entries


def _conditional_rounds(
    core: _core.StrategyProblem,
    cfn: PricedCfn,
    h: _core.HeuristicResult,
    candidates: Sequence[np.ndarray],
    budget: float,
    seed: int,
    deadline: float,
    start: float,
    out: _Improved,
) -> float:
    """Large-neighbourhood search with toulbar2: every node keeps its strategy in the best solution x, the
    strategies of `candidates`, and its k cheapest given its neighbours' strategies in x
    (`PricedCfn.conditional_domains`); toulbar2 finds the optimum over all their combinations below x, which
    becomes the new x. k widens from the first to the last of _CONDITIONAL_CHEAPEST when a round finds
    nothing and returns to the first after a gain; the phase ends when the widest finds nothing, or the
    budget (work units: entries and backtracks, as the memory-free round) is spent. Measured on the
    2x2x2 problems of benchmarks/models/small.py, whose full networks the default budget cannot post: GPT
    (2 layers) 1.898e-3 -> 1.585e-3 and MoE 3.94e-4 -> 3.45e-4 in 4-6 rounds of 0.1-0.5 s (the full
    network with 30 s of budget: 1.692e-3 and 3.58e-4). Returns the work used."""
    x = out.best if out.best is not None else h.solution
    x = np.asarray(x, dtype=np.int64)
    cost = float(core.evaluate(x)[0])
    work, level = 0.0, 0
    while work < budget:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            out.clock_cut = True
            break
        domains = cfn.conditional_domains(x, list(candidates), _CONDITIONAL_CHEAPEST[level])
        entries = cfn.table_entries(domains)
        post = _FREE_WORK_PER_ENTRY * entries
        per_backtrack = max(_FREE_MIN_WORK_PER_BACKTRACK, _FREE_WORK_PER_ENTRY_BACKTRACK * entries)
        if work + post >= budget:
            break
        backtracks = min(_CONDITIONAL_BACKTRACKS, int((budget - work - post) / per_backtrack))
        result = cfn.solve(None, cfn.value(x, None) + cfn.unit, backtracks, remaining, seed, domains)
        work += post + per_backtrack * result.backtracks
        out.clock_cut = out.clock_cut or result.clock_cut
        gained = False
        if result.solution is not None:
            new_cost, _, ok = core.evaluate(result.solution)
            if ok and new_cost < cost - 1e-12 * abs(cost):
                x, cost, gained = np.asarray(result.solution, dtype=np.int64), float(new_cost), True
                out.keep(x, cost, start)
        if gained:
            level = 0
        elif level + 1 < len(_CONDITIONAL_CHEAPEST):
            level += 1
        else:
            break
    return work


# Conditional rounds: share of the budget left after the memory-free round, the widths k tried in turn,
# and the backtracks per round (rounds of the measurements above closed within 3,000).
_CONDITIONAL_SHARE = 0.8
_CONDITIONAL_CHEAPEST = (4, 8, 16, 32)
_CONDITIONAL_BACKTRACKS = 5000


def _gap_closed(core: _core.StrategyProblem, h: _core.HeuristicResult, out: _Improved) -> bool:
    """Whether the bound is within _NEGLIGIBLE_GAP of the best solution so far: searching on cannot pay (the
    status is still decided by the exact rule in `solve`)."""
    best = out.best if out.best is not None else (h.solution if h.feasible else None)
    if best is None or out.lower_bound is None:
        return False
    cost = float(core.evaluate(best)[0])
    return out.lower_bound >= cost - _NEGLIGIBLE_GAP * abs(cost)


# A relative gap below which no search continues: toulbar2's proofs over rounded costs leave gaps of this
# order (the rounding of each table entry) where the optimum was found.
_NEGLIGIBLE_GAP = 1e-6
# Without a usage limit: toulbar2's share of the budget, and its work per table entry (posting and
# preprocessing: measured 0.5-1.0 us per entry on the 2x2x2 problems of benchmarks/models/small.py, 5-7M
# entries) and per backtrack (proportional to the tables: 2-8 ns per entry per backtrack measured on the same
# models' 2x4 and 2x2x2 problems).
_FREE_CFN_SHARE = 0.5
# ... and its share when posting the network costs more than _FREE_CFN_SHARE: measured on GPT 350M and 2.6B
# 2x4 (2.4 M and 3.2 M entries), posting and TRW-S within the default budget bring the bound from 14-16 %
# below the plan to within 0.2 %.
_FREE_CFN_MAX_SHARE = 0.85
_FREE_WORK_PER_ENTRY = 1.0
_FREE_WORK_PER_ENTRY_BACKTRACK = 5e-3
_FREE_MIN_WORK_PER_BACKTRACK = 50.0
# TRW-S before the memory-free search (see cfn._TRWS_ACCURACY): at most _TRWS_ITERATIONS iterations, charged
# per table entry. Measured on GPT 2.6B's 2x4 network (3.2M entries): it stops by itself after 45 iterations
# in 1.5-2 s (0.5-0.6 us per entry), raising the bound from 2.515 to 2.572 against a plan of 2.576; 20
# iterations reach 2.570. Its work is a function of the network alone (deterministic), so charging it per
# entry keeps the budget a count of work.
_TRWS_ITERATIONS = 100
_TRWS_WORK_PER_ENTRY = 0.6
# The whole ILP without a usage limit is tried only when HiGHS can close it within the budget: its root LP,
# which nothing but the clock interrupts, took 2.7 s at 197k nonzeros (MLP, 2x2x2) and did not finish in
# 60 s at 514k (2-layer GPT, 2x4).
_EXACT_NONZEROS_PER_SECOND = 25_000


def _exact_path(
    core: _core.StrategyProblem,
    gm: _core.GroupModel,
    whole: _core.GroupIlp,
    h: _core.HeuristicResult,
    seconds: float,
    seed: int,
    start: float,
    deadline: float,
    out: _Improved,
) -> _Improved:
    """A usage-limited problem whose whole reduced ILP is small enough: toulbar2's memory-free optimum first
    (when it fits the limit and is proven, nothing else is needed), then the whole ILP with HiGHS."""
    cfn = PricedCfn(core, priced=False)
    _memory_free_round(core, cfn, h, _CFN_SHARE * 1e6 * seconds, seed, deadline, start, out)
    if out.optimal:
        out.message = "exact path (toulbar2: the memory-free optimum fits the usage limit): proven optimal"
        return out
    return _highs_exact(core, gm, whole, h, seconds, seed, start, deadline, out)


def _highs_exact(
    core: _core.StrategyProblem,
    gm: _core.GroupModel,
    whole: _core.GroupIlp,
    h: _core.HeuristicResult,
    seconds: float,
    seed: int,
    start: float,
    deadline: float,
    out: _Improved,
) -> _Improved:
    """The whole reduced ILP with HiGHS from the best solution so far (`out.best`, else the fast path's),
    its branch-and-bound bounded by a node count derived from `seconds`."""
    assignment = gm.encode(h.solution) if h.feasible else np.zeros(gm.num_groups, np.int32)
    best_cost = float(h.cost) if h.feasible else float("inf")
    feasible = bool(h.feasible)
    if out.best is not None:
        best_cost = float(core.evaluate(out.best)[0])
        assignment, feasible = gm.encode(out.best), True
    remaining = max(deadline - time.perf_counter(), 0.05)
    nodes = max(_EXACT_MIN_NODES, int(_EXACT_NODES_PER_SECOND * seconds))
    ilp = _solve_ilp(whole, assignment if feasible else None, remaining, seed, nodes)
    if ilp is None:
        out.message = "fast path; the exact path found nothing within its node limit"
        out.clock_cut = out.clock_cut or time.perf_counter() >= deadline
        return out
    values, bound, optimal, infeasible = ilp
    if infeasible:
        out.optimal, out.message = True, "infeasible: HiGHS proved no solution fits the usage limit"
        return out
    candidate = gm.expand(whole.decode(values, assignment))
    cost, _, ok = core.evaluate(candidate)
    if ok and cost < best_cost:
        best_cost = out.keep(candidate, cost, start)
    if bound is not None:
        out.lower_bound = bound if out.lower_bound is None else max(out.lower_bound, bound)
        out.lower_bound = min(out.lower_bound, best_cost)
    out.optimal = optimal and ok
    out.clock_cut = out.clock_cut or (not optimal and time.perf_counter() >= deadline)
    out.message = (
        "exact path (presolve + HiGHS ILP): proven optimal"
        if out.optimal
        else "exact path (presolve + HiGHS ILP) stopped at its node limit"
    )
    return out


# HiGHS branch-and-bound nodes of the exact path per second of budget, and at least. Measured: the intra-op
# problems of the test models close at the root or within a few hundred nodes; G proves in 3 s.
_EXACT_NODES_PER_SECOND = 2000
_EXACT_MIN_NODES = 1000


class _Objective:
    """What a large-neighbourhood search minimises over full solutions: the true cost of feasible solutions
    (memory rows in every sub-ILP), or, with `node_price`, the Lagrangian cost + sum price[i] x usage[i] of
    finite-cost solutions whatever their peak (no memory rows)."""

    def __init__(self, core: _core.StrategyProblem, priced_usage=None, node_price: np.ndarray | None = None):
        # priced_usage(full) -> usage per node of its chosen strategy (the caller holds the arrays: copying
        # them out of the core per round would cost more than the round's bookkeeping).
        self.core = core
        self.priced_usage = priced_usage
        self.node_price = node_price
        self.memory = node_price is None

    def __call__(self, full: np.ndarray) -> float:
        cost, _, ok = self.core.evaluate(full)
        if self.memory:
            return cost if ok else float("inf")
        if cost >= INFINITE_COST:
            return float("inf")
        return cost + float(self.node_price @ self.priced_usage(full))


@dataclass
class _Search:
    """State a large-neighbourhood search carries between calls: region size and counted work."""

    size: float = _LNS_START_SIZE
    work: float = 0.0
    max_size: float = float("inf")


def _lns(
    gm: _core.GroupModel,
    assignment: np.ndarray,
    value: float,
    objective: _Objective,
    budget: float,
    rng: np.random.Generator,
    deadline: float,
    start: float,
    out: _Improved,
    search: _Search,
) -> tuple[np.ndarray, float]:
    """Large-neighbourhood search: connected regions of groups (around a group whose strategy is locally
    regrettable, or a random one) are freed, everything else fixed, and each sub-ILP solved by HiGHS from the
    current solution; a result is accepted when `objective` (re-evaluated by the core) confirms it cheaper.
    Returns the final assignment and its objective value; improvements of the true objective go to `out`.

    Each round frees _LNS_THREADS disjoint regions and solves them on as many threads (HiGHS releases the
    GIL); the results are applied one after the other in region order, each re-checked on top of the
    previous, so the outcome does not depend on which thread finishes first. Regions grow while sub-ILPs are
    solved to optimality without gain and shrink when they hit the node limit. The search stops when
    `search.work` (counted by _ilp_work: model size, simplex iterations, nodes) reaches `budget`, so a run
    that the clock does not cut is reproducible."""
    from concurrent.futures import ThreadPoolExecutor

    free = gm.free_groups()
    stale = 0
    threads = max(1, min(_LNS_THREADS, len(free) // 8))
    with ThreadPoolExecutor(threads) as executor:
        while search.work < budget and len(free):
            if time.perf_counter() >= deadline:
                out.clock_cut = True
                break
            regions = _lns_regions(gm, assignment, free, int(search.size), threads, rng, objective.memory)
            models = [
                gm.build(assignment, r, _LNS_MAX_NONZEROS, _LAZY_MEMORY, objective.memory) for r in regions
            ]
            remaining = max(min(deadline - time.perf_counter(), 20.0), 0.05)
            jobs = [(m, assignment, remaining, int(rng.integers(2**31)), {}) for m in models]
            results = list(executor.map(_solve_region, jobs))
            for (model, *_, st), ilp in zip(jobs, results, strict=True):
                search.work += _ilp_work(model, st)
                out.iterations += 1
                out.log.append({"size": model.num_free, "nnz": model.num_nonzeros, **st})
                if st.get("clock"):
                    out.clock_cut = True
                if ilp is None:
                    search.size = max(8.0, search.size * 0.7)
                    continue
                values, _, optimal, _ = ilp
                # Only this region's groups change, on top of whatever the earlier regions changed.
                candidate = model.decode(values, assignment)
                full = gm.expand(candidate)
                new_value = objective(full)
                out.log[-1].update(optimal=optimal, gain=value - new_value)
                if new_value < value - 1e-9 * abs(value):
                    assignment, value = candidate, new_value
                    if objective.memory:
                        out.keep(full, float(new_value), start)
                    stale = 0
                else:
                    stale += 1
                if optimal:
                    search.size = min(
                        search.size * (1.15 if stale else 1.0), float(len(free)), search.max_size
                    )
                else:
                    search.size = max(8.0, search.size * 0.8)
    return assignment, value


def _price_memory(
    core: _core.StrategyProblem,
    gm: _core.GroupModel,
    best: np.ndarray,
    best_cost: float,
    budget: float,
    rng: np.random.Generator,
    deadline: float,
    start: float,
    out: _Improved,
    price: _Price | None = None,
) -> tuple[float, _Price | None]:
    """Lagrangian phase for memory-bound problems: the usage limit becomes a price per byte at the moments
    where it is exceeded, and large-neighbourhood search (no memory rows: small, mostly integral sub-ILPs)
    minimises cost + price x usage. After each round the priced solution is repaired to the limit by the
    fast path (memory repair, then local search) and kept in `out` when it is the cheapest feasible so far.

    Why: when the limit binds at a few moments where thousands of long-lived nodes meet (S: 2,700 nodes live
    at the peak, most for the whole run), the limit is a knapsack over all of them; neighbourhoods of tens of
    groups with exact memory rows trade bytes only among themselves, while one price trades them globally.

    The price shape accumulates each round's normalised excess over the limit (moments that never exceed it
    stay free); its level mu grows by _PRICE_GROW_FIRST until the priced solution first fits, then by
    _PRICE_GROW while it is over the limit and falls by _PRICE_SHRINK while it fits, so it settles where the
    priced optimum just fits. Rounds stop on counted work, or when the best repaired cost gained less than
    _PRICE_MIN_GAIN over the last _PRICE_PATIENCE rounds. Returns the share of `budget` used and the price
    and priced solution of the round whose repair was cheapest (None when no round was priced), for
    _price_memory_restricted to go on from.
    """
    a = core.arrays()
    first, usage = a.strategy_offset[:-1], a.node_usage

    def chosen_usage(full: np.ndarray) -> np.ndarray:
        return usage[first + full]

    lo, hi = a.interval_start, a.interval_end
    limit = float(core.usage_limit)
    moments = int(hi.max()) + 1 if len(hi) else 1
    shape = np.zeros(moments)
    mu = _PRICE_START * float(core.evaluate(best)[0]) / limit
    assignment = gm.encode(np.asarray(best, dtype=np.int64))
    search = _Search(max_size=_PRICE_MAX_REGION)
    rounds, seen_fit, history = 0, False, []
    settled, settled_cost = None, float("inf")
    node_price = np.zeros(len(first))  # round 0: no price, the memory-free optimum
    if price is not None:  # go on from the toulbar2 phase's price and priced solution
        shape, mu, seen_fit = price.shape.copy(), price.mu, True  # bracketed: a priced solution fitted
        assignment = gm.encode(price.solution)
        rounds = 1
        node_price = price.node_price(lo, hi)
    while search.work < budget and time.perf_counter() < deadline:
        rounds += 1
        gm.set_memory_price(node_price)
        objective = _Objective(core, chosen_usage, node_price)
        round_budget = min(search.work + _PRICE_ROUND_WORK, budget)
        value = objective(gm.expand(assignment))
        assignment, _ = _lns(
            gm, assignment, value, objective, round_budget, rng, deadline, start, out, search
        )
        x = gm.expand(assignment)
        began = time.perf_counter()
        best_cost, repaired = _repair(core, x, int(rng.integers(2**31)), best_cost, deadline, start, out)
        repair_secs = time.perf_counter() - began
        search.work += _PRICE_REPAIR_WORK
        excess = np.maximum(_usage_profile(chosen_usage(x), lo, hi, moments) - limit, 0.0)
        over = excess.sum() > 0
        out.note(
            {
                "price_round": rounds,
                "mu": mu,
                "over": bool(over),
                "repaired": repaired,
                "secs": repair_secs,
            },
            start,
        )
        history.append(best_cost)
        if shape.sum() > 0 and repaired < settled_cost:
            settled, settled_cost = _Price(shape.copy(), mu, x), repaired
        if (
            len(history) > _PRICE_PATIENCE
            and history[-_PRICE_PATIENCE - 1] - best_cost < _PRICE_MIN_GAIN * best_cost
        ):
            break  # stalled (A: within 0.03% of best known after 5 rounds): exact memory rows do better now
        if not over and shape.sum() == 0:
            break  # the memory-free optimum fits: nothing to price
        if over:
            shape += excess / excess.sum()
        if rounds > 1:
            seen_fit = seen_fit or not over
            mu *= (_PRICE_GROW if seen_fit else _PRICE_GROW_FIRST) if over else 1.0 / _PRICE_SHRINK
        node_price = _node_price(shape, mu, lo, hi)
    gm.set_memory_price(np.zeros(0))
    return (min(search.work / budget, 1.0) if budget > 0 else 1.0), settled


@dataclass
class _Price:
    """A memory price handed from one pricing phase to the next (a bracketed toulbar2 price to the priced
    large-neighbourhood search, its best round to the restricted phase): the shape over moments, its level
    mu, and the priced solution at that price."""

    shape: np.ndarray
    mu: float
    solution: np.ndarray

    def node_price(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return _node_price(self.shape, self.mu, lo, hi)


def _price_memory_cfn(
    core: _core.StrategyProblem,
    best: np.ndarray,
    best_cost: float,
    budget: float,
    seed: int,
    deadline: float,
    start: float,
    out: _Improved,
    cfn: PricedCfn | None = None,
    max_rounds: int | None = None,
) -> tuple[float, _Price | None]:
    """Memory pricing with exact priced optima: toulbar2 (autopar.cfn) minimises cost + price x usage over
    the whole problem, without the usage limit, and the fast path repairs each priced optimum to the limit.

    Round 0 has no price: when the memory-free optimum fits the limit (or there is none) and toulbar2 proves
    it optimal, it is the optimum of the problem (`out.optimal`). Otherwise the price shape is the normalised
    excess of the memory-free optimum over the limit, and its level mu is bracketed (doubled while the priced
    optimum is over the limit, halved while it fits) and then bisected geometrically, so the priced optima
    approach the limit from both sides. Every priced optimum with toulbar2's dual bound D gives the
    Lagrangian lower bound D - mu x limit (less the rounding of its costs), kept in `out.lower_bound`.

    Why: measured on M, toulbar2 proves the memory-free optimum (0.9187 x best known) in 54 s where the
    large-neighbourhood search stops at 0.986, and its priced optima repair to 1.0045 in 17 s where the
    priced large-neighbourhood search settles at 1.046. Rounds are charged by table entries and backtracks
    (deterministic, about a microsecond of this machine per unit) against `budget`. The phase stops early
    when _CFN_UNPROVEN rounds in a row hit their backtrack limit (S: toulbar2 then returns priced solutions
    no better than the large-neighbourhood search's, at ten times its cost). Returns the share of `budget`
    used and the price reached (None when nothing was priced), for the priced search to go on from.
    """
    a = core.arrays()
    first, usage = a.strategy_offset[:-1], a.node_usage
    lo, hi = a.interval_start, a.interval_end
    limit = None if core.usage_limit is None else float(core.usage_limit)
    moments = int(hi.max()) + 1 if len(hi) else 1
    cfn = PricedCfn(core) if cfn is None else cfn
    incumbent = np.asarray(best, dtype=np.int64)
    shape, mu, fits_at, over_at = np.zeros(moments), 0.0, None, None
    node_price, work, rounds, unproven, handoff = None, 0.0, 0, 0, None
    entry_work = _CFN_WORK_PER_ENTRY * cfn.num_table_entries
    if entry_work > budget:  # one network costs more than the whole budget (3-axis meshes of big models)
        return 1.0, None
    while work < budget and (max_rounds is None or rounds < max_rounds):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            out.clock_cut = True
            break
        rounds += 1
        bound = cfn.value(incumbent, node_price) + cfn.unit
        cap = _phase_wall_cap(budget - work)
        result = cfn.solve(node_price, bound, _CFN_BACKTRACKS, min(remaining, cap), seed)
        work += entry_work + _CFN_WORK_PER_BACKTRACK * result.backtracks
        if result.clock_cut and cap < remaining:
            work = budget  # the phase's share of the clock is spent (backtracks far dearer than counted)
        out.clock_cut = out.clock_cut or result.clock_cut
        lagrangian = (
            result.dual_bound - cfn.rounding_for(node_price) - (mu * limit if limit is not None else 0.0)
        )
        if out.lower_bound is None or lagrangian > out.lower_bound:
            out.lower_bound = lagrangian
        x = incumbent if result.solution is None else result.solution
        cost, peak, ok = core.evaluate(x)
        out.note(
            {
                "cfn_round": rounds,
                "mu": mu,
                "cost": cost,
                "peak": int(peak),
                "backtracks": result.backtracks,
                "secs": result.seconds,
                "optimal": result.optimal,
            },
            start,
        )
        if ok and cost < best_cost - 1e-9 * abs(best_cost):
            best_cost = out.keep(x, cost, start)
        if rounds == 1 and ok:
            out.optimal = result.optimal
            break  # the memory-free optimum fits: nothing to price
        if rounds == 1 and result.solution is not None and cost < INFINITE_COST:
            out.memory_free = result.solution
        if limit is None:
            break
        if not ok and result.solution is not None:
            best_cost, _ = _repair(core, x, seed + rounds, best_cost, deadline, start, out)
            work += _PRICE_REPAIR_WORK
        if out.best is not None:
            incumbent = np.asarray(out.best, dtype=np.int64)
        over = peak > limit
        unproven = 0 if result.optimal else unproven + 1
        # Handed on only once bracketed: from an unbracketed level the priced search, slower to respond
        # than toulbar2, overshoots (S at 240 s: 1.063 with the handoff after three rounds, 1.0205 without).
        handoff = _Price(shape, mu, x) if fits_at is not None and over_at is not None else None
        if unproven >= _CFN_UNPROVEN:
            break
        if rounds == 1:
            shape = np.maximum(_usage_profile(usage[first + x], lo, hi, moments) - limit, 0.0)
            mu = _CFN_PRICE_START * best_cost / limit
        else:
            if over:
                over_at = mu
            else:
                fits_at = mu
            if fits_at is None:
                mu *= 2.0
            elif over_at is None:
                mu /= 2.0
            elif fits_at / over_at < 1 + _CFN_PRICE_TOLERANCE:
                break  # the level is pinned down
            else:
                mu = float(np.sqrt(fits_at * over_at))
        node_price = _node_price(shape, mu, lo, hi)
    return (min(work / budget, 1.0) if budget > 0 else 1.0), handoff


def _phase_wall_cap(work_left: float) -> float:
    """Wall seconds a toulbar2 solve may take when its phase has `work_left` units: see _CFN_WALL_SLACK."""
    return max(_CFN_WALL_SLACK * work_left / _CFN_WORK_PER_SECOND, 1.0)


def _price_memory_restricted(
    core: _core.StrategyProblem,
    cfn: PricedCfn,
    settled: _Price,
    budget: float,
    seed: int,
    deadline: float,
    start: float,
    out: _Improved,
) -> float:
    """Priced optima over restricted domains: toulbar2 minimises cost + price x usage where every node keeps
    only the strategies of a few solutions (the last priced one, the incumbent, toulbar2's memory-free one)
    and its _RESTRICTED_CHEAPEST cheapest by priced node cost, below the incumbent's priced value. Starting
    from the priced phase's best round (`settled`), an extra price at the moments a priced optimum exceeds
    the limit grows until one fits; the fast path then repairs or polishes each, keeping the cheapest
    feasible in `out`.

    Why: on S the priced large-neighbourhood search stalls in a costly basin (1.0137 x best known at 1.0054 x
    the limit) that its regions cannot leave, while toulbar2 cannot close S's full priced networks. Over
    restricted domains toulbar2 combines whole solutions with model-wide changes: from that stall it found
    1.0036 at 1.0056, and raising the price at the violated moments reached a plan that the local search took
    to 1.0130 (the priced phase's own repairs: 1.022). Work is charged like _price_memory_cfn's (table
    entries of the restricted network, backtracks). Returns the share of `budget` used."""
    a = core.arrays()
    lo, hi = a.interval_start, a.interval_end
    first, usage = a.strategy_offset[:-1], a.node_usage
    limit = float(core.usage_limit)
    moments = int(hi.max()) + 1 if len(hi) else 1
    base = settled.node_price(lo, hi)
    extra = np.zeros_like(base)
    level = _RESTRICTED_EXTRA_START * settled.mu
    x, work, rounds = np.asarray(settled.solution, dtype=np.int64), 0.0, 0
    best_cost = float(core.evaluate(out.best)[0])
    while work < budget:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            out.clock_cut = True
            break
        rounds += 1
        node_price = base + extra
        incumbent = np.asarray(out.best, dtype=np.int64)
        candidates = [x, incumbent] + ([] if out.memory_free is None else [out.memory_free])
        domains = cfn.restricted_domains(node_price, candidates, _RESTRICTED_CHEAPEST)
        bound = min(cfn.value(x, node_price), cfn.value(incumbent, node_price)) + cfn.unit
        cap = _phase_wall_cap(budget - work)
        result = cfn.solve(node_price, bound, _RESTRICTED_BACKTRACKS, min(remaining, cap), seed, domains)
        work += (
            _CFN_WORK_PER_ENTRY * cfn.table_entries(domains)
            + _RESTRICTED_WORK_PER_FUNCTION * (core.num_nodes + core.num_edges)
            + _RESTRICTED_WORK_PER_BACKTRACK * result.backtracks
        )
        if result.clock_cut and cap < remaining:
            work = budget
        out.clock_cut = out.clock_cut or result.clock_cut
        # The bound lets toulbar2 return x itself (its priced value + 1): a moved solution is a new one.
        moved = (
            result.solution is not None
            and not np.array_equal(result.solution, x)
            and core.evaluate(result.solution)[0] < INFINITE_COST
        )
        if moved:
            x = result.solution
        cost, peak, ok = core.evaluate(x)
        if not moved and ok:
            break  # nothing cheaper at this price and no excess to price (A, M: x is this optimum)
        best_cost, repaired = _repair(core, x, seed + rounds, best_cost, deadline, start, out)
        work += _PRICE_REPAIR_WORK
        out.note(
            {
                "restricted_round": rounds,
                "level": level,
                "cost": cost,
                "peak": int(peak),
                "repaired": repaired,
                "backtracks": result.backtracks,
                "secs": result.seconds,
            },
            start,
        )
        if ok:
            level *= _RESTRICTED_EXTRA_FALL
            extra *= _RESTRICTED_EXTRA_DECAY
        else:
            excess = np.maximum(_usage_profile(usage[first + x], lo, hi, moments) - limit, 0.0)
            extra += _node_price(excess, level, lo, hi)
            level *= _RESTRICTED_EXTRA_GROW
    return min(work / budget, 1.0) if budget > 0 else 1.0


def _repair(
    core: _core.StrategyProblem,
    x: np.ndarray,
    seed: int,
    best_cost: float,
    deadline: float,
    start: float,
    out: _Improved,
) -> tuple[float, float]:
    """Repairs a priced solution to the usage limit with the fast path (memory repair from `x`, then local
    search) and keeps it in `out` when it is the cheapest feasible so far. Returns (the best cost so far,
    the repaired cost)."""
    remaining = max(deadline - time.perf_counter(), 0.05)
    h = _core.solve_heuristic(core, remaining, seed, 0, x)
    if h.feasible and h.cost < best_cost - 1e-9 * abs(best_cost):
        best_cost = float(h.cost)
        out.keep(h.solution, best_cost, start)
    return best_cost, float(h.cost)


def _node_price(shape: np.ndarray, mu: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per node live on [lo, hi): the sum over its moments of the price mu x shape / sum(shape) (the prices
    of all moments add up to mu, so the Lagrangian term of the limit is sum price x usage - mu x limit)."""
    total = shape.sum()
    if not total > 0:  # nothing over the limit (the solution was infeasible for its costs): no price
        return np.zeros(len(lo))
    prefix = np.concatenate([[0.0], np.cumsum(mu * shape / total)])
    return prefix[hi] - prefix[lo]


def _usage_profile(node_usage: np.ndarray, lo: np.ndarray, hi: np.ndarray, moments: int) -> np.ndarray:
    """Usage at every moment of nodes live on [lo, hi) with the given usages."""
    delta = np.zeros(moments + 1)
    np.add.at(delta, lo, node_usage)
    np.add.at(delta, hi, -node_usage)
    return np.cumsum(delta)[:moments]


def _solve_region(job: tuple) -> tuple | None:
    model, assignment, time_limit, seed, stats = job
    return (
        None
        if model.too_big
        else _solve_ilp(model, assignment, time_limit, seed, _LNS_MAX_NODES, stats, _LP_FIRST)
    )


def _lns_regions(
    gm: _core.GroupModel,
    assignment: np.ndarray,
    free: np.ndarray,
    size: int,
    count: int,
    rng: np.random.Generator,
    memory: bool = True,
) -> list[np.ndarray]:
    """`count` disjoint regions of about `size` groups (a later region drops the groups earlier ones took):
    with probability _TIME_WINDOW_SHARE the groups live nearest a moment where usage is near its peak (they
    trade memory there), else breadth-first over pairs from a root drawn in proportion to its regret or
    uniformly (equally often)."""
    regret = gm.regret(assignment)[free]
    taken = np.zeros(gm.num_groups, bool)
    regions = []
    for _ in range(count):
        weights = np.where(taken[free], 0.0, regret)
        kind = rng.random()
        if kind < _TIME_WINDOW_SHARE and gm.has_usage_limit and memory:
            region = gm.time_window(assignment, size, _TIME_WINDOW_SLACK, int(rng.integers(2**63)))
            region = region[~taken[region]].astype(np.int32)
            taken[region] = True
            regions.append(region)
            continue
        if kind < _TIME_WINDOW_SHARE + (1 - _TIME_WINDOW_SHARE) / 2 and weights.sum() > 0:
            root = int(rng.choice(free, p=weights / weights.sum()))
        else:
            choices = free[~taken[free]]
            if len(choices) == 0:
                break
            root = int(choices[rng.integers(len(choices))])
        region = gm.neighbourhood(root, size, int(rng.integers(2**63)))
        region = region[~taken[region]].astype(np.int32)
        taken[region] = True
        regions.append(region)
    return regions


def _ilp_work(model: _core.GroupIlp, stats: dict) -> float:
    """Deterministic work of one sub-ILP, in units of about a microsecond of this machine (HiGHS's setup and
    presolve scale with the nonzeros, the rest with simplex iterations and nodes)."""
    return (
        _WORK_PER_NONZERO * model.num_nonzeros
        + _WORK_PER_SIMPLEX * stats.get("simplex", 0)
        + _WORK_PER_LP_SIMPLEX * stats.get("lp_simplex", 0)
        + _WORK_PER_NODE * stats.get("nodes", 0)
        + _WORK_PER_MODEL
    )


def _solve_ilp(
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
        if stats["runs"] >= _LAZY_MAX_RUNS or time.perf_counter() >= deadline:
            stats["clock"] = stats["runs"] < _LAZY_MAX_RUNS
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
    if not _objective_matches(arrays.col_cost, model.objective_offset, values, info.objective_function_value):
        # HiGHS reported an objective its own solution does not have (1.16.0 returned the warm start as
        # "optimal" after presolve solved the model): keep the values, claim nothing about them.
        stats["mismatch"] = stats.get("mismatch", 0) + 1
        optimal = False
    return values, bound, optimal, False


def _objective_matches(col_cost: np.ndarray, offset: float, values: np.ndarray, reported: float) -> bool:
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


# HiGHS runs per lazily built model before giving up (each run adds the rows its solution violated).
_LAZY_MAX_RUNS = 8


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


def _as_solution(solution: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(solution)
    if arr.ndim != 1:
        raise ValueError(f"solution must be a 1-D sequence of strategy indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"solution must hold integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _as_pairs(values: np.ndarray | Sequence[Sequence[int]], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64) if len(values) else np.zeros((0, 2), np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{what} must have shape [n, 2], got {arr.shape}")
    return arr


def _flatten(rows: Sequence[Sequence[float]], dtype: type, what: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for k, row in enumerate(rows):
        a = np.asarray(row, dtype=dtype)
        if a.ndim != 1:
            raise ValueError(f"{what}[{k}] must be 1-D, got shape {a.shape}")
        arrays.append(a)
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    if arrays:
        offsets[1:] = np.cumsum([a.size for a in arrays])
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
    return np.ascontiguousarray(flat, dtype=dtype), offsets
