"""ir/example_index.py: random bits drawn along the batch dim count each example's index in the whole
batch, read from a batch argument, so that micro-batches draw the whole batch's bits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from autopar import passes
from autopar.ir import attrs, example_index, micro_batch
from autopar.ir.lowering import module_from_lowered

M = 4
W = jnp.full((8, 8), 0.1, jnp.float32)


def lowered(fn, m):
    """`fn(w, x, key)` at m examples, inlined, `x` marked as the batch."""
    x = jnp.ones((m, 8), jnp.float32)
    module = module_from_lowered(jax.jit(fn).lower(W, x, jax.random.key_data(jax.random.key(0))))
    passes.run(module, "builtin.module(autopar-inline, func.func(chlo-legalize-to-stablehlo))")
    main = micro_batch.main_function(module)
    attrs.set_argument_marks(main, [attrs.ArgumentMarks(i == 1, i != 1) for i in range(3)])
    return module


def indexed(fn):
    """(position of the example index argument or None, the output labels after indexing)."""
    small, large = lowered(fn, M), lowered(fn, 2 * M)
    indexing = example_index.index_examples(small, large, M)
    position = indexing.argument if indexing else None
    micro_batch.annotate(small, large, M, 2)
    main = micro_batch.main_function(small)
    labels = []
    for value in micro_batch.terminator(main.regions[0].blocks[0]).operands:
        found = attrs.get_micro_batch_labels(value.owner) if hasattr(value.owner, "name") else None
        labels.append(found[value.result_number] if found else "same")
    return position, labels, small


def dropped(w, x, key, shape_of=lambda h: h.shape, flip=lambda k: k):
    h = jnp.tanh(x @ w)
    keep = flip(jax.random.bernoulli(jax.random.wrap_key_data(key), 0.9, shape_of(h)))
    return jnp.mean(jnp.where(keep, h / 0.9, 0.0) ** 2)


def test_dropouts_counter_along_the_batch_reads_the_example_index_and_the_step_is_a_mean():
    position, labels, module = indexed(jax.value_and_grad(dropped))
    assert position == 3 and labels == ["mean", "mean"]
    main = micro_batch.main_function(module)
    marks = attrs.get_argument_marks(main)[position]
    assert marks.is_batch and marks.path == example_index.PATH
    iotas = [str(op) for op in main.regions[0].blocks[0].operations if op.operation.name == "stablehlo.iota"]
    assert not [i for i in iotas if "dim = 0" in i and "ui64" in i]  # the counter along the batch is gone
    assert [i for i in iotas if "dim = 1" in i and "ui64" in i]  # the one along the features stays


def test_a_counter_inside_a_loop_reads_the_example_index_from_main():
    """Dropout in layers scanned over: the counter sits in the loop's body, which reads @main's new
    argument by implicit capture (no iota over the batch is left anywhere), and the step is a mean."""

    def scanned(w, x, key):
        def layer(h, k):
            keep = jax.random.bernoulli(k, 0.9, h.shape)
            return jnp.where(keep, jnp.tanh(h @ w) / 0.9, 0.0), None

        h, _ = jax.lax.scan(layer, x, jax.random.split(jax.random.wrap_key_data(key), 2))
        return jnp.mean(h**2)

    position, labels, module = indexed(jax.value_and_grad(scanned))
    assert position == 3 and labels == ["mean", "mean"]
    main = micro_batch.main_function(module)
    ops = example_index.nested_ops(main.regions[0].blocks[0])
    index = main.regions[0].blocks[0].arguments[position]
    readers = [op for op in ops if any(v == index for v in op.operands)]
    assert readers and all(op.parent.name == "stablehlo.while" for op in readers)  # read inside the loop
    counters = [
        op for op in ops if op.name == "stablehlo.iota" and f"dim = 0 : tensor<{M}x8xui64>" in str(op)
    ]
    assert not counters  # the counter along the batch is gone (the keys' split keeps its own iota)


@pytest.mark.parametrize(
    "shape_of, flip",
    [
        (lambda h: h.T.shape, lambda k: k.T),  # the batch dim second: its stride involves the batch size
        (lambda h: (2 * h.shape[0], h.shape[1]), lambda k: k[::2]),  # a dim of 2m examples' bits
    ],
    ids=["time-major", "twice-the-batch"],
)
def test_counters_that_are_not_one_per_example_along_the_leading_dim_stay_refused(shape_of, flip):
    def fn(w, x, key):
        return dropped(w, x, key, shape_of, flip)

    position, labels, _ = indexed(fn)
    assert position is None and labels[0].startswith("unknown:an iota over the batch dim")


def test_jnps_own_indices_over_the_batch_are_not_counters():
    """`jnp.arange(B)` is int32: an index of the example within its micro-batch, still unknown as data."""

    def fn(w, x, key):
        return jnp.mean(jnp.tanh(x @ w) * jnp.arange(x.shape[0])[:, None])

    position, labels, _ = indexed(fn)
    assert position is None and labels[0].startswith("unknown:an iota over the batch dim")
