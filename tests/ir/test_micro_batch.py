"""ir/micro_batch.py: how each value of a micro-batch step combines into the full-batch step, read from
two lowerings of the step (at m and 2m examples). Each case is a small step whose right combination is
known by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest

from autopar import passes
from autopar.ir import attrs, micro_batch
from autopar.ir.lowering import module_from_lowered

W = [jnp.ones((8, 8), jnp.float32) * 0.1, jnp.ones((8, 8), jnp.float32) * 0.2]


def _inlined(fn, *args):
    module = module_from_lowered(jax.jit(fn, keep_unused=True).lower(*args))
    passes.run(module, "builtin.module(autopar-inline, func.func(chlo-legalize-to-stablehlo))")
    return module


def output_labels(fn, make_args, m=4):
    """The label of each @main result of fn, lowered at m and 2m examples."""
    small, large = _inlined(fn, *make_args(m)), _inlined(fn, *make_args(2 * m))
    micro_batch.annotate(small, large, m)
    main = micro_batch.main_function(small)
    ret = list(main.regions[0].blocks[0].operations)[-1].operation
    out = []
    for value in ret.operands:
        owner = value.owner
        if hasattr(owner, "arguments"):  # a block argument
            out.append("argument")
            continue
        labels = attrs.get_micro_batch_labels(owner)
        out.append(labels[value.result_number] if labels else "same")
    return out


def batch(m):
    return W, jnp.ones((m, 8), jnp.float32), jnp.ones((m, 8), jnp.float32)


def mlp(params, x):
    for w in params:
        x = jnp.tanh(x @ w)
    return x


def test_mean_loss_and_its_gradients_are_means():
    def step(params, x, y):
        return jax.value_and_grad(lambda p: jnp.mean((mlp(p, x) - y) ** 2))(params)

    assert output_labels(step, batch) == ["mean", "mean", "mean"]


def test_sum_loss_and_its_gradients_are_sums():
    def step(params, x, y):
        return jax.value_and_grad(lambda p: jnp.sum(jax.nn.relu(mlp(p, x) - y) ** 2))(params)

    assert output_labels(step, batch) == ["sum", "sum", "sum"]


def test_per_example_outputs_concatenate_along_their_batch_dim():
    def step(params, x, y):
        return mlp(params, x), (mlp(params, x) @ params[0]).T, params[0] * 2.0

    assert output_labels(step, batch) == ["concat:0", "concat:1", "same"]


def test_a_weight_decay_term_keeps_a_mean_a_mean():
    def step(params, x, y):
        def loss(p):
            return jnp.mean((mlp(p, x) - y) ** 2) + 1e-3 * sum(jnp.sum(w**2) for w in p)

        return jax.value_and_grad(loss)(params)

    assert output_labels(step, batch) == ["mean", "mean", "mean"]


def test_constants_that_scale_with_the_micro_batch_combine_as_the_sums_they_equal():
    """B micro-batches' equal values c * m**p make the full batch's c * (B*m)**p: B**(p-1) times their sum
    (they were labelled "const:<p>" and refused)."""

    def step(params, x, y):
        m = x.shape[0]
        return jnp.float32(m), jnp.float32(m * m), jnp.float32(1.0 / m), jnp.float32(3.0)

    assert output_labels(step, batch) == ["sum", "sum:1", "sum:-2", "same"]


def test_nonlinear_functions_of_means_and_batch_statistics_are_unknown():
    def log_of_mean(params, x, y):
        return jnp.log(jnp.mean(mlp(params, x) ** 2))

    def batch_norm(params, x, y):
        h = x @ params[0]
        h = (h - h.mean(0)) / (h.std(0) + 1e-5)
        return jnp.mean(h**2), jax.grad(lambda p: jnp.mean(((x @ p[0]) - (x @ p[0]).mean(0)) ** 2))(params)

    def weighted_mean(params, x, y):
        w = jnp.abs(y[:, 0]) + 1.0
        return jnp.sum(w * jnp.sum(mlp(params, x), axis=1)) / jnp.sum(w)

    def first_example(params, x, y):
        return mlp(params, x)[0]

    for fn in (log_of_mean, batch_norm, weighted_mean, first_example):
        labels = output_labels(fn, batch)
        if fn is batch_norm:  # the gradient of the unused second weight is zero: the same everywhere
            assert labels[2] == "same"
            labels = labels[:2]
        assert all(label.startswith("unknown:") for label in labels), (fn.__name__, labels)


def test_integer_counts_are_sums_and_argmax_stays_per_example():
    def step(params, x, y):
        pred = jnp.argmax(mlp(params, x), axis=-1)
        return jnp.sum(pred == jnp.argmax(y, axis=-1)), pred

    assert output_labels(step, batch) == ["sum", "concat:0"]


def test_a_prng_key_argument_and_dropout_bits():
    def step(params, x, y, key):
        keep = jax.random.bernoulli(key, 0.9, x.shape)
        return jnp.mean(mlp(params, jnp.where(keep, x, 0.0))), jax.random.split(key)[0]

    labels = output_labels(step, lambda m: (*batch(m), jax.random.key_data(jax.random.key(0))))
    # Dropout's bits over the batch are not the concatenation of per-micro-batch bits.
    assert labels[0].startswith("unknown:") and labels[1] == "same"


def _images(m):
    return W, jnp.linspace(-1.0, 1.0, m * 8 * 8).reshape(m, 8, 8, 1), jnp.ones((m, 8), jnp.float32)


def test_pooling_windows_inside_each_example_keep_means_and_per_example_values():
    # Max and average pooling over the spatial dims (a reduce_window each; the max pool's gradient is a
    # select_and_scatter): per example forward, means backward.
    def pooled(x, w):
        h = jnp.tanh(x * w[0, 0])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 1, 1, 1), "SAME") / 4.0

    def step(params, x, y):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(pooled(x, p[0]) ** 2))(params)
        return loss, grads, pooled(x, params[0])

    assert output_labels(step, _images) == ["mean", "mean", "same", "concat:0"]


def test_pooling_windows_across_examples_are_refused():
    def across(params, x, y):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (2, 1, 1, 1), (1, 1, 1, 1), "VALID")

    def padded(params, x, y):
        return jax.lax.reduce_window(
            x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 1, 1, 1), ((1, 0), (0, 1), (0, 1), (0, 0))
        )

    for fn in (across, padded):
        (label,) = output_labels(fn, _images)
        # The reason says where the op was written: the output refused is often far from it.
        assert label.startswith("unknown:a reduce_window whose windows span examples at "), (
            fn.__name__,
            label,
        )
        assert "test_micro_batch.py:" in label


def test_gradients_of_a_flax_model_are_means():
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.LayerNorm()(nn.gelu(nn.Dense(16)(x)))
            return nn.Dense(4)(x)

    model = Net()
    params = model.init(jax.random.key(0), jnp.ones((1, 8)))

    def step(params, x, y):
        return jax.value_and_grad(lambda p: optax.l2_loss(model.apply(p, x), y).mean())(params)

    labels = output_labels(step, lambda m: (params, jnp.ones((m, 8)), jnp.ones((m, 4))), m=2)
    assert set(labels) == {"mean"}, labels


def test_programs_that_branch_on_the_batch_size_are_refused():
    def step(params, x, y):
        return jnp.mean(x) if x.shape[0] < 5 else jnp.sum(x @ params[0])

    small, large = _inlined(step, *batch(4)), _inlined(step, *batch(8))
    with pytest.raises(micro_batch.MicroBatchError, match="lowers to different programs"):
        micro_batch.annotate(small, large, 4)


def test_loops_and_branches_over_layers_keep_their_kinds():
    stacked = jnp.stack(W)

    def step(stacked, x, y, flag):
        def loss(ws):
            def layer(h, w):
                return jnp.tanh(h @ w), None

            h, _ = jax.lax.scan(layer, x, ws)
            h = jax.lax.cond(flag > 0, lambda h: h * 2.0, lambda h: h, h)
            return jnp.mean((h - y) ** 2)

        return jax.value_and_grad(loss)(stacked)

    labels = output_labels(step, lambda m: (stacked, *batch(m)[1:], jnp.int32(1)))
    assert labels == ["mean", "mean"]

    def branch_on_data(stacked, x, y, flag):
        return jax.lax.cond(jnp.mean(x) > 0, lambda: jnp.sum(x), lambda: jnp.mean(x))

    assert output_labels(branch_on_data, lambda m: (stacked, *batch(m)[1:], jnp.int32(1)))[0].startswith(
        "unknown:"
    )


def test_checkpointed_layers_keep_their_kinds_through_the_barriers():
    """jax.checkpoint wraps each layer's saved values in one optimization barrier of several values (a
    weight and a batch of activations together): each result has its own operand's kind."""

    def step(params, x, y):
        layer = jax.checkpoint(lambda w, h: jnp.tanh(h @ w))

        def loss(p):
            h = x
            for w in p:
                h = layer(w, h)
            return jnp.mean((h - y) ** 2)

        return jax.value_and_grad(loss)(params), layer(params[0], x)

    text = jax.jit(step).lower(*batch(4)).as_text()
    assert "stablehlo.optimization_barrier" in text and "tensor<8x8xf32>, tensor<4x8xf32>" in text
    assert output_labels(step, batch) == ["mean", "mean", "mean", "concat:0"]


def test_a_recurrent_loop_over_time_from_a_zero_state_keeps_means_and_per_example_outputs():
    """An RNN's scan over time (flax's nn.RNN): its carry starts as zeros of the batch's shape, so its first
    step multiplies zeros by a weight, and the scan stacks zero residuals for the backward loop. Before,
    both read as "a value with a batch dim from constants" and refused the step."""

    def step(params, x, y):  # x: (m, time, features)
        def loss(p):
            def cell(h, x_t):
                h = jnp.tanh(x_t @ p[0] + h @ p[1])
                return h, h

            h, hs = jax.lax.scan(cell, jnp.zeros((x.shape[0], 8)), jnp.swapaxes(x, 0, 1))
            return jnp.mean((h - y) ** 2), hs

        (value, hs), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return value, grads, hs

    labels = output_labels(step, lambda m: (W, jnp.ones((m, 5, 8)) * 0.3, jnp.ones((m, 8))))
    assert labels == ["mean", "mean", "mean", "concat:1"]


def test_ops_inside_a_loop_given_up_on_carry_the_loops_reason():
    """A loop whose operands are already unknown is not interpreted; its body's ops carry the reason (not
    "added after labelling" once autopar-unroll-loops has written them out)."""

    def step(params, x, y):
        h0 = x - jnp.mean(x, axis=0)  # a batch statistic fed back into each example

        def body(i, h):
            return jnp.tanh(h @ params[0])

        return jax.lax.fori_loop(0, 3, body, h0)

    small, large = _inlined(step, *batch(4)), _inlined(step, *batch(8))
    micro_batch.annotate(small, large, 4)
    main = micro_batch.main_function(small)
    loop = next(
        op.operation for op in main.regions[0].blocks[0].operations if op.operation.name == "stablehlo.while"
    )
    reason = attrs.get_micro_batch_labels(loop)[-1]
    assert reason.startswith("unknown:a sum over the examples fed back"), reason
    body = [op.operation for op in loop.regions[1].blocks[0].operations]
    tanh = next(op for op in body if op.name == "stablehlo.tanh")
    assert attrs.get_micro_batch_labels(tanh) == (reason,)


def test_maxima_minima_any_and_all_over_the_batch_combine_as_the_largest_or_smallest():
    def step(params, x, y):
        per_example = jnp.mean((mlp(params, x) - y) ** 2, axis=1)
        return (
            jnp.max(per_example),
            jnp.any(x > 0.5),
            jnp.min(per_example).astype(jnp.float16),  # a widening or narrowing convert keeps the order
            jnp.all(x > 0.5),
            jnp.any(x > 0.5).astype(jnp.int32),  # a bool widened keeps the order
            -jnp.max(per_example),  # a negation turns the largest into the smallest: not combined
            (jnp.max(x) * 1e3).astype(jnp.int8),  # nor does a float cut to a narrow integer (it may wrap)
            jnp.max(per_example) > 1.0,  # nor is a comparison
            jnp.max(per_example, axis=0, keepdims=True) * 0 + jnp.max(x),  # arithmetic on maxima
        )

    labels = output_labels(step, batch)
    assert labels[:5] == ["max", "max", "min", "min", "max"]
    assert all(label.startswith("unknown:") for label in labels[5:]), labels


def test_ops_that_pair_or_regroup_examples_across_the_batch_are_unknown():
    """Each of these ran and gave another loss than the full batch's, silently: reversing the batch pairs
    example i with example B - 1 - i of its own micro-batch, chunking the batch into 4 fixed groups regroups
    the examples with the micro-batch, and a convolution over the batch dim mixes neighbouring examples."""

    def loss_of(transform):
        def step(params, x, y):
            return jax.value_and_grad(lambda p: jnp.mean((mlp(p, transform(x)) - y) ** 2))(params)

        return step

    pairs_across = {
        "reverse": lambda x: 0.5 * (x + x[::-1]),
        "chunks": lambda x: x.reshape(4, -1, 8).transpose(1, 0, 2).reshape(-1, 8),
        "convolution": lambda x: (
            jax.lax.conv_general_dilated(x.T[None], jnp.ones((8, 8, 3)) / 24, (1,), "SAME")[0].T
        ),
    }
    for name, transform in pairs_across.items():
        labels = output_labels(loss_of(transform), batch, m=8)
        assert all(label.startswith("unknown:") for label in labels), (name, labels)
    # Consecutive pairs of examples stay together when the micro-batch holds whole pairs: exact.
    pairs = output_labels(loss_of(lambda x: x.reshape(-1, 2, 8).sum(1).repeat(2, axis=0)), batch, m=8)
    assert pairs == ["mean", "mean", "mean"]


def test_top_k_routing_within_each_example_keeps_means_and_a_sort_over_the_batch_is_unknown():
    """lax.top_k over each token's experts (a mixture of experts' router) lowers to a sort along a
    feature dim: per example, so the loss and its gradients stay means (it was refused as not understood).
    Sorting along the batch dim orders examples against each other."""

    def routed(params, x, y):
        def loss(p):
            values, index = jax.lax.top_k(x @ p[0], 2)
            gates = jnp.sum(jax.nn.one_hot(index, 8) * jax.nn.softmax(values)[..., None], axis=1)
            return jnp.mean((jnp.tanh((x * gates) @ p[1]) - y) ** 2)

        return jax.value_and_grad(loss)(params)

    assert output_labels(routed, batch) == ["mean", "mean", "mean"]

    def sorted_over_batch(params, x, y):
        return jax.value_and_grad(lambda p: jnp.mean((mlp(p, jnp.sort(x, axis=0)) - y) ** 2))(params)

    labels = output_labels(sorted_over_batch, batch)
    assert all(label.startswith("unknown:a sort along the batch dim") for label in labels), labels


def test_fourier_mixing_within_each_example_keeps_means_and_over_the_batch_is_unknown():
    """FNet mixes tokens with a 2-D FFT over each example's sequence and features: per example. An FFT
    along the batch dim mixes examples."""

    def fnet(params, x, y):
        def loss(p):
            mixed = jnp.real(jnp.fft.fft2(x.reshape(x.shape[0], 2, 4))).reshape(x.shape)
            return jnp.mean((mlp(p, mixed) - y) ** 2)

        return jax.value_and_grad(loss)(params)

    assert output_labels(fnet, batch) == ["mean", "mean", "mean"]

    def over_batch(params, x, y):
        return jax.value_and_grad(lambda p: jnp.mean((mlp(p, jnp.real(jnp.fft.fft(x, axis=0))) - y) ** 2))(
            params
        )

    assert all(
        label.startswith("unknown:an FFT along the batch dim") for label in output_labels(over_batch, batch)
    )


def test_a_spectral_layer_with_complex_weights_keeps_means():
    """A Fourier neural operator's layer: rfft, complex weights built with lax.complex, irfft. Its
    gradient holds complex zero constants (which the bindings cannot read as attributes: a TypeError
    before) and stablehlo.complex, linear in both operands."""

    def spectral(params, x, y):
        def loss(p):
            weights = jax.lax.complex(p[0], p[1])
            return jnp.mean((jnp.fft.irfft(jnp.fft.rfft(x, axis=1) * weights, n=8, axis=1) - y) ** 2)

        return jax.value_and_grad(loss)(params)

    def args(m):
        x, y = batch(m)[1:]
        return (jnp.full((5,), 0.3), jnp.full((5,), -0.2)), x, y

    assert output_labels(spectral, args) == ["mean", "mean", "mean"]


def test_a_ratio_of_sums_is_unknown_and_over_the_whole_batchs_count_it_is_a_sum():
    """A loss normalised by the batch's own token count (sum(l * mask) / sum(mask)) is a ratio of sums: the
    interpretation alone refuses it, saying what combines exactly: the count taken over the whole batch
    (ir/batch_statistics.py hoists it so; tests/ir/test_batch_statistics.py)."""

    def per_token(params, x, y):
        return jnp.sum((mlp(params, x) - y) ** 2, axis=-1)

    def masked(params, x, y, mask):
        return jax.value_and_grad(lambda p: jnp.sum(per_token(p, x, y) * mask) / jnp.sum(mask))(params)

    def counted(params, x, y, mask, count):
        return jax.value_and_grad(lambda p: jnp.sum(per_token(p, x, y) * mask) / count)(params)

    def args(m, *extra):
        return (*batch(m), (jnp.arange(m) % 3 != 0).astype(jnp.float32), *extra)

    labels = output_labels(masked, args)
    assert all("ratio of sums does not combine exactly" in label for label in labels), labels
    assert output_labels(counted, lambda m: args(m, jnp.float32(5.0))) == ["sum", "sum", "sum"]


def test_indexing_each_examples_own_row_keeps_means_and_other_uses_of_the_batch_iota_are_unknown():
    """`h[jnp.arange(B), i]` (the state at each example's last token: CLIP's pooled text) and
    `m.at[jnp.arange(B), i].set(1)` read and write example j's row with index j in every micro-batch as in
    the whole batch: per example (they were refused for the iota). The iota shifted, reversed, halved,
    compared, or indexing anything but the batch dim is still unknown."""

    def sequences(m):
        return W, jnp.ones((m, 6, 8), jnp.float32), (jnp.arange(m) % 6).astype(jnp.int32)

    def loss_of(pick):
        def step(params, x, last):
            return jax.value_and_grad(lambda p: jnp.mean(pick(mlp(p, x), last) ** 2))(params)

        return step

    def rows(h):
        return jnp.arange(h.shape[0])

    exact = {
        "last token": lambda h, last: h[rows(h), last],
        "two per example": lambda h, last: h[rows(h)[:, None], jnp.stack([last, (last + 1) % 6], 1)],
        "a mask written per example": lambda h, last: (
            jnp.zeros(h.shape[:2]).at[rows(h), last].set(1.0)[..., None] * h
        ),
    }
    exact["a column written in every example"] = lambda h, last: (
        jnp.zeros(h.shape[:2]).at[:, 0].set(1.0)[..., None] * h
    )
    for name, pick in exact.items():
        assert output_labels(loss_of(pick), sequences) == ["mean", "mean", "mean"], name
    rows_by_index = jax.lax.GatherDimensionNumbers(
        offset_dims=(1, 2), collapsed_slice_dims=(0,), start_index_map=(0,)
    )
    across = {
        "reversed": lambda h, last: h[rows(h)[::-1], last],
        "shifted": lambda h, last: h[(rows(h) + 1) % h.shape[0], last],
        "halved": lambda h, last: h[rows(h) // 2, last],
        "negated": lambda h, last: h[-rows(h) - 1, last],
        "indexing the sequence": lambda h, last: h[rows(h), rows(h) % 6],
        "compared": lambda h, last: jnp.where((rows(h) < 3)[:, None, None], h, 0.0),
        # Ran each micro-batch's rows in place of the batch's, silently: no wrap of negative indices
        # scaled by the batch size gave it away.
        "rows picked by index, promised in bounds": lambda h, last: jax.lax.gather(
            h, last[:, None], rows_by_index, (1, 6, 8), mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS
        ),
        "a mask written to the next example": lambda h, last: (
            jnp.zeros(h.shape[:2]).at[(rows(h) + 1) % h.shape[0], last].set(1.0)[..., None] * h
        ),
    }
    for name, pick in across.items():
        labels = output_labels(loss_of(pick), sequences)
        assert all(label.startswith("unknown:") for label in labels), (name, labels)


def test_a_ctc_loss_is_a_mean():
    """optax.ctc_loss starts every example's scores from the same constants (zeros summed within each
    example, a column set to 0): per example, so the loss and its gradients stay means (the reduction was
    refused as a value with a batch dim made from constants)."""

    def step(params, x, labels):
        def loss(p):
            logits = jnp.stack([mlp(p, x)] * 5, axis=1)  # [B, T=5, K=8]
            pad = jnp.zeros(logits.shape[:2])
            return jnp.mean(optax.ctc_loss(logits, pad, labels, jnp.zeros(labels.shape), blank_id=0))

        return jax.value_and_grad(loss)(params)

    def args(m):
        return W, jnp.ones((m, 8), jnp.float32), (jnp.arange(2 * m).reshape(m, 2) % 7 + 1).astype(jnp.int32)

    assert output_labels(step, args) == ["mean", "mean", "mean"]


def test_steps_written_with_the_batch_size_are_unknown():
    """A step may use the batch size as a Python number. `h[: B // 2]` keeps the first half of each
    micro-batch, not of the batch; `h[:, B // 4]` and `W[:B]` read another column or rows at each size.
    They ran under PipeshardParallel and gave another loss than jax.jit, silently: an op's attributes
    now must agree between the two lowerings but for the sizes of its batch dims. Every k-th example keeps
    its mean."""

    def loss_of(transform):
        def step(params, x, y):
            return jax.value_and_grad(lambda p: jnp.mean((transform(mlp(p, x), p) - y) ** 2))(params)

        return step

    written_with_b = {
        "first half": lambda h, p: h[: h.shape[0] // 2].repeat(2, axis=0),
        "second half": lambda h, p: h[h.shape[0] // 2 :].repeat(2, axis=0),
        "a dynamic slice of half": lambda h, p: jax.lax.dynamic_slice_in_dim(h, 0, h.shape[0] // 2).repeat(
            2, 0
        ),
        "a column chosen by B": lambda h, p: h[:, h.shape[0] // 4 : h.shape[0] // 4 + 1],
        "weight rows chosen by B": lambda h, p: h * p[0][: h.shape[0] // 2].repeat(2, axis=0),
        "a window as wide as B / 4": lambda h, p: jax.lax.reduce_window(
            h, 0.0, jax.lax.add, (1, h.shape[0] // 4), (1, 1), "SAME"
        ),
    }
    for name, transform in written_with_b.items():
        labels = output_labels(loss_of(transform), batch, m=4)
        assert all(label.startswith("unknown:") for label in labels), (name, labels)
    every_other = loss_of(lambda h, p: h[::2].repeat(2, axis=0))
    assert output_labels(every_other, batch) == ["mean", "mean", "mean"]
    # Padded per micro-batch, the rows of padding sit between the micro-batches, not at the batch's end,
    # and every third row is another set of rows (it was labelled a mean).
    padded = loss_of(lambda h, p: jnp.pad(h, ((0, h.shape[0] // 2), (0, 0)), constant_values=1.0)[::3])
    labels = output_labels(padded, lambda m: (W, jnp.ones((m, 8)), jnp.ones((m // 2, 8))))
    assert all(label.startswith("unknown:a pad along the batch dim") for label in labels), labels


COMPARED = """
func.func @main(%x: tensor<{m}xf32>) -> tensor<{m}xf32> {{
  %n = stablehlo.constant dense<{m}.0> : tensor<f32>
  %c = stablehlo.constant dense<{c}.0> : tensor<f32>
  %d = stablehlo.subtract %n, %c : tensor<f32>
  %z = stablehlo.constant dense<0.0> : tensor<f32>
  %p = stablehlo.compare GT, %d, %z, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
  %one = stablehlo.constant dense<1.0> : tensor<f32>
  %two = stablehlo.constant dense<2.0> : tensor<f32>
  %s = stablehlo.select %p, %one, %two : tensor<i1>, tensor<f32>
  %b = stablehlo.broadcast_in_dim %s, dims = [] : (tensor<f32>) -> tensor<{m}xf32>
  %r = stablehlo.multiply %x, %b : tensor<{m}xf32>
  return %r : tensor<{m}xf32>
}}
"""


@pytest.mark.parametrize(
    "threshold, B, label",
    [
        (2, 4, "concat:0"),  # 4 - 2 > 0 at m = 4 and at the whole batch, 16: the same select
        (6, 4, "unknown"),  # 4 - 6 > 0 is false at m = 4 but true at 16: the programs differ
        (6, None, "unknown"),  # the number of micro-batches not given: not decided
    ],
)
def test_a_comparison_of_the_batch_size_is_the_same_only_with_one_outcome_at_both_sizes(threshold, B, label):
    """jnp.var's `N - ddof > 0` (ir/micro_batch_scalars.py): a comparison of constants is decided at the
    micro-batch size and the whole batch's; the second case would pick another operand at 2 of 3 sizes."""
    from autopar.ir.io import parse_text

    small, large = (parse_text(COMPARED.format(m=m, c=threshold)) for m in (4, 8))
    micro_batch.annotate(small, large, 4, B)
    main = micro_batch.main_function(small)
    multiply = [
        op for op in main.regions[0].blocks[0].operations if op.operation.name == "stablehlo.multiply"
    ]
    assert attrs.get_micro_batch_labels(multiply[0])[0].split(":")[0] == label.split(":")[0]
    assert attrs.get_micro_batch_labels(multiply[0])[0].startswith(label)


WRAPPED_INDEX = """
func.func @main(%cache: tensor<{m}x8xf32>, %new: tensor<{m}x1xf32>, %pos: tensor<i32>) -> tensor<{m}x8xf32> {{
  %zero = stablehlo.constant dense<0> : tensor<i32>
  %n = stablehlo.constant dense<{m}> : tensor<i32>
  %negative = stablehlo.compare LT, %zero, %zero, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
  %wrapped = stablehlo.add %zero, %n : tensor<i32>
  %row = stablehlo.select %negative, %wrapped, %zero : tensor<i1>, tensor<i32>
  %r = stablehlo.dynamic_update_slice %cache, %new, %row, %pos
    : (tensor<{m}x8xf32>, tensor<{m}x1xf32>, tensor<i32>, tensor<i32>) -> tensor<{m}x8xf32>
  return %r : tensor<{m}x8xf32>
}}
"""


@pytest.mark.parametrize("B, label", [(4, "concat:0"), (None, "unknown")])
def test_a_select_on_a_decided_comparison_takes_the_kind_of_the_operand_it_picks(B, label):
    """jnp's wrap of the batch dim's constant index 0 in an attention cache's update: `select(0 < 0,
    0 + n, 0)` never takes `0 + n` (n the batch size), so the row index is the constant 0 in every
    program and the cache is per example; undecided (no number of micro-batches given), it stays unknown."""
    from autopar.ir.io import parse_text

    small, large = (parse_text(WRAPPED_INDEX.format(m=m)) for m in (4, 8))
    micro_batch.annotate(small, large, 4, B)
    main = micro_batch.main_function(small)
    (update,) = [
        op
        for op in main.regions[0].blocks[0].operations
        if op.operation.name == "stablehlo.dynamic_update_slice"
    ]
    assert attrs.get_micro_batch_labels(update)[0].startswith(label)
