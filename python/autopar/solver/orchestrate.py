"""`solve`: the order of the phases, and what each hands the next.

    presolve (C++ GroupModel) -> fast path (fast_path) -> one of
      no usage limit:  toulbar2 memory-free round -> conditional rounds (memory_free) -> whole ILP (exact)
                       or large-neighbourhood search (lns)
      small whole ILP: toulbar2 memory-free round (memory_free) -> toulbar2 priced optima (cfn_pricing)
                       -> whole ILP (exact)
      otherwise:       toulbar2 priced optima (cfn_pricing) -> memory pricing (pricing) -> restricted priced
                       optima (restricted) -> large-neighbourhood search (lns)

Each phase gets its share of the counted work the earlier ones left, and returns what it learnt (work used,
bound, proof, whether the clock cut it, a price to go on from) as a value; the only state they share is the
`Incumbent` (state.py) that `solve` owns. The one tuning constant here, NEGLIGIBLE_GAP, was measured on the
intra-op pass's problems: toulbar2's proofs over rounded costs leave gaps of that order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autopar import _core
from autopar.solver import cfn_pricing, exact, fast_path, lns, memory_free, pricing, restricted
from autopar.solver.cfn import PricedCfn
from autopar.solver.fast_path import FastPath
from autopar.solver.problem import INFINITE_COST, StrategyProblem
from autopar.solver.solution import Solution, proven_optimal
from autopar.solver.state import Incumbent

# A relative gap below which no search continues: toulbar2's proofs over rounded costs leave gaps of this
# order (the rounding of each table entry) where the optimum was found.
NEGLIGIBLE_GAP = 1e-6
# The largest time limit and budget (about 3 years): toulbar2's options and the platform's timers overflow
# far beyond it (a limit of 1e12 s failed with "timestamp out of range", an infinite one converting to int).
MAX_SECONDS = 1e8
# Seeds reach the C++ core as uint64 and grow by the round number: 2**63 leaves room.
MAX_SEED = 2**63
# The usage-limited search stops by this share of the time limit (the rest is the margin of its last
# sub-ILP and of building the answer).
SEARCH_CLOCK_SHARE = 0.97
# When no toulbar2 priced optimum fitted, the priced search starts above the highest level toulbar2 tried
# (from that priced optimum) instead of from its own first level. Off: measured on counted work (seed 0,
# `benchmarks/iopddl.py --work-only`), K 0.923 -> 0.856 (the priced search first fits at level 162, keeps
# gaining, and leaves the restricted phase one round instead of four), N 0.9325 -> 0.9333.
HAND_OVER_FLOOR = False
# Each phase before the final search ends, at the latest, when it has used its share of the work left's share
# of the clock left (its work share / the run's work share not yet used, times the seconds to the deadline):
# a phase whose work takes longer than counted then cannot leave the phases after it less than their share
# of the clock. It binds only on a run the clock cuts (on pace, the work ends each phase first), and is
# reported as a clock cut. Why: D is cut by the clock in every run; its toulbar2 round and priced search took
# 1.3x their charge, and its final search, the one phase that gets past its priced plan, got 4 s of its
# 13.7 s of work (`benchmarks/phase_walls.py --problems D`). docs/solver.md, "The clock shared as the work".
PHASE_CLOCK_SHARE = True
# On the exact path, toulbar2's priced optima (repaired to the limit) run between the memory-free round and
# HiGHS, so that HiGHS starts from a plan near the optimum: when it does not prove the whole ILP within its
# share, its start is the answer. Measured on every problem that takes the exact path (the contest's B and G,
# benchmarks/intra_op_problems.py's _mem50 problems on 8 and 2x4 meshes) at their default limits: B and G
# stay proven optimal (2.6 s and 2.4 s of 60 s and 120 s, against 2.2 s and 1.8 s without); GPT 2x4 goes
# from 12.7 % above its bound to 0.017 %, MoE 2x4 from 5.8 % to 2.6 %, Wide-ResNet 2x4 from 5.8 % to
# 1.0 %; the 8-device problems stay proven optimal. docs/solver.md, "Priced optima before the exact path".
EXACT_PRICED_FIRST = True


def _infeasible(h: FastPath, limit: int | None) -> tuple[int, str]:
    """(the peak to report, the message) for a problem the fast path proved infeasible: the smallest peak
    any finite-cost solution can have (`h` holds the least-usage solution with the limit lifted), exactly
    when that solution's cost is finite, as a lower bound otherwise; what the user must raise the limit to.
    """
    lowest = int(h.peak_usage)
    over = f"above the usage limit {limit}"
    if limit is not None and lowest > limit:
        if h.cost < INFINITE_COST:
            return lowest, f"infeasible: the smallest achievable peak usage is {lowest}, {over}"
        return lowest, f"infeasible: every finite-cost solution peaks at {lowest} or more, {over}"
    if limit is not None and h.min_peak_usage > limit:
        # Only strategies over the limit make the lower peaks possible: forbidden pairs rule out the rest.
        bound = int(h.min_peak_usage)
        return bound, (
            f"infeasible: within the usage limit {limit}, forbidden strategy pairs leave no solution "
            f"that peaks below {bound}"
        )
    return lowest, "infeasible: every strategy of some node is forbidden or over the usage limit"


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
    if not 0 < time_limit <= MAX_SECONDS:
        raise ValueError(f"time_limit must be > 0 and at most {MAX_SECONDS:g} seconds, got {time_limit}")
    budget = time_limit if budget is None else float(budget)
    if not 0 < budget <= MAX_SECONDS:
        raise ValueError(f"budget must be > 0 and at most {MAX_SECONDS:g} seconds, got {budget}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < MAX_SEED:
        raise ValueError(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
    start = time.perf_counter() if clock_start is None else float(clock_start)
    core = problem._core
    gm = _core.GroupModel(core) if exact else None
    presolve_infeasible = gm is not None and gm.infeasible
    start_solution = None if initial is None else np.ascontiguousarray(initial, dtype=np.int64)
    if start_solution is not None and start_solution.shape != (core.num_nodes,):
        raise ValueError(f"initial: expected {core.num_nodes} strategies, got shape {start_solution.shape}")
    h, clock_cut = fast_path.run(
        core, time_limit, seed, max_rounds, exact, presolve_infeasible, start_solution, start
    )
    best, first = h.solution, h.time_to_first_feasible
    limit = core.usage_limit
    if not h.feasible and (presolve_infeasible or (limit is not None and h.min_peak_usage > limit)):
        peak, msg = _infeasible(h, limit)
        elapsed = time.perf_counter() - start
        return Solution(best, float(h.cost), peak, None, "infeasible", None, elapsed, msg)
    lower_bound, optimal, msg = None, False, "fast path (greedy + local search)"
    best_time = float(h.time_to_best)
    trace = [(best_time, float(h.cost))] if h.feasible else []
    if gm is not None:
        incumbent = Incumbent(start)
        verdict = improve(core, gm, h, time_limit, budget, int(seed), incumbent, work_limit, candidates)
        if incumbent.best is not None:
            best, best_time = incumbent.best, incumbent.best_time
            if first < 0:
                first = incumbent.best_time
        lower_bound, optimal, msg = verdict.lower_bound, verdict.optimal, verdict.message
        clock_cut = clock_cut or verdict.clock_cut
        trace += incumbent.trace
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


@dataclass(frozen=True)
class Verdict:
    """What the phases after the fast path concluded (their solutions are in the `Incumbent`).

    Attributes:
      lower_bound: the best proven lower bound, or None.
      optimal: the best solution is proven optimal, or no solution is proven to exist (then nothing was
        kept in the incumbent).
      clock_cut: the wall clock stopped some phase before its work budget ran out.
      message: one line saying how the result was obtained.
    """

    lower_bound: float | None = None
    optimal: bool = False
    clock_cut: bool = False
    message: str = "fast path (greedy + local search)"


def improve(
    core: _core.StrategyProblem,
    gm: _core.GroupModel,
    fast: FastPath,
    time_limit: float,
    seconds: float,
    seed: int,
    incumbent: Incumbent,
    work_limit: float | None,
    candidates: Sequence[np.ndarray] = (),
) -> Verdict:
    """The phases after the fast path, over the presolved groups, with `seconds` of counted work: toulbar2
    first on a problem without a usage limit; else the exact path when the whole reduced ILP is small
    enough (proves optimality or gives a bound); else, from a feasible fast-path solution, the pricing
    phases and the large-neighbourhood search. Solutions go to `incumbent`, the rest is the verdict."""
    assignment = gm.encode(fast.solution) if fast.feasible else None
    if assignment is None:
        assignment = np.zeros(gm.num_groups, np.int32)
    whole = gm.build(assignment, gm.free_groups().astype(np.int32), exact.MAX_ILP_NONZEROS)
    deadline = incumbent.start + time_limit
    if not gm.has_usage_limit:
        return _without_usage_limit(core, gm, whole, fast, seconds, seed, deadline, incumbent, candidates)
    if not whole.too_big:
        return _exact_path(core, gm, whole, fast, seconds, seed, deadline, incumbent)
    if not fast.feasible:
        return Verdict()
    deadline = incumbent.start + time_limit * SEARCH_CLOCK_SHARE
    return _usage_limited_search(core, gm, assignment, fast, seconds, seed, deadline, incumbent, work_limit)


def _usage_limited_search(
    core: _core.StrategyProblem,
    gm: _core.GroupModel,
    assignment: np.ndarray,
    fast: FastPath,
    seconds: float,
    seed: int,
    deadline: float,
    incumbent: Incumbent,
    work_limit: float | None,
) -> Verdict:
    """A usage-limited problem too big for the exact path, from a feasible fast-path solution: toulbar2
    priced optima, memory pricing, restricted priced optima, then the large-neighbourhood search with exact
    memory rows. Each phase gets its share of what the earlier ones left (they stop early when they
    converge)."""
    best_cost = float(fast.cost)
    rng = np.random.default_rng(seed)
    budget = work_limit if work_limit is not None else lns.LNS_WORK_PER_SECOND * seconds
    message = "large-neighbourhood search (presolve + HiGHS sub-ILPs)"
    share, price, cfn, settled, settled_cost, floor = 0.0, None, None, None, float("inf"), None
    # The run's share toulbar2's late rounds used (CFN_UNTIL_FIT), and the part of it not yet in `share`:
    # owed by the final LNS ("final"), or by the phases after toulbar2's, the last first ("last first": each
    # phase's share is capped at what is left once it is paid). "priced": in `share`, from the priced search.
    if cfn_pricing.CFN_LATE_PAID_BY not in ("priced", "last first", "final"):
        raise ValueError(f"cfn_pricing.CFN_LATE_PAID_BY: unknown {cfn_pricing.CFN_LATE_PAID_BY!r}")
    late_share, late_owed, cap_by_debt = 0.0, 0.0, cfn_pricing.CFN_LATE_PAID_BY == "last first"
    lower_bound, clock_cut, memory_free_solution = None, False, None
    if cfn_pricing.CFN_SHARE > 0:
        cfn = PricedCfn(core)
        # Without a usage limit only the memory-free round runs, and it is the whole search.
        cfn_share = cfn_pricing.CFN_SHARE if gm.has_usage_limit else 1.0
        cfn_budget = cfn_share * (work_limit if work_limit is not None else 1e6 * seconds)
        incumbent.log("toulbar2 priced optima")
        cfn_deadline = _phase_deadline(deadline, cfn_share, 1.0)
        priced = cfn_pricing.price_memory_cfn(
            core, fast.solution, best_cost, cfn_budget, seed, cfn_deadline, incumbent, lower_bound, cfn
        )
        share, price, lower_bound = cfn_share * priced.used, priced.price, priced.lower_bound
        late_share = cfn_share * priced.late_used
        if cfn_pricing.CFN_LATE_PAID_BY == "priced":
            share += late_share  # spent: every later phase's share is of what is left
        else:
            late_owed = late_share
        settled, settled_cost, floor = priced.best_round, priced.best_round_cost, priced.floor
        clock_cut, memory_free_solution = clock_cut or priced.clock_cut, priced.memory_free
        message = "toulbar2 priced optima + large-neighbourhood search (presolve + HiGHS sub-ILPs)"
        if priced.optimal:
            message = "toulbar2 (memory-free optimum fits the usage limit): proven optimal"
            return Verdict(lower_bound, True, clock_cut, message)
        if incumbent.best is not None:
            best_cost = float(core.evaluate(incumbent.best)[0])
            assignment = gm.encode(incumbent.best)
    if gm.has_usage_limit and pricing.PRICE_SHARE > 0:
        message = "toulbar2 priced optima + memory pricing + large-neighbourhood search"
        rate = work_limit if work_limit is not None else pricing.PRICE_WORK_PER_SECOND * seconds
        # Its share of the run; the late toulbar2 rounds' share (CFN_LATE_PAID_BY "priced") comes out of it,
        # so that when it spends its budget the later phases get the same budgets as without those rounds;
        # "last first" caps it at what is left once they are paid.
        price_part = (1 - share) * pricing.PRICE_SHARE
        if cfn_pricing.CFN_LATE_PAID_BY == "priced" and late_share > 0:
            price_part = max((1 - share + late_share) * pricing.PRICE_SHARE - late_share, 0.0)
        if cap_by_debt:
            price_part = min(price_part, max(1 - share - late_owed, 0.0))
        price_budget = price_part * rate
        # Without a bracketed price the priced search starts where it did without toulbar2 (from the fast
        # path's solution, its first price set by that cost); the best solution so far is in `incumbent`.
        incumbent.log({"memory pricing": price_part})
        bracketed = price is not None
        if price is None and HAND_OVER_FLOOR:
            price = floor
        price_deadline = _phase_deadline(deadline, price_part, 1 - share - late_owed)
        priced_lns = pricing.price_memory(
            core, gm, fast.solution, best_cost, price_budget, rng, price_deadline, incumbent, price, bracketed
        )
        clock_cut = clock_cut or priced_lns.clock_cut
        # The restricted phase starts from the priced search's cheapest repaired round, or from toulbar2's
        # cheapest fitting priced optimum when that costs less (before, toulbar2's rounds were never used).
        if priced_lns.settled is not None and (settled is None or priced_lns.settled_cost < settled_cost):
            settled, settled_cost = priced_lns.settled, priced_lns.settled_cost
        # A stalled pricing phase leaves its time to the exact-memory search.
        share += price_part * priced_lns.used
    if (
        cfn is not None
        and settled is not None
        and incumbent.best is not None
        and restricted.RESTRICTED_SHARE > 0
    ):
        message = "toulbar2 priced optima + memory pricing + restricted priced optima + LNS"
        rate = work_limit if work_limit is not None else 1e6 * seconds
        restricted_part = (1 - share) * restricted.RESTRICTED_SHARE
        if cap_by_debt:
            restricted_part = min(restricted_part, max(1 - share - late_owed, 0.0))
        restricted_budget = restricted_part * rate
        incumbent.log("restricted priced optima")
        restricted_deadline = _phase_deadline(deadline, restricted_part, 1 - share - late_owed)
        narrowed = restricted.price_memory_restricted(
            core, cfn, settled, restricted_budget, seed, restricted_deadline, incumbent, memory_free_solution
        )
        clock_cut = clock_cut or narrowed.clock_cut
        share += restricted_part * narrowed.used
    if incumbent.best is not None:
        best_cost = float(core.evaluate(incumbent.best)[0])
        assignment = gm.encode(incumbent.best)
    search = lns.Search()
    lns_budget = max(1 - share - late_owed, 0.0) * budget
    # Shares of the run: the final search's, the late rounds', and the work beyond the budget (only "final").
    overrun = max(share + late_owed - 1, 0.0)
    incumbent.log({"large-neighbourhood search": lns_budget / budget, "late": late_share, "over": overrun})
    objective = lns.Objective(core)
    lns.lns(gm, assignment, best_cost, objective, lns_budget, rng, deadline, incumbent, search)
    return Verdict(lower_bound, False, clock_cut or search.clock_cut, message)


def _phase_deadline(deadline: float, part: float, left: float) -> float:
    """When a phase with `part` of the run's work ends at the latest, `left` of the run's work being unused
    and `deadline` the run's: PHASE_CLOCK_SHARE."""
    if not PHASE_CLOCK_SHARE or left <= 0:
        return deadline
    now = time.perf_counter()
    return min(deadline, now + max(deadline - now, 0.0) * min(part / left, 1.0))


def _without_usage_limit(
    core: _core.StrategyProblem,
    gm: _core.GroupModel,
    whole: _core.GroupIlp,
    fast: FastPath,
    seconds: float,
    seed: int,
    deadline: float,
    incumbent: Incumbent,
    candidates: Sequence[np.ndarray] = (),
) -> Verdict:
    """A problem without a usage limit (the intra-op pass's default) is a weighted CSP, toulbar2's problem:
    1. toulbar2 on the whole network, when the budget affords posting it: it proves most such problems
       optimal (an MLP step on 2x2x2 in 0.05 s, where HiGHS needs 2.7 s for the same proof);
    2. otherwise (or unproven) toulbar2 over conditional domains, round after round (conditional_rounds);
    3. the whole ILP, if HiGHS can afford it, or the large-neighbourhood search with what is left."""
    cfn = PricedCfn(core, priced=False)
    units = 1e6 * seconds
    free_budget = memory_free.FREE_CFN_SHARE * units
    if memory_free.free_post_work(cfn) >= free_budget:
        # A network too large for its share: posting it (and its TRW-S bound, the only bound worth reading
        # on such problems) is worth most of the budget; the conditional rounds then start from its answer.
        free_budget = memory_free.FREE_CFN_MAX_SHARE * units
    free = memory_free.memory_free_round(core, cfn, fast, free_budget, seed, deadline, incumbent, None)
    used, lower_bound, clock_cut = free.work, free.lower_bound, free.clock_cut
    if free.optimal or _gap_closed(core, fast, incumbent, lower_bound):
        return Verdict(lower_bound, free.optimal, clock_cut, "toulbar2 (no usage limit): proven optimal")
    message = "fast path (greedy + local search)"
    if incumbent.best is not None or fast.feasible:
        share = memory_free.CONDITIONAL_SHARE * (units - used)
        work, cut = memory_free.conditional_rounds(
            core, cfn, fast, candidates, share, seed, deadline, incumbent
        )
        used, clock_cut = used + work, clock_cut or cut
        message = "toulbar2 over conditional domains (no usage limit)"
        if _gap_closed(core, fast, incumbent, lower_bound):
            return Verdict(lower_bound, False, clock_cut, message)
    left = max(seconds - used / 1e6, 0.0)
    if not whole.too_big and whole.num_nonzeros <= exact.EXACT_NONZEROS_PER_SECOND * seconds:
        ilp = exact.highs_exact(core, gm, whole, fast, left, seed, deadline, incumbent, lower_bound)
        return Verdict(ilp.lower_bound, ilp.optimal, clock_cut or ilp.clock_cut, ilp.message)
    best = incumbent.best if incumbent.best is not None else (fast.solution if fast.feasible else None)
    if best is None or left <= 0:
        return Verdict(lower_bound, False, clock_cut, message)
    message = "toulbar2 + large-neighbourhood search (presolve + HiGHS sub-ILPs)"
    cost = float(core.evaluate(best)[0])
    rng = np.random.default_rng(seed)
    budget = lns.LNS_WORK_PER_SECOND * left
    search = lns.Search()
    lns.lns(gm, gm.encode(best), cost, lns.Objective(core), budget, rng, deadline, incumbent, search)
    return Verdict(lower_bound, False, clock_cut or search.clock_cut, message)


def _exact_path(
    core: _core.StrategyProblem,
    gm: _core.GroupModel,
    whole: _core.GroupIlp,
    fast: FastPath,
    seconds: float,
    seed: int,
    deadline: float,
    incumbent: Incumbent,
) -> Verdict:
    """A usage-limited problem whose whole reduced ILP is small enough: toulbar2's memory-free optimum first
    (when it fits the limit and is proven, nothing else is needed), then the whole ILP with HiGHS."""
    cfn = PricedCfn(core, priced=False)
    free_budget = cfn_pricing.CFN_SHARE * 1e6 * seconds
    free = memory_free.memory_free_round(core, cfn, fast, free_budget, seed, deadline, incumbent, None)
    if free.optimal:
        message = "exact path (toulbar2: the memory-free optimum fits the usage limit): proven optimal"
        return Verdict(free.lower_bound, True, free.clock_cut, message)
    lower_bound, clock_cut = free.lower_bound, free.clock_cut
    start = incumbent.best if incumbent.best is not None else (fast.solution if fast.feasible else None)
    if EXACT_PRICED_FIRST and start is not None:
        priced = cfn_pricing.price_memory_cfn(
            core,
            start,
            float(core.evaluate(start)[0]),
            cfn_pricing.CFN_SHARE * cfn_pricing.CFN_WORK_PER_SECOND * seconds,
            seed,
            _phase_deadline(deadline, cfn_pricing.CFN_SHARE, 1.0),
            incumbent,
            lower_bound,
            memory_free_solution=free.solution,
        )
        lower_bound, clock_cut = priced.lower_bound, clock_cut or priced.clock_cut
    ilp = exact.highs_exact(core, gm, whole, fast, seconds, seed, deadline, incumbent, lower_bound)
    return Verdict(ilp.lower_bound, ilp.optimal, clock_cut or ilp.clock_cut, ilp.message)


def _gap_closed(
    core: _core.StrategyProblem, fast: FastPath, incumbent: Incumbent, lower_bound: float | None
) -> bool:
    """Whether the bound is within NEGLIGIBLE_GAP of the best solution so far: searching on cannot pay (the
    status is still decided by the exact rule in `solve`)."""
    best = incumbent.best if incumbent.best is not None else (fast.solution if fast.feasible else None)
    if best is None or lower_bound is None:
        return False
    cost = float(core.evaluate(best)[0])
    return lower_bound >= cost - NEGLIGIBLE_GAP * abs(cost)
