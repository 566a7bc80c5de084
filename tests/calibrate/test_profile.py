"""autopar.calibrate.calibrate: the profile's shape on edge cases (the CLI's own runs: test_cli.py)."""

import jax
import pytest

from autopar import calibrate


def test_one_device_profile_has_no_collective_figures():
    # Nothing communicates on one device; 0 s figures would price every other mesh's collectives free.
    profile = calibrate.calibrate(jax.devices()[:1], (1,), quick=True)
    assert profile["device"]["flops"] > 0 and set(profile["mesh"]) == {"shape"}
    assert profile["device"]["dot_half_rate_width"] >= 0


def test_half_rate_width_from_the_narrow_dots_rate():
    from autopar.calibrate import measure

    assert measure.half_rate_width(1.0e10, 0.7e10, 32) == pytest.approx(32 * (1 / 0.7 - 1))
    assert measure.half_rate_width(1.0e10, 1.1e10, 32) == 0.0  # narrow as fast (noise): no slowdown
    assert measure.half_rate_width(1.0e10, 0.2e10, 32) == 32.0  # the slowdown stops at 2


def test_devices_and_meshes_are_checked():
    assert [d.id for d in calibrate.select_devices("0,3")] == [0, 3]
    assert len(calibrate.select_devices("2")) == 2
    assert calibrate.parse_mesh(None, 8) == (8,) and calibrate.parse_mesh("2x4", 8) == (2, 4)
