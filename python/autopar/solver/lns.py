"""Large-neighbourhood search: regions of presolved groups freed and re-solved as HiGHS sub-ILPs.

Its work is counted, not timed (`ilp_work`: model size, simplex iterations, branch-and-bound nodes, in
units of about a microsecond of one core of the 2-core development machine), so a search the clock does
not cut is reproducible. The constants below were measured on the public problems M and S on that machine
(shared with other jobs, load 3-5), with two search threads; each comment says how.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from autopar import _core
from autopar.solver.highs import solve_ilp
from autopar.solver.problem import INFINITE_COST
from autopar.solver.state import Incumbent

# Work units (ilp_work) per second of the time limit for this search (the priced search has its own rate in
# the same units, pricing.py). The rate is the slowest final search's, A's, so that a search's share of the
# budget is at most about its share of the limit. Fitted first with HiGHS's feasibility-jump heuristic on
# (0.70M: A 0.70, N 0.82, K 0.86, D 0.97, C 1.32, S 1.41M units per wall second; docs/solver.md, "Counted work
# against the clock"); refitted without it (highs.py), seed 0 of all ten public problems, quiet 2-core AMD
# EPYC (`python benchmarks/phase_walls.py --problems A,B,C,D,G,K,L,M,N,S --work-only`): A 0.79, K 1.40,
# L 1.49, D 1.56, S 1.56, M 1.59, C 1.79 and N 2.41M (docs/solver.md, "Work rates refitted without
# feasibility jump").
LNS_WORK_PER_SECOND = 0.8e6
# Lazy memory rows for the large-neighbourhood sub-ILPs (see highs.solve_ilp). Off: measured on M and S
# regions of 60 groups, once identical rows are merged the memory rows are a small part of the model, and
# the extra HiGHS runs cost more (M: 3.3 s vs 1.9 s for six regions; S: 1.6 s vs 1.2 s).
LAZY_MEMORY = False
# Region models above this many nonzeros are not solved (the region shrinks): measured on S, a 976k-nonzero
# region took 24 s of HiGHS, cut by its time limit (not reproducible), for a few hundred thousand elsewhere.
LNS_MAX_NONZEROS = 400_000
# LNS sub-ILPs try their LP relaxation first (see highs.solve_ilp).
LP_FIRST = True
# Disjoint regions solved at once per search round (one HiGHS per thread).
LNS_THREADS = 2
# Share of regions drawn around a moment of near-peak usage (within TIME_WINDOW_SLACK of the peak).
TIME_WINDOW_SHARE = 0.3
TIME_WINDOW_SLACK = 0.01
# Groups in the first region (regions adapt afterwards).
LNS_START_SIZE = 40
# Work units of ilp_work, about a microsecond of one core each: fitted (non-negative least squares,
# weighted by 1/sqrt(time)) to the HiGHS time of 5,000 regions of the priced and the final searches of
# A, C, D, K, N and S (2026-12-02, quiet machine). A simplex iteration costs in proportion to the model's
# rows; a MIP (the LP relaxation was not integral) adds presolve and root work in proportion to its size.
# The fit brings the units per thread second of the twelve searches within 0.50-1.41M of each other; the
# earlier units (1 per nonzero, 350 per MIP and 60 per LP iteration, 10,000 per model) spread 0.47-3.47M,
# so that a share of the budget was 0.2-1.3x that share of the limit depending on the problem.
WORK_PER_NONZERO = 0.26
WORK_PER_MODEL = 3500.0
WORK_PER_SIMPLEX_PER_1000_ROWS = 11.0
WORK_PER_LP_SIMPLEX_PER_1000_ROWS = 1.7
WORK_PER_MIP_NONZERO = 0.75
WORK_PER_MIP_COLUMN = 12.7
WORK_PER_NODE = 1000.0
# HiGHS branch-and-bound node limit per neighbourhood (deterministic, unlike its time limit).
LNS_MAX_NODES = 200
# Wide regions (searches with memory rows only): WIDE_SHARE of the rounds free regions of Search.wide_size
# groups (starting at WIDE_START_FACTOR x LNS_START_SIZE; the whole problem once it is that big), in which
# each group may keep its strategy or take one of its WIDE_KEEP cheapest others (GroupModel.build's `keep`).
# Memory rows then hold a few columns per group instead of all of them (15-29 on D), so that such a region
# costs what a full one of a fraction of its groups does. Why (docs/solver.md, "Wide regions"): on D the
# full regions settle at 15-35 groups (the cap below their memory rows), and a final search stuck at
# 312.68e9 in 3 of 4 runs from one start needed 15 groups to change at once (a chain of layouts, the groups
# it shares pairs with, and one far away giving the memory back); no breadth-first or coupling-weighted
# draw of 20-40 groups from any of them held all 15 (300 draws per size). One wide region of 180 groups
# with WIDE_KEEP 2 (0.69M nonzeros, 3 s of HiGHS) took it to 309.40e9. WIDE_MAX_NONZEROS bounds such a
# model (D's whole problem at WIDE_KEEP 2: 0.96M, 4.4 s); its size adapts like the full regions'.
WIDE_SHARE = 0.5
# Wide rounds start only once this many regions in a row gained nothing: where the full regions keep paying
# (S, K), the search stays as it was; first measured with wide rounds from the start, S's seed 1 lost 0.9 %
# and K's three seeds 0.1-0.5 % while D's gained 1.2 % (docs/solver.md, "Wide regions").
WIDE_AFTER_STALE = 20
WIDE_KEEP = 2
WIDE_START_FACTOR = 4.0
WIDE_MAX_NONZEROS = 2_000_000
# A round that finds fewer non-empty regions than threads (a problem of a few hundred free groups, whose
# first region takes them all) leaves a core idle while its region is solved: the round is charged that
# core too, its longest region's work once more per idle thread. Without it, the priced searches of A, C
# and D (228-284 free groups, regions up to PRICE_MAX_REGION = 300) ran one region per round and took
# 1.3-2.0x the share of the limit their work was worth, and at the contest timeouts the clock cut the
# phases after them (docs/solver.md, "An idle core is charged").
CHARGE_IDLE_THREADS = True


class Objective:
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
class Search:
    """State a large-neighbourhood search carries between calls (owned by the phase that runs it): region
    size, counted work, the largest region allowed, and whether the wall clock cut some call short."""

    size: float = LNS_START_SIZE
    wide_size: float = WIDE_START_FACTOR * LNS_START_SIZE
    wide_exhausted: float | None = None  # the value at which a wide region of every free group gained nothing
    work: float = 0.0
    max_size: float = float("inf")
    clock_cut: bool = False


def lns(
    gm: _core.GroupModel,
    assignment: np.ndarray,
    value: float,
    objective: Objective,
    budget: float,
    rng: np.random.Generator,
    deadline: float,
    incumbent: Incumbent,
    search: Search,
) -> tuple[np.ndarray, float]:
    """Large-neighbourhood search: connected regions of groups (around a group whose strategy is locally
    regrettable, or a random one) are freed, everything else fixed, and each sub-ILP solved by HiGHS from the
    current solution; a result is accepted when `objective` (re-evaluated by the core) confirms it cheaper.
    Returns the final assignment and its objective value; improvements of the true objective go to
    `incumbent`, the work done and whether the clock cut the search to `search`.

    Each round frees LNS_THREADS disjoint regions and solves them on as many threads (HiGHS releases the
    GIL); the results are applied one after the other in region order, each re-checked on top of the
    previous, so the outcome does not depend on which thread finishes first. Regions grow while sub-ILPs are
    solved to optimality without gain and shrink when they hit the node limit. In a search with memory rows,
    WIDE_SHARE of the rounds are wide (_round_models), with a size of their own. The search stops when
    `search.work` (counted by ilp_work: model size, simplex iterations, nodes) reaches `budget`, so a run
    that the clock does not cut is reproducible."""
    free = gm.free_groups()
    stale = 0
    threads = max(1, min(LNS_THREADS, len(free) // 8))
    with ThreadPoolExecutor(threads) as executor:
        while search.work < budget and len(free):
            if time.perf_counter() >= deadline:
                search.clock_cut = True
                break
            wide = objective.memory and gm.has_usage_limit and WIDE_SHARE > 0 and stale >= WIDE_AFTER_STALE
            wide = (
                wide and rng.random() < WIDE_SHARE
            )  # drawn only then: until a stall, the search is as before
            # A whole problem solved wide to optimality stays so until the solution changes.
            wide = wide and not (search.wide_size >= len(free) and search.wide_exhausted == value)
            regions, models = _round_models(
                gm, assignment, free, search, threads, rng, objective.memory, wide
            )
            remaining = max(min(deadline - time.perf_counter(), 20.0), 0.05)
            jobs = [(m, assignment, remaining, int(rng.integers(2**31)), {}) for m in models]
            results = list(executor.map(solve_region, jobs))
            works = [ilp_work(model, st) for model, *_, st in jobs]
            search.work += round_charge(works, [len(r) for r in regions], threads)
            factors = []  # each region's resize: applied in turn, or for a wide round once
            for (model, *_, st), ilp in zip(jobs, results, strict=True):
                if st.get("clock"):
                    search.clock_cut = True
                if ilp is None:
                    factors.append(0.7)
                    continue
                values, _, optimal, _ = ilp
                # Only this region's groups change, on top of whatever the earlier regions changed.
                candidate = model.decode(values, assignment)
                full = gm.expand(candidate)
                new_value = objective(full)
                if new_value < value - 1e-9 * abs(value):
                    assignment, value = candidate, new_value
                    if objective.memory:
                        incumbent.keep(full, float(new_value))
                    stale = 0
                else:
                    stale += 1
                    if wide and optimal and model.num_free >= len(free):
                        search.wide_exhausted = value
                factors.append((1.15 if stale else 1.0) if optimal else 0.8)
            most = min(float(len(free)), search.max_size)
            if wide and factors:
                # Overlapping regions of one size: it changes once a round, by the smallest shrink if any.
                shrink = [f for f in factors if f < 1]
                search.wide_size = _resized(search.wide_size, min(shrink) if shrink else max(factors), most)
            elif not wide:
                for factor in factors:
                    search.size = _resized(search.size, factor, most)
    return assignment, value


def _round_models(
    gm: _core.GroupModel,
    assignment: np.ndarray,
    free: np.ndarray,
    search: Search,
    threads: int,
    rng: np.random.Generator,
    memory: bool,
    wide: bool,
) -> tuple[list[np.ndarray], list[_core.GroupIlp]]:
    """One round's regions and their models: full ones (disjoint, of search.size groups), or wide ones
    (search.wide_size groups narrowed to WIDE_KEEP others each). Wide regions may overlap (disjoint ones
    would leave the second thread the first's leftovers), the same region twice is solved once, and one of
    the problem's size is the whole problem."""
    if not wide:
        regions = lns_regions(gm, assignment, free, int(search.size), threads, rng, memory)
        return regions, [gm.build(assignment, r, LNS_MAX_NONZEROS, LAZY_MEMORY, memory) for r in regions]
    if search.wide_size >= len(free):
        regions = [free.astype(np.int32)]
    else:
        drawn = lns_regions(gm, assignment, free, int(search.wide_size), threads, rng, memory, False)
        regions = [r for i, r in enumerate(drawn) if not any(np.array_equal(r, q) for q in drawn[:i])]
    return regions, [
        gm.build(assignment, r, WIDE_MAX_NONZEROS, LAZY_MEMORY, True, WIDE_KEEP) for r in regions
    ]


def _resized(size: float, factor: float, most: float) -> float:
    """A region size scaled by `factor`: regions grow while solved to optimality without gain (up to `most`)
    and shrink when too big or cut by the node limit (down to 8 groups)."""
    return max(8.0, size * factor) if factor < 1 else min(size * factor, most)


def round_charge(works: list[float], sizes: list[int], threads: int) -> float:
    """The work one round is charged: its regions' work, and with CHARGE_IDLE_THREADS the longest region's
    once more for each thread left without a non-empty region (it idles while that region is solved)."""
    charge = float(sum(works))
    if CHARGE_IDLE_THREADS and works:
        idle = threads - sum(1 for size in sizes if size > 0)
        charge += max(idle, 0) * max(works)
    return charge


def solve_region(job: tuple) -> tuple | None:
    model, assignment, time_limit, seed, stats = job
    return (
        None
        if model.too_big
        else solve_ilp(model, assignment, time_limit, seed, LNS_MAX_NODES, stats, LP_FIRST)
    )


def lns_regions(
    gm: _core.GroupModel,
    assignment: np.ndarray,
    free: np.ndarray,
    size: int,
    count: int,
    rng: np.random.Generator,
    memory: bool = True,
    disjoint: bool = True,
) -> list[np.ndarray]:
    """`count` regions of about `size` groups, disjoint unless `disjoint` is False (a later region drops the
    groups earlier ones took):
    with probability TIME_WINDOW_SHARE the groups live nearest a moment where usage is near its peak (they
    trade memory there), else breadth-first over pairs from a root drawn in proportion to its regret or
    uniformly (equally often)."""
    regret = gm.regret(assignment)[free]
    taken = np.zeros(gm.num_groups, bool)
    regions = []
    for _ in range(count):
        weights = np.where(taken[free], 0.0, regret)
        kind = rng.random()
        if kind < TIME_WINDOW_SHARE and gm.has_usage_limit and memory:
            region = gm.time_window(assignment, size, TIME_WINDOW_SLACK, int(rng.integers(2**63)))
            region = region[~taken[region]].astype(np.int32)
            if len(region):
                taken[region] = disjoint
                regions.append(region)
                continue
            # The earlier regions took the whole window: draw a breadth-first region instead (an empty
            # one would leave its thread idle; until GroupModel.build changed, it built the whole problem).
        if kind < TIME_WINDOW_SHARE + (1 - TIME_WINDOW_SHARE) / 2 and weights.sum() > 0:
            root = int(rng.choice(free, p=weights / weights.sum()))
        else:
            choices = free[~taken[free]]
            if len(choices) == 0:
                break
            root = int(choices[rng.integers(len(choices))])
        region = gm.neighbourhood(root, size, int(rng.integers(2**63)))
        region = region[~taken[region]].astype(np.int32)
        taken[region] = disjoint
        regions.append(region)
    return regions


def ilp_work(model: _core.GroupIlp, stats: dict) -> float:
    """Deterministic work of one sub-ILP, in units of about a microsecond of one core (fitted: see the
    constants): the model's size, its simplex iterations priced by its rows, its nodes, and when the LP
    relaxation was not integral the MIP's presolve and root work, priced by its size."""
    rows_k = model.num_rows / 1000.0
    mip = 0.0 if stats.get("lp_integral") else 1.0
    return (
        WORK_PER_MODEL
        + WORK_PER_NONZERO * model.num_nonzeros
        + rows_k * WORK_PER_SIMPLEX_PER_1000_ROWS * stats.get("simplex", 0)
        + rows_k * WORK_PER_LP_SIMPLEX_PER_1000_ROWS * stats.get("lp_simplex", 0)
        + WORK_PER_NODE * stats.get("nodes", 0)
        + mip * (WORK_PER_MIP_NONZERO * model.num_nonzeros + WORK_PER_MIP_COLUMN * model.num_cols)
    )
