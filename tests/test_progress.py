"""The first-call status line: on stderr only when it is a terminal and the call is slow."""

import time

import jax.numpy as jnp

import autopar
from autopar import progress


def test_nothing_is_shown_when_stderr_is_not_a_terminal(capfd, monkeypatch) -> None:
    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", 0.0)
    f = autopar.parallelize(lambda w, x: x @ w)
    f(jnp.ones((16, 8)), jnp.ones((32, 16)))
    out, err = capfd.readouterr()
    assert out == "" and "autopar:" not in err


def test_a_slow_call_shows_what_it_is_doing_on_a_terminal(capfd) -> None:
    with progress.Progress("ShardParallel of step on mesh 2x4", after=0.0, force_terminal=True) as p:
        p.stage("planning")
        time.sleep(0.3)
    out, err = capfd.readouterr()
    assert out == ""
    assert "autopar: ShardParallel of step on mesh 2x4: planning" in err


def test_a_fast_call_shows_nothing_even_on_a_terminal(capfd) -> None:
    with progress.Progress("step", after=5.0, force_terminal=True) as p:
        p.stage("planning")
    assert capfd.readouterr().err == ""


def test_lowered_says_where_the_first_call_went() -> None:
    f = autopar.parallelize(lambda w, x: x @ w)
    lowered = f.lower(jnp.ones((16, 8)), jnp.ones((32, 16)))
    assert set(lowered.timings) == {"lower", "plan"} and all(v > 0 for v in lowered.timings.values())
    lowered.compile()
    assert lowered.timings["compile"] > 0
