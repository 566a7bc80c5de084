"""The solver on small problems of many shapes (tests/solver_cases.py `varied_problem`: forbidden costs,
follow chains, limits from far too low to none), each checked against brute force: a status never
overclaims, and what it claims is what the problem's own evaluator says."""

import numpy as np
import pytest

from autopar.solver import solve
from solver_cases import brute_force, varied_problem

# Reads the wall clock (time limits, clock cuts): runs with no other test beside it (tests/conftest.py).
pytestmark = pytest.mark.alone


@pytest.mark.parametrize("seed", range(40))
def test_every_claim_holds_on_a_problem_of_a_random_shape(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    p = varied_problem(rng, n=int(rng.choice([3, 6, 9])))
    sol = solve(p, time_limit=2.0, seed=seed % 3)
    cost, peak, ok = p.evaluate(sol.strategies)
    assert ok == sol.feasible
    if sol.status == "optimal":
        assert sol.lower_bound == pytest.approx(sol.cost)
    if np.prod([p.num_strategies(i) for i in range(p.num_nodes)]) > 50_000:
        return  # too many for brute force: the claims above are what can be checked
    expected = brute_force(p)
    if expected is None:
        assert sol.status == "infeasible", sol.message
        if p.usage_limit is not None and "above the usage limit" in sol.message:
            assert sol.peak_memory > p.usage_limit  # the smallest peak it reports is over the limit
        return
    assert (sol.status, cost, peak) == ("optimal", sol.cost, sol.peak_memory), sol.message
    assert sol.cost == pytest.approx(expected) and sol.lower_bound == pytest.approx(expected)
