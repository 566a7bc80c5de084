"""toulbar2 priced optima: exact optima of cost + price x usage over the whole problem (no usage limit),
the price bracketed and bisected, each optimum repaired to the limit by the fast path.

The constants below were measured on the public problems A, M, S and L on the 2-core development machine;
each comment says how. Work is counted in units of about a microsecond of one core: table entries posted
and toulbar2 backtracks, never seconds, so a run the clock does not cut is reproducible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from autopar import _core
from autopar.solver import fast_path
from autopar.solver.cfn import CfnResult, PricedCfn
from autopar.solver.pricing import PRICE_REPAIR_WORK, Price, moment_index, price_per_node, usage_profile
from autopar.solver.problem import INFINITE_COST
from autopar.solver.state import Incumbent

# toulbar2 pricing (price_memory_cfn): share of the time limit, backtracks per priced solve, first price
# level (x best cost / usage limit), and the relative width of the price bracket at which it stops. Work is
# charged per backtrack (M 2 ms, S 6-17 ms; S stops on the proof rule instead) and per round for posting the
# network and toulbar2's preprocessing of it (CFN_WORK_PER_KEPT_ENTRY, CFN_WORK_PER_FUNCTIONAL_ENTRY). The
# phase ends after CFN_UNPROVEN rounds in a row without a proof. CFN_WORK_PER_ENTRY is the restricted
# phase's posting charge per table entry (restricted.py).
CFN_SHARE = 0.3
CFN_BACKTRACKS = 1000
CFN_PRICE_START = 0.05
CFN_PRICE_TOLERANCE = 0.01
CFN_WORK_PER_ENTRY = 1.0
CFN_WORK_PER_BACKTRACK = 3000.0
CFN_UNPROVEN = 3
# A round's charge before its backtracks, per table entry of the peeled network and per entry of its
# functional tables (PricedCfn.peeled_entries). Why: peeling, posting and toulbar2's preprocessing (no
# backtrack) of the full networks took 1.7 s (M) to 14.6 s (A) per round, and A's is mostly toulbar2's
# elimination of functional variables (1.5 s with it off). Charged at 1.0 per entry of the network before
# peeling, as until 2026-12-04, the rounds ran 0.34x (M) to 2.4x (A) their charge: C's third round, which
# its bracket needed, was not affordable in its share. Fitted by relative least squares on the eight public
# problems where the phase runs (A, C, D, K, L, M, N, S; B and G are solved before it): every round within
# 0.80-1.23x its charge (`python benchmarks/cfn_rounds.py`; docs/solver.md, "What a toulbar2 round costs").
CFN_WORK_PER_KEPT_ENTRY = 0.8
CFN_WORK_PER_FUNCTIONAL_ENTRY = 2.1
# Peeling alone, per table entry of the network before peeling (0.04-0.12 us on the same eight): the least a
# round is charged, which only binds where peeling leaves toulbar2 little or nothing (a forest is solved by
# peeling), so that such rounds still cost work.
CFN_PEEL_WORK_PER_ENTRY = 0.1
# Whether the phase goes on past the CFN_UNPROVEN stop while no priced optimum has fitted, until one fits
# (it then stops). Those late rounds hand on only their repaired solutions, through the incumbent: not
# their bracket, fitting optimum or level; their work is reported apart (`late_used`) and charged to the
# phase named by CFN_LATE_PAID_BY. Off: measured on counted work (seed 0, `benchmarks/iopddl.py --work-only`
# with it on), paid by the final search: K 0.9883 -> 0.99977, N 0.9700 -> 0.9860, S 0.98293 -> 0.98155 (on
# S the late rounds only use up the final search's budget; on K twice that budget, so K overran its own).
# docs/solver.md, "toulbar2 until a priced optimum fits".
CFN_UNTIL_FIT = False
# Which phase pays for those late rounds' work (orchestrate.py). "priced": the priced search, whose job
# (finding a level whose priced optimum fits) they do instead; its budget loses their share of the run, and
# the later phases get their usual shares of what is left. "last first": the phases after toulbar2's, the
# last first (each one's share is capped at what is left once the late rounds are paid: the final search
# pays first, then the restricted phase, then the priced one). Both keep the run within its budget.
# "final": the final large-neighbourhood search only (measured first; a run whose late rounds cost more
# than that search's share did more work than its budget). With the option on (seeds 0 and 1, first runs),
# "priced": K 0.9573 / 0.9447, N 0.9742 / 0.9809, S 0.9850 / 0.9803; "last first": K 0.99977 (a rerun:
# the first was cut by the clock) / 0.9424, N 0.9860 / 0.9887, S 0.98155 / 0.9638 (option off: K 0.9883 /
# 0.9240, N 0.9700 / 0.9645, S 0.98293 / 0.97198), so the option stays off. docs/solver.md, "Keeping the
# run within its budget".
CFN_LATE_PAID_BY = "last first"
# Work units per wall second of the toulbar2 phases (their budgets are seconds x this), and the slack of the
# wall-clock cap on each of their solves: a solve may take at most this many times the seconds its phase has
# left in work. Why: toulbar2's backtracks cost 2 ms on M and 6-17 ms on S but 0.6 s on L, whose second
# priced solve (266 backtracks, charged 0.8 s of work) took 160 s of its 180 s. The cap only binds on such
# problems (and is then reported as a clock cut): elsewhere the counted work ends the phase first.
CFN_WORK_PER_SECOND = 1e6
CFN_WALL_SLACK = 1.5


@dataclass(frozen=True)
class CfnPricingResult:
    """What the toulbar2 pricing phase hands back.

    Attributes:
      used: share of its budget it used.
      price: the bracketed price and its priced solution for the priced search to go on from, or None.
      optimal: toulbar2 proved the memory-free optimum, and it fits the limit: the problem is solved.
      lower_bound: the best Lagrangian lower bound of its rounds (or the one it was given), or None.
      memory_free: toulbar2's memory-free solution (round 0) when it found one of finite cost.
      clock_cut: the wall clock stopped one of its solves before its backtrack limit.
      rounds: one record per round (price level, cost, peak, backtracks, and toulbar2's priced value of its
        solution and dual bound, in cost units), for tests and benchmarks.
      best_round: the price and priced optimum of its cheapest priced round (mu > 0) whose optimum fits
        the limit, or None: a start for the restricted phase (an over-limit round at a low level is not
        one: the restricted phase's extra price starts from its level, and on K took a round of 166 s
        from toulbar2's level 1.25 without fitting).
      best_round_cost: that optimum's cost (inf when there is none).
      floor: when no priced optimum fitted, the price and priced optimum of the highest level tried (all
        over the limit), or None: a level the priced search need not start below.
      late_used: share of its budget used by the rounds after the CFN_UNPROVEN stop (CFN_UNTIL_FIT), which
        `used` leaves out: the caller charges it to a later phase.
    """

    used: float
    price: Price | None
    optimal: bool = False
    lower_bound: float | None = None
    memory_free: np.ndarray | None = None
    clock_cut: bool = False
    rounds: list[dict] = field(default_factory=list)
    best_round: Price | None = None
    best_round_cost: float = float("inf")
    floor: Price | None = None
    late_used: float = 0.0


def price_memory_cfn(
    core: _core.StrategyProblem,
    best: np.ndarray,
    best_cost: float,
    budget: float,
    seed: int,
    deadline: float,
    incumbent: Incumbent,
    lower_bound: float | None = None,
    cfn: PricedCfn | None = None,
    max_rounds: int | None = None,
    memory_free_solution: np.ndarray | None = None,
) -> CfnPricingResult:
    """Memory pricing with exact priced optima: toulbar2 (solver/cfn.py) minimises cost + price x usage over
    the whole problem, without the usage limit, and the fast path repairs each priced optimum to the limit.

    Round 0 has no price: when the memory-free optimum fits the limit (or there is none) and toulbar2 proves
    it optimal, it is the optimum of the problem (`optimal`). Otherwise the price shape is the normalised
    excess of the memory-free optimum over the limit, and its level mu is bracketed (doubled while the priced
    optimum is over the limit, halved while it fits) and then bisected geometrically, so the priced optima
    approach the limit from both sides. Every priced optimum with toulbar2's dual bound D gives the
    Lagrangian lower bound D - mu x limit (less the rounding of its costs): the best is `lower_bound`.

    Why: measured on M, toulbar2 proves the memory-free optimum (0.9187 x best known) in 54 s where the
    large-neighbourhood search stops at 0.986, and its priced optima repair to 1.0045 in 17 s where the
    priced large-neighbourhood search settles at 1.046. Given `memory_free_solution` (the exact path's
    memory-free round found it), round 0 is not solved again: it only sets the price's shape. Rounds are
    charged by table entries and backtracks (deterministic, about a microsecond of this machine per unit)
    against `budget`. The phase stops early when CFN_UNPROVEN rounds in a row hit their backtrack limit (S:
    toulbar2 then returns priced solutions no better than the large-neighbourhood search's, at ten times
    its cost). Improvements go to `incumbent`; the result holds the share of `budget` used and the price
    reached (None when nothing was priced), for the priced search to go on from.
    """
    a = core.arrays()
    first, usage = a.strategy_offset[:-1], a.node_usage
    lo, hi, moments = moment_index(a.interval_start, a.interval_end)
    limit = None if core.usage_limit is None else float(core.usage_limit)
    cfn = PricedCfn(core) if cfn is None else cfn
    reference = np.asarray(best, dtype=np.int64)  # the solution whose priced value bounds each solve
    shape, mu, fits_at, over_at = np.zeros(moments), 0.0, None, None
    node_price, work, rounds, unproven, handoff = None, 0.0, 0, 0, None
    best_round, best_round_cost, floor = None, float("inf"), None
    optimal, memory_free, clock_cut, log = False, None, False, []
    late_from = None  # the work done when the CFN_UNPROVEN stop was passed by (CFN_UNTIL_FIT), else None
    if CFN_WORK_PER_ENTRY * cfn.num_table_entries > budget:
        # The network is too large to peel and post in the whole budget (3-axis meshes of big models).
        return CfnPricingResult(1.0, None, lower_bound=lower_bound)
    entry_work = round_work(cfn)
    if entry_work > budget:  # one round costs more than the whole budget
        return CfnPricingResult(1.0, None, lower_bound=lower_bound)
    while work < budget and (max_rounds is None or rounds < max_rounds):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            clock_cut = True
            break
        if work + entry_work > budget:
            # Posting and preprocessing alone cost more than the phase has left: the round is not started
            # (before, it was started and cut by the phase's wall cap at once, its work lost), and what is
            # left goes to the later phases.
            incumbent.log({"cfn_skipped": (work + entry_work) / budget})
            break
        rounds += 1
        cap = phase_wall_cap(budget - work)
        if rounds == 1 and memory_free_solution is not None:
            # Solved before (the exact path): toulbar2 would solve the same unpriced network again.
            result = CfnResult(np.asarray(memory_free_solution), None, -np.inf, False, 0, False, 0.0)
        else:
            bound = cfn.value(reference, node_price) + cfn.unit
            result = cfn.solve(node_price, bound, CFN_BACKTRACKS, min(remaining, cap), seed)
            work += entry_work + CFN_WORK_PER_BACKTRACK * result.backtracks
        if result.clock_cut and cap < remaining:
            work = budget  # the phase's share of the clock is spent (backtracks far dearer than counted)
        clock_cut = clock_cut or result.clock_cut
        lagrangian = (
            result.dual_bound - cfn.rounding_for(node_price) - (mu * limit if limit is not None else 0.0)
        )
        if np.isfinite(lagrangian) and (lower_bound is None or lagrangian > lower_bound):
            lower_bound = lagrangian
        x = reference if result.solution is None else result.solution
        cost, peak, ok = core.evaluate(x)
        log.append(
            {
                "cfn_round": rounds,
                "mu": mu,
                "cost": cost,
                "peak": int(peak),
                "backtracks": result.backtracks,
                "secs": result.seconds,
                "optimal": result.optimal,
                "value": result.value,
                "dual": result.dual_bound,
            }
        )
        incumbent.log(log[-1])
        if ok and cost < best_cost - 1e-9 * abs(best_cost):
            best_cost = incumbent.keep(x, cost)
        if rounds == 1 and ok:
            optimal = result.optimal
            break  # the memory-free optimum fits: nothing to price
        if rounds == 1 and result.solution is not None and cost < INFINITE_COST:
            memory_free = result.solution
        if limit is None:
            break
        if not ok and result.solution is not None:
            best_cost, _ = fast_path.repair(core, x, seed + rounds, best_cost, deadline, incumbent)
            work += PRICE_REPAIR_WORK
        if incumbent.best is not None:
            reference = np.asarray(incumbent.best, dtype=np.int64)
        over = peak > limit
        unproven = 0 if result.optimal else unproven + 1
        if late_from is not None:
            if not over:
                break  # a late round's priced optimum fits: its repairs are in the incumbent, nothing else
        elif rounds > 1:
            # This round's fit or excess is recorded before the handoff is decided, so that a bracket
            # closed by the phase's last round is handed on (it used to be read one round late).
            if over:
                over_at = mu
            else:
                fits_at = mu
            if ok and result.solution is not None and cost < best_round_cost:
                best_round, best_round_cost = Price(shape.copy(), mu, x), cost
        # Handed on only once bracketed: from an unbracketed level the priced search, slower to respond
        # than toulbar2, overshoots (S at 240 s: 1.063 with the handoff after three rounds, 1.0205 without).
        if late_from is None:
            handoff = Price(shape, mu, x) if fits_at is not None and over_at is not None else None
            if rounds > 1 and fits_at is None and over:
                floor = Price(shape, mu, x)  # the highest level so far, and every priced optimum was over
        if unproven >= CFN_UNPROVEN and late_from is None:
            if not CFN_UNTIL_FIT or fits_at is not None:
                break
            late_from = work  # no priced optimum fitted yet: go on until one does
        if rounds == 1:
            shape = np.maximum(usage_profile(usage[first + x], lo, hi, moments) - limit, 0.0)
            mu = CFN_PRICE_START * best_cost / limit
        else:
            if fits_at is None:
                mu *= 2.0
            elif over_at is None:
                mu /= 2.0
            elif fits_at / over_at < 1 + CFN_PRICE_TOLERANCE:
                break  # the level is pinned down
            else:
                mu = float(np.sqrt(fits_at * over_at))
        node_price = price_per_node(shape, mu, lo, hi)
    late_work = 0.0 if late_from is None else work - late_from
    used = min((work - late_work) / budget, 1.0) if budget > 0 else 1.0
    late_used = min(late_work / budget, 1.0 - used) if budget > 0 else 0.0
    return CfnPricingResult(
        used,
        handoff,
        optimal,
        lower_bound,
        memory_free,
        clock_cut,
        log,
        best_round,
        best_round_cost,
        None if fits_at is not None else floor,
        late_used,
    )


def round_work(cfn: PricedCfn) -> float:
    """A toulbar2 round's charge before its backtracks: posting the full network and preprocessing it."""
    kept, functional = cfn.peeled_entries()
    posting = CFN_WORK_PER_KEPT_ENTRY * kept + CFN_WORK_PER_FUNCTIONAL_ENTRY * functional
    return max(posting, CFN_PEEL_WORK_PER_ENTRY * cfn.num_table_entries)


def phase_wall_cap(work_left: float, budget: float | None = None, elapsed: float = 0.0) -> float:
    """Wall seconds a toulbar2 solve may take when its phase has `work_left` units: see CFN_WALL_SLACK. Given
    the phase's `budget` and the wall seconds it has `elapsed`, also what is left of CFN_WALL_SLACK times the
    whole phase's seconds, so that rounds each within their own cap cannot add up past it."""
    cap = CFN_WALL_SLACK * work_left / CFN_WORK_PER_SECOND
    if budget is not None:
        cap = min(cap, CFN_WALL_SLACK * budget / CFN_WORK_PER_SECOND - elapsed)
    return max(cap, 1.0)
