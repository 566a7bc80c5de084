"""The C++ stage DP (Alpa's formulation) on cases small enough to check by hand or by brute force."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from autopar import _core

INF = math.inf


def stages(out: _core.StageDpResult) -> list[tuple]:
    """(start, end_exclusive, submesh, config, cost) of each chosen stage."""
    return [(st.start_layer, st.end_layer, st.submesh, st.config, st.cost) for st in out.stages]


def table(num_layers: int, num_submeshes: int, num_configs: int, fn) -> list[float]:
    """Flat [start][end][submesh][config] table of fn(start, end_inclusive, submesh, config)."""
    return [
        fn(i, j, s, c) if j >= i else INF
        for i in range(num_layers)
        for j in range(num_layers)
        for s in range(num_submeshes)
        for c in range(num_configs)
    ]


def brute_force(num_layers, num_devices, batches, devices, configs, cost, succ):
    """Every split of the layers, every submesh/config per stage; all devices used."""
    best = INF
    m = len(devices)

    def at(i, j, s, c):
        return ((i * num_layers + j) * m + s) * configs + c

    for k in range(num_layers):
        for cuts in itertools.combinations(range(1, num_layers), k):
            bounds = [0, *cuts, num_layers]
            ranges = list(zip(bounds, bounds[1:], strict=False))
            for subs in itertools.product(range(m), repeat=len(ranges)):
                if sum(devices[s] for s in subs) != num_devices:
                    continue
                for cfgs in itertools.product(range(configs), repeat=len(ranges)):
                    costs, ok = [], True
                    for idx, ((a, b), s, c) in enumerate(zip(ranges, subs, cfgs, strict=True)):
                        if succ[at(a, b - 1, s, c)] < len(ranges) - 1 - idx:
                            ok = False
                        costs.append(cost[at(a, b - 1, s, c)])
                    if ok and all(math.isfinite(x) for x in costs):
                        best = min(best, sum(costs) + (batches - 1) * max(costs))
    return best


def test_uniform_layers_split_evenly_over_two_devices():
    # 4 identical layers of 1 s each on one device; a 2-device submesh halves them. Cluster: 2 devices.
    # One stage on 2 devices: 2 s/micro-batch -> 2 + 7*2 = 16. Two stages of 2 layers on 1 device each:
    # 2 + 2 + 7*2 = 18. So the single stage on the 2-device mesh wins.
    cost = table(4, 2, 1, lambda i, j, s, c: (j - i + 1) * (1.0 if s == 0 else 0.5))
    succ = [8] * len(cost)
    out = _core.solve_stages(4, 2, 8, [1, 2], 1, cost, succ)
    assert out.feasible
    assert stages(out) == [(0, 4, 1, 0, 2.0)]
    assert out.latency == pytest.approx(16.0)


def test_pipeline_wins_when_data_parallel_scales_badly():
    # The 2-device mesh only gives a 1.25x speedup: 4 layers -> 3.2 s, latency 3.2 * 8 = 25.6;
    # two stages of 2 layers on 1 device: 2 + 2 + 7 * 2 = 18.
    cost = table(4, 2, 1, lambda i, j, s, c: (j - i + 1) * (1.0 if s == 0 else 0.8))
    out = _core.solve_stages(4, 2, 8, [1, 2], 1, cost, [8] * len(cost))
    assert stages(out) == [(0, 2, 0, 0, 2.0), (2, 4, 0, 0, 2.0)]
    assert out.latency == pytest.approx(18.0)


def test_unequal_layers_get_unequal_stages():
    # Layer costs 3, 1, 1, 1 on single devices: the balanced split is [0] | [1, 2, 3].
    layer = [3.0, 1.0, 1.0, 1.0]
    cost = table(4, 1, 1, lambda i, j, s, c: sum(layer[i : j + 1]))
    out = _core.solve_stages(4, 2, 4, [1], 1, cost, [8] * len(cost))
    assert [(a, b) for a, b, *_ in stages(out)] == [(0, 1), (1, 4)]
    assert out.latency == pytest.approx(3 + 3 + 3 * 3)


def test_memory_limits_succeeding_stages():
    # Config 0 is fast but fits only when it is the last stage (0 succeeding stages); config 1 is slower
    # and always fits. The first of two stages must take config 1.
    cost = table(2, 1, 2, lambda i, j, s, c: (j - i + 1) * (1.0 if c == 0 else 1.5))
    succ = table(2, 1, 2, lambda i, j, s, c: 0 if c == 0 else 4)
    out = _core.solve_stages(2, 2, 2, [1], 2, cost, [int(x) if math.isfinite(x) else 0 for x in succ])
    assert stages(out) == [(0, 1, 0, 1, 1.5), (1, 2, 0, 0, 1.0)]


def test_infeasible_when_nothing_fits():
    cost = table(2, 1, 1, lambda i, j, s, c: 1.0)
    out = _core.solve_stages(2, 2, 2, [1], 1, cost, [-1] * len(cost))
    assert not out.feasible
    assert stages(out) == []


def test_devices_must_all_be_used():
    # Only 3-device submeshes on a 4-device cluster: no plan uses every device.
    cost = table(2, 1, 1, lambda i, j, s, c: 1.0)
    out = _core.solve_stages(2, 4, 2, [3], 1, cost, [4] * len(cost))
    assert not out.feasible


def test_imbalance_tolerance_forbids_lopsided_stages():
    layer = [4.0, 1.0, 1.0]
    cost = table(3, 1, 1, lambda i, j, s, c: sum(layer[i : j + 1]))
    free = _core.solve_stages(3, 2, 1, [1], 1, cost, [8] * len(cost))
    # With one micro-batch the single-device-per-stage plan [4] | [1,1] costs 6; tolerance 0.2 asks every
    # stage to cost at least 4 / 1.2, which [1, 1] (2 s) violates, so no two-stage plan remains.
    strict = _core.solve_stages(3, 2, 1, [1], 1, cost, [8] * len(cost), imbalance_tolerance=0.2)
    assert free.feasible and not strict.feasible


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force(seed):
    rng = random.Random(seed)
    num_layers, num_devices = rng.randint(1, 4), rng.choice([2, 4])
    devices = [1, 2] if num_devices == 2 else [1, 2, 4]
    configs = rng.randint(1, 2)
    batches = rng.randint(1, 6)
    base = [rng.uniform(0.5, 3.0) for _ in range(num_layers)]
    speedup = {1: 1.0, 2: rng.uniform(1.0, 2.0), 4: rng.uniform(1.5, 4.0)}
    cost = table(
        num_layers,
        len(devices),
        configs,
        lambda i, j, s, c: round(sum(base[i : j + 1]) / speedup[devices[s]] * (1 + 0.3 * c), 6),
    )
    succ = [rng.randint(0, 3) for _ in cost]
    out = _core.solve_stages(num_layers, num_devices, batches, devices, configs, cost, succ)
    expected = brute_force(num_layers, num_devices, batches, devices, configs, cost, succ)
    if math.isinf(expected):
        assert not out.feasible
    else:
        assert out.latency == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_layers": 0}, "num_layers must be positive"),
        ({"submesh_devices": []}, "submesh_devices is empty"),
        ({"cost": [1.0]}, "cost has 1 entries"),
        ({"num_micro_batches": 0}, "num_micro_batches must be positive"),
    ],
)
def test_bad_input_raises_value_error(kwargs, message):
    args = {
        "num_layers": 2,
        "num_devices": 2,
        "num_micro_batches": 2,
        "submesh_devices": [1],
        "num_configs": 1,
        "cost": [1.0] * 4,
        "max_succeeding_stages": [1] * 4,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        _core.solve_stages(**args)
