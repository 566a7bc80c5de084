"""ir/batch_statistics.py: statistics of the batch's inputs that a step feeds back (a masked mean's token
count, the batch's mean of an input) become arguments computed over the whole batch first, so that the
step's values combine exactly over micro-batches; and runtime/statistics.py computes them so."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autopar import passes
from autopar.ir import attrs, batch_statistics, micro_batch
from autopar.ir.lowering import module_from_lowered
from autopar.runtime.statistics import StepInputs

M = 4  # examples per micro-batch
W = [jnp.full((8, 8), 0.1, jnp.float32), jnp.full((8, 8), 0.2, jnp.float32)]


def mlp(params, x):
    for w in params:
        x = jnp.tanh(x @ w)
    return x


def lowered(fn, m):
    """`fn(params, x, y, mask)` lowered at m examples, inlined, its batch arguments marked."""
    x = jnp.ones((m, 8), jnp.float32)
    mask = (jnp.arange(m) % 3 != 0).astype(jnp.float32)
    module = module_from_lowered(jax.jit(fn, keep_unused=True).lower(W, x, x, mask))
    passes.run(module, "builtin.module(autopar-inline, func.func(chlo-legalize-to-stablehlo))")
    main = micro_batch.main_function(module)
    attrs.set_argument_marks(main, [attrs.ArgumentMarks(i >= len(W), i < len(W)) for i in range(len(W) + 3)])
    return module


def hoisted(fn):
    """The rounds hoisted from `fn` and the labels of its results after them."""
    small, large = lowered(fn, M), lowered(fn, 2 * M)
    rounds = batch_statistics.hoist(small, large, M, num_micro_batches=3)
    micro_batch.annotate(small, large, M, num_micro_batches=3)
    main = micro_batch.main_function(small)
    out = []
    for value in micro_batch.terminator(main.regions[0].blocks[0]).operands:
        labels = attrs.get_micro_batch_labels(value.owner) if hasattr(value.owner, "name") else None
        out.append(labels[value.result_number] if labels else "same")
    return rounds, out, attrs.get_argument_marks(main)


def normalised(x):
    centred = x - x.mean(0)
    return centred * jax.lax.rsqrt(jnp.mean(centred**2, 0) + 1)


def gradient_of(loss):
    return lambda params, x, y, mask: jax.value_and_grad(lambda p: loss(p, x, y, mask))(params)


def per_example(p, x, y):
    return jnp.sum((mlp(p, x) - y) ** 2, axis=-1)


def test_a_masked_means_token_count_is_taken_over_the_whole_batch_and_the_loss_is_a_sum():
    """sum(l * mask) / sum(mask): the count reads only the mask, so it becomes an argument (named by its
    line), computed from the mask alone and summed over micro-batches; loss and gradients are sums."""
    masked = gradient_of(lambda p, x, y, m: jnp.sum(per_example(p, x, y) * m) / m.sum())
    rounds, labels, marks = hoisted(masked)
    assert labels == ["sum", "sum", "sum"]
    [r] = rounds
    assert r.labels == ("sum",) and r.first == len(W) + 3
    assert r.sources == (len(W) + 2,) and r.batch_sources == {len(W) + 2}  # the mask alone
    assert marks[-1].path.startswith("batch sum at ") and "test_batch_statistics.py" in marks[-1].path
    assert not marks[-1].is_batch and not marks[-1].is_parameter


FORMS = {
    # name: (loss, how each statistic combines, round by round)
    "mean where": (lambda p, x, y, m: jnp.mean(per_example(p, x, y), where=m > 0), [("sum",)]),
    "count of a boolean mask": (
        lambda p, x, y, m: jnp.sum(per_example(p, x, y) * m) / (m > 0).sum(),
        [("sum",)],
    ),
    "over the mask's mean": (lambda p, x, y, m: jnp.mean(per_example(p, x, y) * m) / m.mean(), [("mean",)]),
    "input scaled by its largest value": (
        lambda p, x, y, m: jnp.mean((mlp(p, x / jnp.max(jnp.abs(x))) - y) ** 2),
        [("max",)],
    ),
    "input centred on the batch's mean": (
        lambda p, x, y, m: jnp.mean((mlp(p, x - x.mean(0)) - y) ** 2),
        [("mean",)],
    ),
    "guarded by whether any example counts": (
        lambda p, x, y, m: jnp.where(jnp.any(m > 0), jnp.sum(per_example(p, x, y) * m), 0.0),
        [("max",)],
    ),
    "over the count, guarded against none": (
        lambda p, x, y, m: jnp.where(
            m.sum() > 0, jnp.sum(per_example(p, x, y) * m) / jnp.maximum(m.sum(), 1), 0
        ),
        [("sum",)],
    ),
    "weighted by a softmax of an input over the batch": (  # its max, then the sum of exp(x - max)
        lambda p, x, y, m: jnp.sum(per_example(p, x, y) * jax.nn.softmax(x[:, 0])),
        [("max",), ("sum",)],
    ),
    "input normalised by the batch's variance": (  # the variance about a hoisted mean: a second round
        lambda p, x, y, m: jnp.mean((mlp(p, normalised(x)) - y) ** 2),
        [("mean",), ("mean",)],
    ),
}


@pytest.mark.parametrize("name", FORMS)
def test_input_statistics_fed_back_are_hoisted_and_the_step_combines(name):
    loss, combined = FORMS[name]
    rounds, labels, _ = hoisted(gradient_of(loss))
    assert [tuple(sorted(set(r.labels))) for r in rounds] == combined
    assert not any(label.startswith("unknown") for label in labels), labels


def test_what_depends_on_the_parameters_or_combines_already_is_not_hoisted():
    by_outputs = gradient_of(lambda p, x, y, m: jnp.sum(mlp(p, x) ** 2) / jnp.sum(jnp.abs(mlp(p, x))))
    rounds, labels, _ = hoisted(by_outputs)
    assert rounds == [] and all(label.startswith("unknown") for label in labels), labels
    assert "ratio of sums does not combine exactly" in labels[0]
    rounds, labels, _ = hoisted(gradient_of(lambda p, x, y, m: jnp.mean(per_example(p, x, y))))
    assert rounds == [] and labels == ["mean", "mean", "mean"]


def test_jnp_std_and_var_over_the_batch_are_hoisted():
    """jnp.std guards against N - ddof <= 0 with a comparison of the batch size: it has one outcome at
    the micro-batch's size and the whole batch's (ir/micro_batch_scalars.py), so the select it guards
    picks the variance in both, and the variance about the hoisted mean is hoisted in its turn (PPO's
    advantage normalisation, `(a - a.mean()) / (a.std() + 1e-8)`, is this)."""
    for loss in (
        lambda p, x, y, m: jnp.mean((mlp(p, x / x.std(0)) - y) ** 2),
        lambda p, x, y, m: jnp.mean(per_example(p, x, y) * (m - m.mean()) / (m.std() + 1e-8)),
        lambda p, x, y, m: jnp.mean((mlp(p, x * jax.lax.rsqrt(x.var(0) + 1)) - y) ** 2),
    ):
        small, large = lowered(gradient_of(loss), M), lowered(gradient_of(loss), 2 * M)
        rounds = batch_statistics.hoist(small, large, M, num_micro_batches=3)
        micro_batch.annotate(small, large, M, num_micro_batches=3)
        assert [set(r.labels) for r in rounds] == [{"mean"}, {"mean"}]  # the mean, then the variance
        main = micro_batch.main_function(small)
        returned = micro_batch.terminator(main.regions[0].blocks[0]).operands
        assert all(attrs.get_micro_batch_labels(v.owner)[v.result_number] == "mean" for v in returned)
    # With ddof=1 the sum of squares is divided by N - 1, not a power of N: the sum is hoisted and the
    # quotient, taken at the micro-batch's N, is refused (not run at the wrong N).
    _, labels, _ = hoisted(gradient_of(lambda p, x, y, m: jnp.mean((mlp(p, x / x.std(0, ddof=1)) - y) ** 2)))
    assert all(label.startswith("unknown") for label in labels), labels


def test_the_rounds_compute_the_whole_batchs_statistics_from_its_micro_batches():
    """Run as the runtime runs them (each micro-batch's slice, combined by label, a round reading the
    last): the whole batch's count, mean and variance, as numpy computes them on the whole batch."""

    def step(params, x, y, mask):
        centred = x - x.mean(0)
        scale = jax.lax.rsqrt(jnp.mean(centred**2, 0) + 1)
        return jnp.sum(per_example(params, centred * scale, y) * mask) / mask.sum()

    small, large = lowered(step, M), lowered(step, 2 * M)
    B = 3
    rounds = batch_statistics.hoist(small, large, M, B)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B * M, 8)).astype(np.float32) + 2
    mask = (rng.random(B * M) > 0.3).astype(np.float32)
    values = StepInputs(rounds, B)([*W, x, x, mask])
    # Round 1 the mean; round 2 what rsqrt reads, the variance about it plus 1; round 3 the count, which
    # divides a sum that was unknown until the input's statistics were hoisted.
    assert [r.labels for r in rounds] == [("mean",), ("mean",), ("sum",)]
    mean = x.mean(0)
    want = [mean, ((x - mean) ** 2).mean(0) + 1, mask.sum()]
    assert len(values) == len(W) + 3 + len(want)
    for got, w in zip(values[len(W) + 3 :], want, strict=True):
        np.testing.assert_allclose(np.asarray(got).reshape(-1), np.reshape(w, -1), rtol=1e-5)
