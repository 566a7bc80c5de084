"""The in-process executor moves every value crossing stages as its `autopar.transfer` op says
(runtime/transfer.py `move`), once per micro-batch (once per step for what the apply parts read), keeps
the micro-batch labels of the values it moves, and waits for their producers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from benchmarks.models.small import tied_adam_step

import autopar
from autopar.ir import attrs
from autopar.runtime import transfer

OPTIMIZER = optax.adam(1e-2)
BATCH, WIDTH, B = 32, 32, 2


@pytest.fixture(scope="module")
def planned():
    rng = np.random.default_rng(3)
    params = {
        "embed": jnp.asarray(rng.standard_normal((WIDTH, WIDTH)) * 0.1, jnp.float32),
        "hidden": [jnp.asarray(rng.standard_normal((WIDTH, WIDTH)) * 0.1, jnp.float32) for _ in range(3)],
    }
    x = jnp.asarray(rng.standard_normal((BATCH, WIDTH)), jnp.float32)
    method = autopar.PipeshardParallel(
        num_micro_batches=B,
        layer_option=autopar.AutoLayerOption(layer_num=4),
        stage_option=autopar.UniformStageOption(num_stages=2),
        executor="in-process",
    )
    step = autopar.parallelize(tied_adam_step, method=method, batch_argnums=(2,))
    args = (params, OPTIMIZER.init(params), (x, x))
    step(*args)  # plans and compiles
    return step, args


def transfers_of(program):
    """transfer result -> (Transfer, the parts that read it)."""
    out = {}
    for c in program.calls:
        for t in c.transfers:
            if t is not None:
                out.setdefault(t.result, (t, set()))[1].add(c.part)
    return out


def test_every_crossing_value_moves_by_its_plan(planned, monkeypatch):
    step, args = planned
    executor = step._cache[next(iter(step._cache))].executable
    program = executor.program
    moves = transfers_of(program)
    assert moves, "autopar-pipeshard writes transfer ops between the two stages"
    readers = {v: parts for v, (_, parts) in moves.items()}
    moves = {v: t for v, (t, _) in moves.items()}
    for t in moves.values():
        assert t.plan.src.stage == t.producer.stage != t.plan.dst.stage
    # The tied parameter's gradient goes from the last stage's backward to the first stage's backward
    # (which sums it); Adam's step scalars are recomputed by each stage's apply, so no apply part waits
    # for another's.
    assert any(t.producer.part == "backward" and t.plan.dst.stage == 0 for t in moves.values())
    assert not any(t.producer.part == "apply" for t in moves.values())

    calls = []
    real_move = transfer.move

    def counting_move(x, plan, sharding):
        y = real_move(x, plan, sharding)
        calls.append((plan, y))
        return y

    monkeypatch.setattr(transfer, "move", counting_move)
    got = step(*args)
    per_micro_batch = sum(1 for v in moves if readers[v] - {"apply"})
    once = sum(1 for v in moves if readers[v] == {"apply"})
    assert len(calls) == B * per_micro_batch + once
    for plan, y in calls:  # each arrives on its destination devices, in the planned tiles
        assert {d.id for d in y.devices()} == set(plan.dst.devices)
    want = jax.jit(tied_adam_step)(*args)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


MODULE = """
func.func public @main(%arg0: tensor<4x2xf32> {autopar.batch}) -> tensor<f32> {
  %0 = call @stage_0_forward(%arg0) : (tensor<4x2xf32>) -> tensor<f32>
  %1 = call @stage_1_forward(%0) : (tensor<f32>) -> tensor<f32>
  return %1 : tensor<f32>
}
func.func private @stage_0_forward(%arg0: tensor<4x2xf32>) -> tensor<f32> attributes {
    autopar.mesh = {device_ids = array<i64: 0, 1>, shape = array<i64: 1, 2>}, autopar.part = "forward",
    autopar.stage = 0 : i64} {
  %cst = stablehlo.constant dense<0.0> : tensor<f32>
  %0 = stablehlo.reduce(%arg0 init: %cst) applies stablehlo.add across dimensions = [0, 1]
      {autopar.micro_batch = ["sum"]} : (tensor<4x2xf32>, tensor<f32>) -> tensor<f32>
  return %0 : tensor<f32>
}
func.func private @stage_1_forward(%arg0: tensor<f32>) -> tensor<f32> attributes {
    autopar.mesh = {device_ids = array<i64: 2>, shape = array<i64: 1, 1>}, autopar.part = "forward",
    autopar.stage = 1 : i64} {
  return %arg0 : tensor<f32>
}
"""


def test_a_moved_value_keeps_its_micro_batch_label_and_waits_for_its_producer():
    from autopar import ir as air
    from autopar import passes
    from autopar.runtime.sequential import SequentialExecutor

    module = air.parse_text(MODULE)
    attrs.set_micro_batch_size(module.operation, 4)
    passes.run(module, "builtin.module(autopar-reshard)")
    executor = SequentialExecutor(module, num_micro_batches=2)
    program = executor.program
    ((moved, _),) = transfers_of(program).values()
    # @stage_1_forward returns its argument, a transfer's result: the label is the one of the value the
    # transfer moves, a sum over the examples of @stage_0_forward.
    (returned,) = program.returns
    assert program.combine[returned] == "sum"
    assert program._needs()[("forward", 1)] == {("forward", 0)}
    x = np.arange(16, dtype=np.float32).reshape(8, 2)
    (got,) = executor(x)
    assert float(got) == float(x.sum())
    assert {d.id for d in got.devices()} == {2} and moved.plan.dst.devices == (2,)
