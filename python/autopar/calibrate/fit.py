"""Fitting measured collective times to the cost model's formulas (`autopar.cost.MeshModel`).

The cost model prices a collective of `num_bytes` over a group of `n` devices as
`latency * alpha + factor(n) * num_bytes * beta`, with the factors and latency multipliers below (Alpa's
formulas; the small latency multipliers are its tie-breakers). Fitting the measured times to exactly that
form gives the alpha and beta under which the model reproduces them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# kind -> (latency multiplier, bytes factor of the group size n), as in autopar.cost.MeshModel. `num_bytes`
# is per device: the buffer of an all-reduce or all-to-all, an all-gather's output, a reduce-scatter's input.
FORMULAS: dict[str, tuple[float, Callable[[int], float]]] = {
    "all_reduce": (1.01, lambda n: 2.0 * (n - 1) / n),
    "all_gather": (1.1, lambda n: (n - 1) / n),
    "reduce_scatter": (1.001, lambda n: (n - 1) / n),
    "all_to_all": (1.001, lambda n: 1.5 * (n - 1) / n / n),
}


def nonnegative_line(x: Sequence[float], t: Sequence[float]) -> tuple[float, float]:
    """(a, b) >= 0 minimising sum(((a + b x_i) - t_i) / t_i)^2: least squares on relative errors, so that
    1 KiB and 64 MiB samples (times 4 orders of magnitude apart) both count. With both free the optimum
    is the unconstrained one when it is non-negative, else it lies on a = 0 or b = 0 (a 2-variable NNLS)."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if x.shape != t.shape or x.size == 0 or np.any(t <= 0):
        raise ValueError("need as many positive times as sizes, at least one")
    w = 1.0 / t
    design = np.stack([w, w * x], axis=1)
    target = np.ones_like(t)  # (t_i * w_i)

    def residual(a: float, b: float) -> float:
        return float(np.sum((design @ np.array([a, b]) - target) ** 2))

    candidates = []
    if x.size >= 2:
        (a, b), *_ = np.linalg.lstsq(design, target, rcond=None)
        if a >= 0 and b >= 0:
            candidates.append((float(a), float(b)))
    a_only = float(np.sum(w) / np.sum(w * w))  # b = 0
    candidates.append((a_only, 0.0))
    if np.any(x > 0):
        b_only = float(np.sum(w * x) / np.sum((w * x) ** 2))  # a = 0
        candidates.append((0.0, b_only))
    return min(candidates, key=lambda ab: residual(*ab))


def fit_collective(
    kind: str, group: int, num_bytes: Sequence[float], seconds: Sequence[float]
) -> tuple[float, float]:
    """(alpha s, beta s/byte) of `kind` over `group` devices from per-size median times."""
    latency, factor = FORMULAS[kind]
    a, b = nonnegative_line([factor(group) * n for n in num_bytes], seconds)
    return a / latency, b


def predict(kind: str, group: int, num_bytes: float, alpha: float, beta: float) -> float:
    """The cost model's time for these figures (what `fit_collective` fits)."""
    latency, factor = FORMULAS[kind]
    return latency * alpha + factor(group) * num_bytes * beta


def fit_joint(samples: Sequence[tuple[str, int, float, float]]) -> tuple[float, float]:
    """One (alpha, beta) for every kind together, from (kind, group, num_bytes, seconds) samples: the
    axis's figures for a collective the profile gives none of its own."""
    latencies = np.array([FORMULAS[k][0] for k, _, _, _ in samples])
    x = np.array([FORMULAS[k][1](n) * b for k, n, b, _ in samples]) / latencies
    t = np.array([s for _, _, _, s in samples]) / latencies
    return nonnegative_line(x, t)
