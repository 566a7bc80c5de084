"""autopar.calibrate.calibrate: the profile's shape on edge cases (the CLI's own runs: test_cli.py)."""

import jax
import numpy as np
import pytest

from autopar import calibrate


def test_one_device_profile_has_no_collective_figures():
    # Nothing communicates on one device; 0 s figures would price every other mesh's collectives free.
    profile = calibrate.calibrate(jax.devices()[:1], (1,), quick=True)
    assert profile["device"]["flops"] > 0 and set(profile["mesh"]) == {"shape"}
    assert profile["device"]["dot_half_rate_width"] >= 0
    # XLA's CPU compiler runs bf16 collectives in f32: the profile says so for the cost model.
    assert profile["device"]["widened_collectives"] is True


def test_half_rate_width_is_fitted_to_the_slowdowns_of_several_widths():
    from autopar.calibrate import measure

    model = {w: 1 + 14 / max(w, 14) for w in (16, 32, 64)}
    assert measure.fit_half_rate_width(model) == pytest.approx(14, abs=0.05)
    assert measure.fit_half_rate_width({16: 1.0, 32: 0.98, 64: 1.01}) == 0.0  # as fast (noise): none
    assert measure.fit_half_rate_width({16: 2.0, 32: 2.0, 64: 2.0}) == 64.0  # half rate everywhere
    # One noisy width moves the fit far less than it moves a one-width reading (32 x (1.25 - 1) = 8).
    noisy = {**model, 32: 1.25}
    assert abs(measure.fit_half_rate_width(noisy) - 14) < abs(8 - 14) / 2


def test_narrow_dot_slowdowns_are_measured_per_width():
    from jax.sharding import Mesh

    from autopar.calibrate import measure

    mesh = Mesh(np.asarray(jax.devices()[:2]), ("x",))
    slowdowns = measure.narrow_dot_slowdowns(mesh, 64, (16, 32), repeats=2)
    assert set(slowdowns) == {16, 32} and all(s > 0 for s in slowdowns.values())


def test_warm_up_calls_until_the_time_stops_falling(monkeypatch):
    from autopar.calibrate import measure

    def timed(times):
        it = iter(times)
        monkeypatch.setattr(measure, "_seconds", lambda fn: next(it))

    # A 16 MiB all-reduce's first calls grow the heap (page faults), then it settles: warm until then.
    timed([0.30, 0.206, 0.104, 0.007, 0.0075, 0.0071])
    assert measure.warm_up(lambda: None) == 5
    timed([0.001, 0.001])
    assert measure.warm_up(lambda: None) == 2  # settled at once: two calls
    timed([2.0**-i for i in range(20)])
    assert measure.warm_up(lambda: None, most=6) == 6  # never settles: capped


def test_collectives_are_timed_only_after_their_warm_up(monkeypatch):
    from jax.sharding import Mesh

    from autopar.calibrate import measure

    warmed, real = [], measure.warm_up
    monkeypatch.setattr(measure, "warm_up", lambda fn: warmed.append(real(fn)))
    mesh = Mesh(np.asarray(jax.devices()[:2]), ("x",))
    measure.collective_seconds(mesh, "x", "all_reduce", 4096, repeats=1)
    assert len(warmed) == 2 and all(n >= 2 for n in warmed)  # the chain and its baseline


def test_devices_and_meshes_are_checked():
    assert [d.id for d in calibrate.select_devices("0,3")] == [0, 3]
    assert len(calibrate.select_devices("2")) == 2
    assert calibrate.parse_mesh(None, 8) == (8,) and calibrate.parse_mesh("2x4", 8) == (2, 4)


def test_merged_operand_is_the_cost_of_each_further_operand(monkeypatch):
    from jax.sharding import Mesh

    from autopar.calibrate import measure

    mesh = Mesh(np.asarray(jax.devices()[:2]), ("x",))
    monkeypatch.setattr(measure, "warm_up", lambda fn: 2)
    # The 16-operand call and the 1-operand call take turns: 4.6 ms against 0.1 ms, per further operand
    # (4.6 - 0.1) / 15; a many-operand call no slower than one (noise) gives 0, never a negative price.
    for times, expected in (([4.6e-3, 1e-4] * 3, 4.5e-3 / 15), ([1e-4, 2e-4] * 3, 0.0)):
        it = iter(times)
        monkeypatch.setattr(measure, "_seconds", lambda fn, it=it: next(it))
        seconds = measure.merged_operand_seconds(mesh, "x", "all_reduce", 16, repeats=3)
        assert seconds == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["all_reduce", "reduce_scatter"])
def test_xla_cpu_pays_for_every_operand_of_merged_gradient_collectives(kind):
    # Why the profile carries `merged_operand`: XLA's CPU runtime meets once per operand of a merged
    # all-reduce (and runs independent reduce-scatters one by one), so on 8 devices each further 1 KiB
    # gradient collective costs about what a lone one does (0.15 ms on a 2-core host), not nothing.
    # Were a jaxlib to merge them for real, this fails and the profile's figure falls to about 0 with it.
    from jax.sharding import Mesh

    from autopar.calibrate import measure

    mesh = Mesh(np.asarray(jax.devices()[:8]), ("x",))
    assert measure.merged_operand_seconds(mesh, "x", kind, 16, repeats=3) > 1e-5
