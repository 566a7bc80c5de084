"""The alpha-beta mesh model and cluster profiles."""

import json

import numpy as np
import pytest

from autopar import cost


def test_collectives_follow_alpa_formulas():
    mesh = cost.make_mesh((2, 4), alpha=1e-5, beta=[1e-9, 1e-10])
    n = 4
    assert mesh.all_reduce(1e6, [1]) == pytest.approx(1e-5 + 1e-10 * 2 * (n - 1) / n * 1e6 + 1e-7)
    assert mesh.all_gather(1e6, [1]) == pytest.approx(1e-5 + 1e-10 * (n - 1) / n * 1e6 + 1e-6)
    assert mesh.reduce_scatter(1e6, [0]) == pytest.approx(1e-5 + 1e-9 * 0.5 * 1e6 + 1e-8)
    # Several axes at once: one group of 8, every latency, the slowest link.
    assert mesh.all_reduce(1e6, [0, 1]) == pytest.approx(2e-5 + 1e-9 * 2 * 7 / 8 * 1e6 + 2e-7)
    assert mesh.all_reduce(1e6, []) == 0.0
    # Vectorised over byte counts (the reshard tables use it).
    np.testing.assert_allclose(
        mesh.all_gather(np.array([0.0, 1e6]), [1]), [1.1e-5, mesh.all_gather(1e6, [1])]
    )


def test_defaults_make_the_inner_axis_fast():
    mesh = cost.make_mesh((2, 4))
    assert mesh.axis_names == ("x", "y") and mesh.beta[1] < mesh.beta[0]


@pytest.mark.parametrize(
    "bad", [dict(shape=(2, 2, 2, 2)), dict(shape=(0, 4)), dict(shape=(2, 4), beta=[1.0, 2.0, 3.0])]
)
def test_bad_meshes_raise_value_error(bad):
    with pytest.raises(ValueError):
        cost.make_mesh(bad["shape"], beta=bad.get("beta"))


def test_profile_overrides_device_and_links(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"device": {"flops": 2e12}, "mesh": {"alpha": [1e-4, 1e-6]}}))
    overrides, device = cost.load_profile(path, (2, 4))
    assert device.flops == 2e12 and overrides == {"alpha": (1e-4, 1e-6)}
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        cost.load_profile(path, (2, 4))
    path.write_text(json.dumps({"devices": {}}))
    with pytest.raises(ValueError, match="unknown keys"):
        cost.load_profile(path, (2, 4))
