"""ir/whole_batch.py: values computed from the batch alone (and keys, scalars) that do not split into
micro-batches are taken from the step lowered at the whole batch, as new @main arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from autopar import passes
from autopar.ir import attrs, micro_batch, whole_batch
from autopar.ir.lowering import module_from_lowered

M, B = 4, 3
W = jnp.full((8, 8), 0.1, jnp.float32)


def lowered(fn, m):
    """`fn(w, x, key)` at m examples, inlined, `x` marked as the batch and `w` as a parameter."""
    x = jnp.linspace(-1, 1, m * 8, dtype=jnp.float32).reshape(m, 8)
    key = jax.random.key_data(jax.random.key(0))
    module = module_from_lowered(jax.jit(fn, keep_unused=True).lower(W, x, key))
    passes.run(module, "builtin.module(autopar-inline, func.func(chlo-legalize-to-stablehlo))")
    main = micro_batch.main_function(module)
    attrs.set_argument_marks(main, [attrs.ArgumentMarks(i == 1, i != 1) for i in range(3)])
    return module


def prepared(fn):
    """(the PreparedInputs, the output labels after preparing, the new arguments' marks)."""
    small, large, whole = (lowered(fn, m) for m in (M, 2 * M, B * M))
    found = whole_batch.prepare(small, large, whole, whole_batch.candidates(small, large, M, B), M)
    micro_batch.annotate(small, large, M, B)
    main = micro_batch.main_function(small)
    labels = []
    for value in micro_batch.terminator(main.regions[0].blocks[0]).operands:
        got = attrs.get_micro_batch_labels(value.owner) if hasattr(value.owner, "name") else None
        labels.append(got[value.result_number] if got else "same")
    return found, labels, attrs.get_argument_marks(main)[found.first if found else 0 :]


def trained(make_input):
    def step(w, x, key):
        inputs = make_input(x, jax.random.wrap_key_data(key))
        return jax.value_and_grad(lambda w: jnp.mean(jnp.tanh(inputs @ w) ** 2))(w)

    return step


def test_mixup_by_rolling_the_batch_is_prepared_per_example():
    """big_vision's mixup in the step: each example mixed with its neighbour in the batch, by a weight
    drawn from the step's key. The mixed batch is one row per example: a batch argument."""

    def mixup(x, key):
        lam = jax.random.beta(key, 0.2, 0.2)
        return lam * x + (1 - lam) * jnp.roll(x, 1, axis=0)

    found, labels, marks = prepared(trained(mixup))
    assert labels == ["mean", "mean"]
    # The mixed batch, from the batch and the key (its beta draw is a loop: closed, so computed too).
    assert found.first == 3 and found.sources == (1, 2)
    [mark] = marks
    assert mark.is_batch and "of the whole batch at" in mark.path and "test_whole_batch.py" in mark.path


def test_an_input_over_its_sample_standard_deviation_is_prepared_per_example():
    """x / x.std(0, ddof=1): divided by N - 1, which no micro-batch knows. The whole quotient is what the
    first layer reads: one row per example."""
    found, labels, marks = prepared(trained(lambda x, key: x / x.std(0, ddof=1)))
    assert labels == ["mean", "mean"] and found is not None
    assert [m.is_batch for m in marks] == [True]


def test_a_median_over_the_batch_is_prepared_once():
    """A scalar computed from the batch by a sort along it: the same in every micro-batch."""

    def step(w, x, key):
        return jax.value_and_grad(lambda w: jnp.mean(jnp.tanh(x @ w) ** 2) / jnp.median(jnp.abs(x)))(w)

    found, labels, marks = prepared(step)
    # The gradient's prepared factor is the whole batch's 1 / (B m median): a sum over micro-batches.
    assert labels in (["mean", "mean"], ["mean", "sum"]) and found is not None
    assert marks and not any(m.is_batch for m in marks)


def test_a_value_with_its_examples_along_another_dim_is_not_prepared():
    """The batch rolled and transposed: one column per example, which the runtime cannot cut into
    micro-batches along dim 0. Refused."""

    def step(w, x, key):
        rolled = jnp.roll(x, 1, axis=0).T
        return jnp.mean(jnp.tanh(w @ rolled) ** 2)

    found, labels, _ = prepared(step)
    assert found is None and labels[0].startswith("unknown")


def test_a_statistic_of_what_the_parameters_compute_is_not_prepared():
    """BatchNorm-like centring of activations: it reads the parameters, so it is no input to prepare."""

    def step(w, x, key):
        h = jnp.tanh(x @ w)
        return jnp.mean((h - h.mean(0)) ** 2)

    found, labels, _ = prepared(step)
    assert found is None and labels[0].startswith("unknown")


def test_each_examples_own_row_picked_by_jnp_arange_stays_the_micro_batchs():
    """`h[jnp.arange(B), i]` reads each example's own row of a micro-batch value: the iota must stay the
    micro-batch's (the whole batch's would index past it), so nothing is prepared."""

    def step(w, x, key):
        h = jnp.tanh(x @ w)
        picked = h[jnp.arange(x.shape[0]), jnp.argmax(x, axis=1)]
        return jnp.mean(picked**2)

    found, labels, _ = prepared(step)
    assert found is None and labels == ["mean"]
