"""Restricted priced optima: toulbar2 over a few strategies per node (those of known solutions and the
cheapest by priced cost), with an extra price at the moments a priced optimum exceeds the limit.

The constants below were measured on the public problems S and A on the 2-core development machine (S at
240 s, seeds 0 and 1, for the share and the price schedule; K and S, seeds 0-2, for the slack rule); each
comment says how. Work is counted like the toulbar2 pricing phase's (cfn_pricing): table entries, posted
cost functions and backtracks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from autopar import _core
from autopar.solver import fast_path
from autopar.solver.cfn import PricedCfn
from autopar.solver.cfn_pricing import CFN_WORK_PER_ENTRY, phase_wall_cap
from autopar.solver.pricing import (
    PRICE_REPAIR_WORK,
    Price,
    moment_index,
    price_per_moment,
    sum_per_node,
    usage_profile,
)
from autopar.solver.problem import INFINITE_COST
from autopar.solver.state import Incumbent

# Restricted priced optima (price_memory_restricted): share of the time limit (of what the earlier phases
# left), backtracks per toulbar2 solve, cheapest strategies per node added to the candidates' in each
# node's domain, the first extra price at the violated moments (x the priced phase's level), its growth while
# over the limit, and its fall and the decay of the accumulated extra price after a fit. Measured on S from
# the priced phase's best round: 12 cheapest and 5,000 backtracks close or nearly close in 11-17 s each;
# 40 cheapest did no better within 20,000 backtracks. S at 240 s, seeds 0 / 1: share 0.6 with fall 0.5 and
# decay 0.7 gave 1.0152 / 1.0263; share 0.8 1.0058 / 1.0297; share 0.8 with 0.75 and 0.85 1.0050 / 1.0283.
RESTRICTED_SHARE = 0.8
RESTRICTED_BACKTRACKS = 5000
RESTRICTED_CHEAPEST = 12
RESTRICTED_EXTRA_START = 0.25
RESTRICTED_EXTRA_GROW = 1.5
RESTRICTED_EXTRA_FALL = 0.75
RESTRICTED_EXTRA_DECAY = 0.85
# After every round, the price at each moment is multiplied by (usage / limit) ** RESTRICTED_SLACK_POWER at
# the priced optimum (1 where it is at or over the limit; 0: off). The start's price lies mostly where the
# limit has slack (on N and S 70-73 % of it at moments below 0.9 of the limit: it accumulates every earlier
# round's excess), and without this it never falls there. Powers 0 / 2 / 8 on K and S, seeds 0-2, counted
# work (benchmarks/iopddl.py --work-only): K 0.9991 / 1.0193 / 1.0086, 0.9991 / 1.0124 / 1.0086, 0.9811 /
# 1.0026 / 1.0141; S 0.9894 / 0.9768 / 0.9755, 0.9916 / 0.9932 / 0.9962, 1.0007 / 0.9828 / 0.9982. Power 8
# moves the price too far between rounds on K; 2 loses nowhere below 0.99 (docs/solver.md, "Prices at
# moments with slack").
RESTRICTED_SLACK_POWER = 2.0
# Work per cost function posted to toulbar2 (building the restricted domains and tables in Python): A's
# 90k functions take 4 s per round, S's 67k about 3 s.
RESTRICTED_WORK_PER_FUNCTION = 50.0
# Work per backtrack of a restricted solve: S's take 1.0-2 ms each (full networks: 6-17 ms), K's 0.5-1 ms and
# N's 6-8 ms, with networks of the same size (measured before cfn_peel: toulbar2's per-node elimination made
# N's dear); the phase's own wall cap (see the loop) bounds an overrun.
RESTRICTED_WORK_PER_BACKTRACK = 1500.0


@dataclass(frozen=True)
class RestrictedResult:
    """What the restricted phase hands back: the share of its budget used, whether the wall clock stopped
    it or one of its solves, and one record per round (for tests and benchmarks)."""

    used: float
    clock_cut: bool
    rounds: list[dict] = field(default_factory=list)


def price_memory_restricted(
    core: _core.StrategyProblem,
    cfn: PricedCfn,
    settled: Price,
    budget: float,
    seed: int,
    deadline: float,
    incumbent: Incumbent,
    memory_free: np.ndarray | None = None,
) -> RestrictedResult:
    """Priced optima over restricted domains: toulbar2 minimises cost + price x usage where every node keeps
    only the strategies of a few solutions (the last priced one, the incumbent, toulbar2's `memory_free`)
    and its RESTRICTED_CHEAPEST cheapest by priced node cost, below the incumbent's priced value. Starting
    from the priced phase's best round (`settled`), an extra price at the moments a priced optimum exceeds
    the limit grows until one fits, and the price falls at the moments where it has slack (relax_slack); the
    fast path then repairs or polishes each, keeping the cheapest feasible in `incumbent` (which must hold
    a solution).

    Why: on S the priced large-neighbourhood search stalls in a costly basin (1.0137 x best known at 1.0054 x
    the limit) that its regions cannot leave, while toulbar2 cannot close S's full priced networks. Over
    restricted domains toulbar2 combines whole solutions with model-wide changes: from that stall it found
    1.0036 at 1.0056, and raising the price at the violated moments reached a plan that the local search took
    to 1.0130 (the priced phase's own repairs: 1.022). Work is charged like cfn_pricing.price_memory_cfn's
    (table entries of the restricted network, backtracks); a round whose posting alone costs more than the
    phase has left is not started, so the phase's share counts all it did and the rest goes to the final
    search (D: a second round that returned its start took the phase past its budget, and that search was
    left 0.07 of the run)."""
    a = core.arrays()
    lo, hi, moments = moment_index(a.interval_start, a.interval_end)
    first, usage = a.strategy_offset[:-1], a.node_usage
    limit = float(core.usage_limit)
    base = price_per_moment(settled.shape, settled.mu)  # per moment, so that it can fall at one alone
    extra = np.zeros_like(base)
    level = RESTRICTED_EXTRA_START * settled.mu
    x, work, rounds = np.asarray(settled.solution, dtype=np.int64), 0.0, 0
    best_cost = float(core.evaluate(incumbent.best)[0])
    clock_cut, log = False, []
    began = time.perf_counter()
    while work < budget:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            clock_cut = True
            break
        rounds += 1
        node_price = sum_per_node(base + extra, lo, hi)
        best = np.asarray(incumbent.best, dtype=np.int64)
        candidates = [x, best] + ([] if memory_free is None else [memory_free])
        domains = cfn.restricted_domains(node_price, candidates, RESTRICTED_CHEAPEST)
        posting = CFN_WORK_PER_ENTRY * cfn.table_entries(domains) + RESTRICTED_WORK_PER_FUNCTION * (
            core.num_nodes + core.num_edges
        )
        if work + posting > budget:
            # Posting the network alone costs more than the phase has left: the round is not started, and
            # what is left goes to the final search (before, it ran and its overrun went uncounted).
            incumbent.log({"restricted_skipped": (work + posting) / budget})
            break
        bound = min(cfn.value(x, node_price), cfn.value(best, node_price)) + cfn.unit
        # The phase as a whole, not only each solve, is capped: N's restricted solves cost 6-8 ms per
        # backtrack where S's cost 1-2 and K's 0.6 (charged 1.5), and four of them, each within its own cap,
        # took 120 s of wall for 59 s of counted work.
        cap = phase_wall_cap(budget - work, budget, time.perf_counter() - began)
        result = cfn.solve(node_price, bound, RESTRICTED_BACKTRACKS, min(remaining, cap), seed, domains)
        spent = posting + RESTRICTED_WORK_PER_BACKTRACK * result.backtracks
        work += spent
        if result.clock_cut and cap < remaining:
            work = budget
        clock_cut = clock_cut or result.clock_cut
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
        best_cost, repaired = fast_path.repair(core, x, seed + rounds, best_cost, deadline, incumbent)
        work += PRICE_REPAIR_WORK
        log.append(
            {
                "restricted_round": rounds,
                "level": level,
                "cost": cost,
                "peak": int(peak),
                "repaired": repaired,
                "backtracks": result.backtracks,
                "nodes": result.nodes,
                "posting": posting,
                "work": spent + PRICE_REPAIR_WORK,  # the round's charge: posting, backtracks, repair
                "secs": result.seconds,
            }
        )
        incumbent.log(log[-1])
        profile = usage_profile(usage[first + x], lo, hi, moments)
        base, extra = relax_slack(base, profile, limit), relax_slack(extra, profile, limit)
        if ok:
            level *= RESTRICTED_EXTRA_FALL
            extra *= RESTRICTED_EXTRA_DECAY
        else:
            extra += price_per_moment(np.maximum(profile - limit, 0.0), level)
            level *= RESTRICTED_EXTRA_GROW
    used = min(work / budget, 1.0) if budget > 0 else 1.0
    return RestrictedResult(used, clock_cut, log)


def relax_slack(moment_price: np.ndarray, profile: np.ndarray, limit: float) -> np.ndarray:
    """The price per moment after a round whose priced optimum used `profile`: unchanged where usage is at or
    over `limit`, times (usage / limit) ** RESTRICTED_SLACK_POWER below it (a Lagrangian price belongs where
    the constraint binds; this lets it leave the moments where it does not)."""
    if RESTRICTED_SLACK_POWER <= 0:
        return moment_price
    return moment_price * np.clip(profile / limit, 0.0, 1.0) ** RESTRICTED_SLACK_POWER
