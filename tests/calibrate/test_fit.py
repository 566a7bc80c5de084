"""Fitting collective times to the cost model's alpha-beta formulas."""

import numpy as np
import pytest

from autopar import cost
from autopar.calibrate import fit

SIZES = [2**k for k in range(10, 27, 2)]  # 1 KiB .. 64 MiB


@pytest.mark.parametrize("kind", sorted(fit.FORMULAS))
@pytest.mark.parametrize("group", [2, 4, 8])
def test_fit_recovers_alpha_and_beta_from_the_cost_models_own_times(kind, group):
    # Synthetic timings made by the cost model itself (MeshModel, one axis), with 3 % noise.
    mesh = cost.make_mesh((group,), alpha=2e-4, beta=5e-10)
    price = {
        "all_reduce": mesh.all_reduce,
        "all_gather": mesh.all_gather,
        "reduce_scatter": mesh.reduce_scatter,
        "all_to_all": mesh.all_to_all,
    }[kind]
    noise = np.random.default_rng(group).uniform(0.97, 1.03, len(SIZES))
    times = [price(n, [0]) * e for n, e in zip(SIZES, noise, strict=True)]
    alpha, beta = fit.fit_collective(kind, group, SIZES, times)
    assert alpha == pytest.approx(2e-4, rel=0.05) and beta == pytest.approx(5e-10, rel=0.05)
    # What the fitted figures predict is what was measured.
    for n, t in zip(SIZES, times, strict=True):
        assert fit.predict(kind, group, n, alpha, beta) == pytest.approx(t, rel=0.06)


def test_fit_never_goes_negative():
    # Times that fall with size would fit a negative slope: the fit keeps beta at 0 instead.
    a, b = fit.nonnegative_line([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    assert b == 0.0 and a > 0
    # Pure bandwidth: no latency at all.
    a, b = fit.nonnegative_line([1e3, 1e6, 1e9], [1e-6, 1e-3, 1.0])
    assert a == pytest.approx(0.0, abs=1e-12) and b == pytest.approx(1e-9)
    with pytest.raises(ValueError):
        fit.nonnegative_line([1.0], [0.0])


def test_joint_fit_gives_one_pair_for_every_kind():
    samples = []
    for kind in fit.FORMULAS:
        samples += [(kind, 8, n, fit.predict(kind, 8, n, 1e-4, 1e-9)) for n in SIZES]
    alpha, beta = fit.fit_joint(samples)
    assert alpha == pytest.approx(1e-4, rel=1e-6) and beta == pytest.approx(1e-9, rel=1e-6)
