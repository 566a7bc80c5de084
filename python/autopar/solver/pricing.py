"""Memory pricing: the usage limit as a Lagrangian price per byte, minimised by the large-neighbourhood
search without memory rows, each priced solution repaired to the limit by the fast path.

Also the price itself (`Price`, `node_price`, `usage_profile`), which the toulbar2 pricing phases share.
The constants below were measured on the public problems A, M and S on the 2-core development machine
(docs/solver.md, "Defaults: how each was chosen"); each comment says how. Work is counted in the
large-neighbourhood search's units (lns.ilp_work, about a microsecond of one core each).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from autopar import _core
from autopar.solver import fast_path
from autopar.solver.lns import Objective, Search, lns
from autopar.solver.state import Incumbent

# Memory pricing (price_memory): share of the work budget, first price level (x best cost / usage limit),
# growth per round while the priced solution exceeds the limit (before / after it first fits), shrink per
# round once it fits, and work per round. Measured at 60 s, a geometric bisection of mu after the first fit
# did worse than this (S 1.066 vs 1.056, M 1.049 vs 1.046). A round's work was 2M of the earlier units, which
# the priced sub-ILPs of A, K, N and S (mostly integral LP relaxations) cost 0.27-0.31x in the fitted ones:
# 0.6M keeps their rounds.
# The rate counts the final search's units (lns.py) and stays at their first fit, 0.7M per second (the final
# search's until 2026-12-06), although the priced searches now run faster per unit: without HiGHS's
# feasibility jump (`python benchmarks/phase_walls.py --problems A,B,C,D,G,K,L,M,N,S --work-only`, seed 0,
# quiet 2-core AMD EPYC) at 1.37 (A), 1.43 (C), 1.49 (L), 1.67 (S), 1.79 (D), 1.89 (N) and 1.94M (K, M) units
# per wall second. Refitted to A's (1.35M), the longer priced search hands the restricted phase other prices:
# N's seed 2 fell from 0.9930 to 0.8868 while its seed 0 rose from 0.9850 to 0.9925 (all ten, seeds 0-2:
# docs/solver.md, "Work rates refitted without feasibility jump"), so it was not adopted.
PRICE_SHARE = 0.5
PRICE_WORK_PER_SECOND = 0.7e6
PRICE_START = 0.02
PRICE_GROW_FIRST = 1.5
PRICE_GROW = 1.2
PRICE_SHRINK = 1.1
PRICE_ROUND_WORK = 0.6e6
# Work charged per repair (the fast path after each round; not counted by lns.ilp_work): A's takes 0.4 s,
# S's 0.09 s, M's 0.13 s; a fixed charge keeps the phase deterministic and the slowest case within its share.
# PRICE_REPAIR_WORK is the toulbar2 phases' charge (1 s at their 1M units per second); PRICED_REPAIR_WORK
# the priced search's (0.5 s at its rate, as before the units were fitted).
PRICE_REPAIR_WORK = 1e6
PRICED_REPAIR_WORK = 0.5 * PRICE_WORK_PER_SECOND
# The pricing phase ends early when its own best repair of PRICE_PATIENCE rounds ago was already within this
# share of the best cost now (so the best gained less than that since, and the phase had caught up with it).
# Before, the rule compared the incumbent with itself: an incumbent cheaper than every priced repair so far
# (from an earlier phase) stopped the phase after 13 rounds while its own repairs were still falling (S
# after a longer toulbar2 phase: 13 rounds where it ran 50). K at 180 s on counted work: 0.9252 -> 0.9883
# (docs/solver.md, "The pricing stall rule").
PRICE_PATIENCE = 12
PRICE_MIN_GAIN = 1e-4
# Largest region (groups) of the priced search: its sub-ILPs have no memory rows and grow while they solve
# fast; on S, regions of 500-620 groups whose LP was fractional took 19-23 s of HiGHS (the clock then cut
# them), those of 270-330 groups 0.2-0.3 s.
PRICE_MAX_REGION = 300.0
# The phase's wall cap, as a multiple of its budget's seconds at PRICE_WORK_PER_SECOND (the toulbar2 phases'
# CFN_WALL_SLACK). A region's work is known only once it is solved, and on D the priced search's regions are
# the whole problem (113-116k columns): a MIP started with little budget left took 14-17 s, so the phase ran
# 41 s for its 21 s of budget and at the contest timeout the clock cut everything after it (the restricted
# phase and the final search got under a second). The cap bounds that; it is reported as a clock cut.
PRICE_WALL_SLACK = 1.5
# Time steps per node beyond which the steps are not the price's moments (moment_index). The public problems
# have 0.8-0.9 steps per node; an interval has two boundaries, so distinct times never exceed 2 per node.
MOMENT_SPREAD = 8


def price_memory(
    core: _core.StrategyProblem,
    gm: _core.GroupModel,
    best: np.ndarray,
    best_cost: float,
    budget: float,
    rng: np.random.Generator,
    deadline: float,
    incumbent: Incumbent,
    price: Price | None = None,
    bracketed: bool = True,
) -> PricingResult:
    """Lagrangian phase for memory-bound problems: the usage limit becomes a price per byte at the moments
    where it is exceeded, and large-neighbourhood search (no memory rows: small, mostly integral sub-ILPs)
    minimises cost + price x usage. After each round the priced solution is repaired to the limit by the
    fast path (memory repair, then local search) and kept in `incumbent` when it is the cheapest feasible so
    far.

    Why: when the limit binds at a few moments where thousands of long-lived nodes meet (S: 2,700 nodes live
    at the peak, most for the whole run), the limit is a knapsack over all of them; neighbourhoods of tens of
    groups with exact memory rows trade bytes only among themselves, while one price trades them globally.

    The price shape accumulates each round's normalised excess over the limit (moments that never exceed it
    stay free); its level mu grows by PRICE_GROW_FIRST until the priced solution first fits, then by
    PRICE_GROW while it is over the limit and falls by PRICE_SHRINK while it fits, so it settles where the
    priced optimum just fits. Rounds stop on counted work, or when the best repaired cost gained less than
    PRICE_MIN_GAIN over the last PRICE_PATIENCE rounds, or at the phase's wall cap (PRICE_WALL_SLACK times
    its budget's seconds; reported as a clock cut, and the work it did not use goes to the later phases).
    Returns the share of `budget` used and the price and priced solution of the round whose repair was
    cheapest (None when no round was priced), for restricted.price_memory_restricted to go on from.
    """
    a = core.arrays()
    first, usage = a.strategy_offset[:-1], a.node_usage

    def chosen_usage(full: np.ndarray) -> np.ndarray:
        return usage[first + full]

    lo, hi, moments = moment_index(a.interval_start, a.interval_end)
    limit = float(core.usage_limit)
    shape = np.zeros(moments)
    mu = PRICE_START * float(core.evaluate(best)[0]) / limit
    assignment = gm.encode(np.asarray(best, dtype=np.int64))
    search = Search(max_size=PRICE_MAX_REGION)
    rounds, seen_fit, history, own_best = 0, False, [], float("inf")
    settled, settled_cost, log = None, float("inf"), []
    node_price = np.zeros(len(first))  # round 0: no price, the memory-free optimum
    if price is not None and bracketed:  # go on from the toulbar2 phase's price and priced solution
        shape, mu, seen_fit = price.shape.copy(), price.mu, True  # bracketed: a priced solution fitted
        assignment = gm.encode(price.solution)
        rounds = 1
        node_price = price.node_price(lo, hi)
    elif price is not None:
        # Unbracketed: every toulbar2 priced optimum up to price.mu was over the limit. Start one step
        # above that level, from that priced optimum, and keep growing until a priced solution fits.
        shape, mu = price.shape / price.shape.sum(), price.mu * PRICE_GROW_FIRST
        assignment = gm.encode(price.solution)
        rounds = 1
        node_price = price_per_node(shape, mu, lo, hi)
    deadline = min(deadline, time.perf_counter() + PRICE_WALL_SLACK * budget / PRICE_WORK_PER_SECOND)
    while search.work < budget and time.perf_counter() < deadline:
        rounds += 1
        gm.set_memory_price(node_price)
        objective = Objective(core, chosen_usage, node_price)
        round_budget = min(search.work + PRICE_ROUND_WORK, budget)
        value = objective(gm.expand(assignment))
        assignment, _ = lns(gm, assignment, value, objective, round_budget, rng, deadline, incumbent, search)
        x = gm.expand(assignment)
        began = time.perf_counter()
        best_cost, repaired = fast_path.repair(
            core, x, int(rng.integers(2**31)), best_cost, deadline, incumbent
        )
        repair_secs = time.perf_counter() - began
        search.work += PRICED_REPAIR_WORK
        excess = np.maximum(usage_profile(chosen_usage(x), lo, hi, moments) - limit, 0.0)
        over = excess.sum() > 0
        log.append(
            {
                "price_round": rounds,
                "mu": mu,
                "over": bool(over),
                "repaired": repaired,
                "secs": repair_secs,
            }
        )
        incumbent.log(log[-1])
        own_best = min(own_best, repaired)  # the stall rule reads how far its own repairs have come
        history.append(own_best)
        if shape.sum() > 0 and repaired < settled_cost:
            settled, settled_cost = Price(shape.copy(), mu, x), repaired
        if (
            len(history) > PRICE_PATIENCE
            and history[-PRICE_PATIENCE - 1] - best_cost < PRICE_MIN_GAIN * best_cost
        ):
            break  # stalled (A: within 0.03% of best known after 5 rounds): exact memory rows do better now
        if not over and shape.sum() == 0:
            break  # the memory-free optimum fits: nothing to price
        if over:
            shape += excess / excess.sum()
        if rounds > 1:
            seen_fit = seen_fit or not over
            mu *= (PRICE_GROW if seen_fit else PRICE_GROW_FIRST) if over else 1.0 / PRICE_SHRINK
        node_price = price_per_node(shape, mu, lo, hi)
    gm.set_memory_price(np.zeros(0))
    if search.work < budget and time.perf_counter() >= deadline:
        search.clock_cut = True  # the run's deadline or the phase's wall cap ended it, not its work
    used = min(search.work / budget, 1.0) if budget > 0 else 1.0
    return PricingResult(used, settled, search.clock_cut, log, settled_cost)


@dataclass(frozen=True)
class PricingResult:
    """What the memory-pricing phase hands back.

    Attributes:
      used: share of its budget it used (a stalled phase leaves the rest to the later ones).
      settled: the price and priced solution of its cheapest repaired round, or None.
      clock_cut: the wall clock cut one of its searches short.
      rounds: one record per round (price level, over the limit, repaired cost), for tests and benchmarks.
      settled_cost: the repaired cost of the `settled` round (inf when there is none).
    """

    used: float
    settled: Price | None
    clock_cut: bool
    rounds: list[dict] = field(default_factory=list)
    settled_cost: float = float("inf")


@dataclass
class Price:
    """A memory price handed from one pricing phase to the next (a bracketed toulbar2 price to the priced
    large-neighbourhood search, its best round to the restricted phase): the shape over moments, its level
    mu, and the priced solution at that price."""

    shape: np.ndarray
    mu: float
    solution: np.ndarray

    def node_price(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return price_per_node(self.shape, self.mu, lo, hi)


def moment_index(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The node intervals [lo, hi) as indices into the price's moments, and how many moments there are.

    Contest files number their time steps from 0, and nearly every step is a boundary of some interval (96-99
    % on the ten public problems): those steps are the moments, as they come. Times below 0, or spread over
    more than MOMENT_SPREAD moments per node, are read as their distinct values instead (the same usage
    constraints, each once), so that the per-moment arrays stay the size of the problem: a file whose times
    started at 1e11 asked numpy for 745 GiB, one whose times were negative wrapped around the arrays."""
    if len(lo) == 0:
        return lo, hi, 1
    if int(lo.min()) >= 0 and int(hi.max()) + 1 <= MOMENT_SPREAD * len(lo):
        return lo, hi, int(hi.max()) + 1
    times, index = np.unique(np.concatenate([lo, hi]), return_inverse=True)
    return index[: len(lo)], index[len(lo) :], len(times)


def price_per_moment(shape: np.ndarray, mu: float) -> np.ndarray:
    """The price mu x shape / sum(shape) at every moment (the prices of all moments add up to mu, so the
    Lagrangian term of the limit is sum price x usage - mu x limit)."""
    total = shape.sum()
    if not total > 0:  # nothing over the limit (the solution was infeasible for its costs): no price
        return np.zeros(len(shape))
    return mu * shape / total


def sum_per_node(moment_price: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per node live on [lo, hi): the sum of its moments' prices."""
    prefix = np.concatenate([[0.0], np.cumsum(moment_price)])
    return prefix[hi] - prefix[lo]


def price_per_node(shape: np.ndarray, mu: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per node live on [lo, hi): the sum over its moments of price_per_moment(shape, mu)."""
    return sum_per_node(price_per_moment(shape, mu), lo, hi)


def usage_profile(node_usage: np.ndarray, lo: np.ndarray, hi: np.ndarray, moments: int) -> np.ndarray:
    """Usage at every moment of nodes live on [lo, hi) with the given usages."""
    delta = np.zeros(moments + 1)
    np.add.at(delta, lo, node_usage)
    np.add.at(delta, hi, -node_usage)
    return np.cumsum(delta)[:moments]
