"""A training step's state leaves the step in the layout it came in, so feeding the outputs back into the
next call moves nothing between steps (graph_facts.parameter_results pairs each state argument with the
result that updates it; emit.py writes the argument's layout on that result and the problem prices the
reshard inside the step).

Pairing used to go by order alone and shifted after any state argument the step returns as it came (a
dropout PRNG key in a flax NNX model) or does not return at all (frozen weights): every later leaf was
paired with its neighbour's result, left free, and came out in another layout, which the next call then
resharded outside the plan, unpriced. The NNX transformer below had 24 of its state leaves drift on 2x4."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import autopar
from autopar.api import explain_problem
from autopar.passes.intra_op.graph_facts import parameter_results
from numeric import assert_priced_bytes_compiled, assert_trees_close, normal

MESHES = [(8,), (2, 4), (2, 2, 2)]
# Momentum, not Adam: Adam divides each gradient by its own scale, so the rounding of a near-zero gradient
# (summed in another order on another mesh) moves a whole step, and parameters stop agreeing to 1e-5.
_OPTIMIZER = optax.sgd(0.05, momentum=0.9)


def _mesh_id(shape):
    return "x".join(map(str, shape))


def _drifted(plan, state_inputs: range, state_outputs: range) -> list[str]:
    """State leaves whose planned output layout differs from their input layout (same pytree order)."""
    return [
        f"{plan.inputs[i].path}: {plan.inputs[i].spec} -> {plan.outputs[o].spec}"
        for i, o in zip(state_inputs, state_outputs, strict=True)
        if plan.inputs[i].spec != plan.outputs[o].spec
    ]


# A flax NNX model and optimizer passed as pytrees (flax >= 0.11), as `nnx.jit` users write a step for
# jax.jit: the dropout's PRNG key goes back unchanged, its counter and every parameter updated.
class _Block(nnx.Module):
    def __init__(self, width: int, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        # No biases: a key bias has a zero gradient in exact arithmetic (softmax ignores a constant per
        # query), so Adam turns its rounding noise into lr-sized steps that differ with any summation order.
        self.attention = nnx.MultiHeadAttention(
            num_heads=4, in_features=width, decode=False, use_bias=False, rngs=rngs
        )
        self.up = nnx.Linear(width, 4 * width, rngs=rngs)
        self.down = nnx.Linear(4 * width, width, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)

    def __call__(self, x):
        x = x + self.attention(self.norm(x))
        return x + self.dropout(self.down(nnx.gelu(self.up(x))))


class _LanguageModel(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, vocab: int = 512, width: int = 128, layers: int = 2):
        self.embed = nnx.Embed(vocab, width, rngs=rngs)
        self.blocks = nnx.List([_Block(width, rngs) for _ in range(layers)])
        self.head = nnx.Linear(width, vocab, rngs=rngs)

    def __call__(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def _nnx_step(model, optimizer, tokens, targets):
    def loss_fn(m):
        return optax.softmax_cross_entropy_with_integer_labels(m(tokens), targets).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss, model, optimizer


def _nnx_state():
    model = _LanguageModel(nnx.Rngs(0))
    return model, nnx.Optimizer(model, _OPTIMIZER, wrt=nnx.Param)


@pytest.mark.parametrize("mesh_shape", MESHES, ids=_mesh_id)
def test_an_nnx_model_keeps_every_state_layout_and_trains_like_jit(mesh_shape):
    tokens = jax.random.randint(jax.random.key(1), (16, 32), 0, 512)
    targets = jnp.roll(tokens, 1, axis=1)
    f = autopar.parallelize(
        _nnx_step, method=autopar.ShardParallel(mesh_shape=mesh_shape), batch_argnums=(2, 3)
    )
    mine, theirs = _nnx_state(), _nnx_state()
    n = len(jax.tree.leaves(mine))
    plan = f.get_execution_plan(*mine, tokens, targets)
    assert _drifted(plan, range(n), range(1, n + 1)) == []
    if len(mesh_shape) > 1:  # the 2- and 3-axis plans split state (on 8 devices it is data parallel)
        assert any(p.spec != jax.sharding.PartitionSpec() for p in plan.inputs[:n])
    for _ in range(3):  # outputs fed back: each call finds its state where the plan wants it
        my_loss, *mine = f(*mine, tokens, targets)
        their_loss, *theirs = jax.jit(_nnx_step)(*theirs, tokens, targets)
        assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    assert_trees_close(nnx.state(mine[0], nnx.Param), nnx.state(theirs[0], nnx.Param), rtol=1e-4, atol=1e-5)
    assert_priced_bytes_compiled(plan)


# Frozen weights between the trained ones and the optimizer state, of the same type as both.
def _frozen_step(params, frozen, opt_state, x):
    def loss(p):
        return jnp.mean((jnp.tanh(x @ frozen["embed"] @ p["w1"]) @ p["w2"]) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = _OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


_WIDTH = 256


def _frozen_args():
    params = {"w1": normal((_WIDTH, _WIDTH), seed=1) * 0.1, "w2": normal((_WIDTH, _WIDTH), seed=2) * 0.1}
    frozen = {"embed": normal((_WIDTH, _WIDTH), seed=3) * 0.1}
    return params, frozen, _OPTIMIZER.init(params), normal((64, _WIDTH), seed=4)


def test_state_pairs_by_pytree_path_past_an_argument_the_step_does_not_return():
    f = autopar.parallelize(_frozen_step, method=autopar.ShardParallel(mesh_shape=(2, 4)), batch_argnums=(3,))
    plan = f.get_execution_plan(*_frozen_args())
    graph = explain_problem.rebuild(plan.source).graph
    pairs = {graph.nodes[v].path: graph.result_paths[j] for v, j in parameter_results(graph).items()}
    assert pairs == {
        "params['w1']": "result[0]['w1']",
        "params['w2']": "result[0]['w2']",
        "opt_state[0].trace['w1']": "result[1][0].trace['w1']",
        "opt_state[0].trace['w2']": "result[1][0].trace['w2']",
    }


@pytest.mark.parametrize("mesh_shape", MESHES, ids=_mesh_id)
def test_frozen_weights_leave_the_state_layouts_as_they_came_and_train_like_jit(mesh_shape):
    params, frozen, opt_state, x = _frozen_args()
    f = autopar.parallelize(
        _frozen_step, method=autopar.ShardParallel(mesh_shape=mesh_shape), batch_argnums=(3,)
    )
    plan = f.get_execution_plan(params, frozen, opt_state, x)
    n_params, n_opt = len(jax.tree.leaves(params)), len(jax.tree.leaves(opt_state))
    state_in = [*range(n_params), *range(n_params + 1, n_params + 1 + n_opt)]
    assert _drifted(plan, state_in, range(n_params + n_opt)) == []
    mine, theirs = (params, opt_state), (params, opt_state)
    for _ in range(2):
        *mine, my_loss = f(mine[0], frozen, mine[1], x)
        *theirs, their_loss = jax.jit(_frozen_step)(theirs[0], frozen, theirs[1], x)
        assert float(my_loss) == pytest.approx(float(their_loss), rel=1e-5)
    assert_trees_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_donated_nnx_state_is_reused_for_every_state_output():
    """Donation lets XLA write each output into the buffer of an input with the same per-device layout:
    with every state leaf back in its input layout, all of them are reused (40 of 51 before the pairing
    by path, on this mesh)."""
    tokens = jax.random.randint(jax.random.key(1), (16, 32), 0, 512)
    targets = jnp.roll(tokens, 1, axis=1)
    method = autopar.ShardParallel(mesh_shape=(2, 4))
    f = autopar.parallelize(_nnx_step, method=method, batch_argnums=(2, 3), donate_argnums=(0, 1))
    state = _nnx_state()
    hlo = f.lower(*state, tokens, targets).compile().as_text()
    aliases = hlo.split("input_output_alias={", 1)[1].split("}, entry", 1)[0]
    assert aliases.count("may-alias") + aliases.count("must-alias") >= len(jax.tree.leaves(state))


def _nnx_step_in_place(model, optimizer, tokens, targets):
    """As `nnx.jit` users write it: the modules are updated in place, only the loss is returned."""
    loss, _, _ = _nnx_step(model, optimizer, tokens, targets)
    return loss


@pytest.mark.parametrize("mesh_shape", [(2, 4)], ids=_mesh_id)
def test_nnx_modules_updated_in_place_train_as_under_nnx_jit(mesh_shape):
    """Under jax.jit (and parallelize before) the caller's model never changed: the step updated a copy
    made inside the trace. The updates, the optimizer's step and the dropout's PRNG counter come back."""
    tokens = jax.random.randint(jax.random.key(1), (16, 32), 0, 512)
    targets = jnp.roll(tokens, 1, axis=1)
    method = autopar.ShardParallel(mesh_shape=mesh_shape)
    f = autopar.parallelize(_nnx_step_in_place, method=method, batch_argnums=(2, 3))
    (mine, my_opt), (theirs, their_opt) = _nnx_state(), _nnx_state()
    reference = nnx.jit(_nnx_step_in_place)
    for _ in range(3):
        assert float(f(mine, my_opt, tokens, targets)) == pytest.approx(
            float(reference(theirs, their_opt, tokens, targets)), rel=1e-5
        )
    assert int(my_opt.step[...]) == 3
    assert_trees_close(nnx.state(mine, nnx.Param), nnx.state(theirs, nnx.Param), rtol=1e-4, atol=1e-5)
    # The plan lists the written-back modules as outputs after the loss, in their input layouts.
    plan = f.get_execution_plan(mine, my_opt, tokens, targets)
    n = len(jax.tree.leaves((mine, my_opt)))
    assert _drifted(plan, range(n), range(1, n + 1)) == []
    # Named as the user knows them: the loss the step returns is `out`, the written-back state is the new
    # value of its argument, and explain takes an NNX variable without its `.value`.
    names = [t.path for t in plan.outputs]
    assert (
        names[0] == "out" and "new model.head.kernel.value" in names and "new optimizer.step.value" in names
    )
    assert "model.head.kernel.value: argument" in str(plan.explain("model.head.kernel"))


class _Mlp(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, width: int = 32, layers: int = 4):
        self.layers = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(layers)])

    def __call__(self, x):
        for layer in self.layers:
            x = nnx.tanh(layer(x))
        return x


def _mlp_step_in_place(model, optimizer, x, y):
    def loss_fn(m):
        return jnp.mean((m(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def test_nnx_modules_updated_in_place_pipeline_and_their_plan_names_them_as_the_user_does():
    """PipeshardParallel writes the modules back as nnx.jit does; the stage plan's explain takes an NNX
    variable without its `.value`, and the plan report (`--plan-report`'s data) names the outputs as
    get_execution_plan does (`out`, `new model...`), not by JAX's `result[1]...`."""
    from autopar.api import plan_report

    def state():
        model = _Mlp(nnx.Rngs(0))
        return model, nnx.Optimizer(model, _OPTIMIZER, wrt=nnx.Param)

    x, y = normal((16, 32), seed=1), normal((16, 32), seed=2)
    method = autopar.PipeshardParallel(num_micro_batches=2, layer_option=autopar.AutoLayerOption(layer_num=2))
    f = autopar.parallelize(_mlp_step_in_place, method=method, batch_argnums=(2, 3))
    (mine, my_opt), (theirs, their_opt) = state(), state()
    for _ in range(2):
        got = float(f(mine, my_opt, x, y))
        assert got == pytest.approx(float(nnx.jit(_mlp_step_in_place)(theirs, their_opt, x, y)), rel=1e-5)
    assert int(my_opt.step[...]) == 2
    assert_trees_close(nnx.state(mine, nnx.Param), nnx.state(theirs, nnx.Param), rtol=1e-4, atol=1e-5)
    plan = f.get_execution_plan(mine, my_opt, x, y)
    assert str(plan.explain("model.layers[0].kernel")).startswith("model.layers[0].kernel.value: read by")
    outputs = [t["name"] for t in plan_report.report(plan.source.module)["outputs"]]
    assert outputs[0] == "out" and "new model.layers[3].kernel.value" in outputs
    assert "new optimizer.step.value" in outputs and not any("result" in name for name in outputs)


def test_a_compiled_nnx_step_writes_back_as_the_parallelized_function_does():
    """`f.lower(...).compile()` runs the same executable: it returned the written-back modules beside the
    loss and left the caller's model as it was."""
    tokens = jax.random.randint(jax.random.key(1), (16, 32), 0, 512)
    targets = jnp.roll(tokens, 1, axis=1)
    f = autopar.parallelize(
        _nnx_step_in_place, method=autopar.ShardParallel(mesh_shape=(8,)), batch_argnums=(2, 3)
    )
    (mine, my_opt), (theirs, their_opt) = _nnx_state(), _nnx_state()
    compiled = f.lower(mine, my_opt, tokens, targets).compile()
    loss = compiled(mine, my_opt, tokens, targets=targets)  # a keyword at its position, as f takes it
    assert loss.shape == () and int(my_opt.step[...]) == 1
    assert float(loss) == pytest.approx(
        float(nnx.jit(_nnx_step_in_place)(theirs, their_opt, tokens, targets)), rel=1e-5
    )
    assert_trees_close(nnx.state(mine, nnx.Param), nnx.state(theirs, nnx.Param), rtol=1e-4, atol=1e-5)


def _step_on_a_tuple(state, tokens, targets):
    model, optimizer = state
    return _nnx_step_in_place(model, optimizer, tokens, targets)


def _step_on_a_dict(tokens, *, modules):
    return _nnx_step_in_place(modules["model"], modules["optimizer"], tokens, jnp.roll(tokens, 1, axis=1))


def test_nnx_modules_inside_tuples_dicts_and_keywords_are_written_back_as_nnx_jit_does():
    """nnx.jit finds modules at any depth of the arguments; before, only whole module arguments came back,
    and a model passed in a tuple or a dict (or by keyword) silently never trained."""
    tokens = jax.random.randint(jax.random.key(1), (16, 32), 0, 512)
    targets = jnp.roll(tokens, 1, axis=1)
    method = autopar.ShardParallel(mesh_shape=(8,))
    f = autopar.parallelize(_step_on_a_tuple, method=method, batch_argnums=(1, 2))
    mine, theirs = _nnx_state(), _nnx_state()
    for _ in range(2):
        got = float(f(mine, tokens, targets))
        assert got == pytest.approx(float(nnx.jit(_step_on_a_tuple)(theirs, tokens, targets)), rel=1e-5)
    assert int(mine[1].step[...]) == 2
    assert_trees_close(nnx.state(mine[0], nnx.Param), nnx.state(theirs[0], nnx.Param), rtol=1e-4, atol=1e-5)

    g = autopar.parallelize(_step_on_a_dict, method=method)
    (model, optimizer), (their_model, their_optimizer) = _nnx_state(), _nnx_state()
    mine = {"model": model, "optimizer": optimizer}
    theirs = {"model": their_model, "optimizer": their_optimizer}
    for _ in range(2):
        got = float(g(tokens, modules=mine))
        assert got == pytest.approx(float(nnx.jit(_step_on_a_dict)(tokens, modules=theirs)), rel=1e-5)
    assert int(optimizer.step[...]) == 2
    assert_trees_close(nnx.state(model, nnx.Param), nnx.state(their_model, nnx.Param), rtol=1e-4, atol=1e-5)


def test_shared_state_inside_one_argument_is_refused_by_its_path():
    model = nnx.Linear(8, 8, rngs=nnx.Rngs(0))
    from autopar.api.nnx_modules import SharedModuleError

    def step(state, x):
        return jnp.sum(state[0](x))

    with pytest.raises(SharedModuleError, match=r"arguments state\[0\] and state\[1\] share NNX state"):
        autopar.parallelize(step)((model, nnx.ModelAndOptimizer(model, _OPTIMIZER)), normal((8, 8)))


def test_a_module_the_step_returns_is_not_returned_twice():
    model, optimizer = _nnx_state()
    tokens = jax.random.randint(jax.random.key(1), (16, 32), 0, 512)

    def step(model, optimizer, tokens):
        _nnx_step(model, optimizer, tokens, tokens)
        return model  # the optimizer's update is written back; the model comes back as returned

    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=(8,)), batch_argnums=(2,))
    new_model = f(model, optimizer, tokens)
    assert isinstance(new_model, _LanguageModel) and int(optimizer.step[...]) == 1


def test_a_model_and_the_optimizer_holding_it_are_refused_and_the_optimizer_alone_trains():
    """nnx.ModelAndOptimizer holds its model. Passed beside it, each argument is a separate copy in the
    trace (as under jax.jit): an update through one would be lost on the other, so the step is refused;
    the optimizer alone trains as under nnx.jit."""
    from autopar.api.nnx_modules import SharedModuleError

    x = normal((16, 32), seed=5)

    def make():
        model = nnx.Linear(32, 32, rngs=nnx.Rngs(0))
        return model, nnx.ModelAndOptimizer(model, _OPTIMIZER)

    def step(model, optimizer, x):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(x) ** 2))(model)
        optimizer.update(grads)
        return loss

    model, optimizer = make()
    with pytest.raises(SharedModuleError, match="arguments model and optimizer share NNX state"):
        autopar.parallelize(step, batch_argnums=(2,))(model, optimizer, x)

    def alone(optimizer, x):
        return step(optimizer.model, optimizer, x)

    (_, mine), (_, theirs) = make(), make()
    f = autopar.parallelize(alone, method=autopar.ShardParallel(mesh_shape=(2, 4)))
    for _ in range(2):
        assert float(f(mine, x)) == pytest.approx(float(nnx.jit(alone)(theirs, x)), rel=1e-5)
    assert_trees_close(nnx.state(mine.model, nnx.Param), nnx.state(theirs.model, nnx.Param))


def test_an_exported_nnx_step_returns_what_the_step_returns():
    """An Exported is pure, as jax.export(jax.jit(step)): the modules a step updates in place are not
    added to its outputs (parallelize adds them for write-back)."""
    model, optimizer = _nnx_state()
    tokens = jax.random.randint(jax.random.key(1), (16, 32), 0, 512)
    exported = autopar.export(_nnx_step_in_place, model, optimizer, tokens, tokens, batch_argnums=(2, 3))
    assert exported.out_tree.num_leaves == 1
    mesh = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
    leaves = jax.tree.leaves((model, optimizer, tokens, tokens))
    placed = [jax.device_put(a, sh) for a, sh in zip(leaves, exported.in_shardings_jax(mesh), strict=True)]
    args, _ = jax.tree.unflatten(exported.in_tree, placed)
    want = jax.jit(_nnx_step_in_place)(model, optimizer, tokens, tokens)
    assert float(exported.call(*args)) == pytest.approx(float(want), rel=1e-5)


class _TutorialCNN(nnx.Module):
    """The CNN of flax's NNX MNIST tutorial (smaller)."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 8, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, kernel_size=(3, 3), rngs=rngs)
        self.linear1 = nnx.Linear(16 * 7 * 7, 64, rngs=rngs)
        self.linear2 = nnx.Linear(64, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.avg_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        return self.linear2(nnx.relu(self.linear1(x.reshape(x.shape[0], -1))))


def _tutorial_train_step(model, optimizer, metrics, batch):
    """The tutorial's step, as written for nnx.jit: model, optimizer and metrics all updated in place."""

    def loss_fn(model):
        logits = model(batch["image"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), logits

    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])
    optimizer.update(model, grads)


@pytest.mark.parametrize("mesh_shape", [(8,), (2, 4)], ids=_mesh_id)
def test_the_nnx_mnist_tutorial_step_trains_and_counts_as_under_nnx_jit(mesh_shape):
    def make():
        model = _TutorialCNN(nnx.Rngs(0))
        metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
        return model, nnx.Optimizer(model, _OPTIMIZER, wrt=nnx.Param), metrics

    batch = {"image": normal((32, 28, 28, 1), seed=6), "label": (normal((32,), seed=7) > 0).astype("int32")}
    f = autopar.parallelize(
        _tutorial_train_step, method=autopar.ShardParallel(mesh_shape=mesh_shape), batch_argnums=(3,)
    )
    mine, theirs = make(), make()
    for _ in range(3):
        f(*mine, batch)
        nnx.jit(_tutorial_train_step)(*theirs, batch)
    assert_trees_close(mine[2].compute(), theirs[2].compute(), rtol=1e-5, atol=1e-6)
    assert_trees_close(nnx.state(mine[0], nnx.Param), nnx.state(theirs[0], nnx.Param), rtol=1e-4, atol=1e-5)
    assert int(mine[1].step[...]) == 3


def test_a_step_called_under_another_ambient_mesh_trains_like_jit_and_its_outputs_move_to_that_mesh():
    """docs/api.md, "State in, state out": under `jax.set_mesh` of another shape the step runs as planned;
    its outputs, on autopar's mesh, take part in eager math there once put on the ambient mesh."""
    params = {"w1": normal((16, 32), 0), "w2": normal((32, 8), 1)}
    batch = {"x": normal((64, 16), 2), "y": normal((64, 8), 3)}

    def step(params, batch):
        def loss(p):
            hidden = jax.lax.with_sharding_constraint(jnp.tanh(batch["x"] @ p["w1"]), PartitionSpec())
            return jnp.mean((hidden @ p["w2"] - batch["y"]) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value

    ambient = Mesh(np.array(jax.devices()), ("d",))
    with jax.set_mesh(ambient):
        theirs = jax.jit(step)(params, batch)
        mine = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=(2, 4)))(params, batch)
        moved = jax.device_put(mine, NamedSharding(ambient, PartitionSpec()))
        differences = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), moved, theirs)
    assert max(jax.tree.leaves(differences)) < 1e-4


def _functional_step(params, rest, opt_state, tokens, targets):
    """The functional NNX pattern (`graphdef, state = nnx.split(model)`, as nnx's docs pair with jax.jit):
    states of Variables in, new states out."""

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(
            nnx.merge(_GRAPHDEF, p, rest)(tokens), targets
        ).mean()

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = _OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


def _eval_model():
    model = _LanguageModel(nnx.Rngs(0))
    model.eval()  # dropout off (in the graphdef): the rest of the state goes in unchanged
    return model


_GRAPHDEF = nnx.graphdef(_eval_model())


def _split_state():
    _, params, rest = nnx.split(_eval_model(), nnx.Param, ...)
    return params, rest, _OPTIMIZER.init(params)


def test_nnx_states_of_variables_train_like_jit_and_come_back_only_as_returned():
    """An nnx.State holds Variables, each a graph node of its own; parallelize took each for a module to
    write back and failed in nnx.state (IndexError) on the first call of any functional NNX step."""
    tokens = jax.random.randint(jax.random.key(1), (16, 32), 0, 512)
    targets = jnp.roll(tokens, 1, axis=1)
    f = autopar.parallelize(
        _functional_step, method=autopar.ShardParallel(mesh_shape=(2, 4)), batch_argnums=(3, 4)
    )
    (params, rest, opt_state), (their_params, their_rest, their_opt) = _split_state(), _split_state()
    plan = f.get_execution_plan(params, rest, opt_state, tokens, targets)
    step_leaves = len(
        jax.tree.leaves(jax.eval_shape(_functional_step, params, rest, opt_state, tokens, targets))
    )
    assert len(plan.outputs) == step_leaves  # nothing appended: the step left every input Variable alone
    for _ in range(2):
        params, opt_state, loss = f(params, rest, opt_state, tokens, targets)
        their_params, their_opt, their_loss = jax.jit(_functional_step)(
            their_params, their_rest, their_opt, tokens, targets
        )
        assert float(loss) == pytest.approx(float(their_loss), rel=1e-5)
    assert_trees_close(params, their_params, rtol=1e-4, atol=1e-5)


def test_variables_updated_in_place_are_written_back_as_nnx_jit_does():
    """A bare Variable and the Variables of an nnx.State, assigned inside the step: nnx.jit writes the new
    values into the caller's Variables, and so does parallelize; a Variable the step only reads is not
    copied out."""

    def step(state, counter, scale, x):
        state["kernel"][...] = state["kernel"][...] - 0.1 * jnp.tanh(x @ state["kernel"][...]).T @ x
        counter[...] = counter[...] + 1
        return jnp.sum(x * scale[...])

    def args():
        layer = nnx.Linear(16, 16, rngs=nnx.Rngs(0))
        return (
            layer,
            nnx.state(layer, nnx.Param),
            nnx.Variable(jnp.zeros((), jnp.int32)),
            nnx.Param(jnp.ones(16)),
        )

    x = normal((8, 16), seed=5)
    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=(2, 4)), batch_argnums=(3,))
    (layer, state, counter, scale), (their_layer, theirs, their_counter, their_scale) = args(), args()
    names = [o.path for o in f.get_execution_plan(state, counter, scale, x).outputs]
    assert not any("scale" in n for n in names) and any("counter" in n for n in names), names
    for _ in range(2):
        got = f(state, counter, scale, x)
        assert float(got) == pytest.approx(
            float(nnx.jit(step)(theirs, their_counter, their_scale, x)), rel=1e-5
        )
    assert int(counter[...]) == 2 == int(their_counter[...])
    assert_trees_close(layer.kernel[...], their_layer.kernel[...], rtol=1e-5, atol=1e-6)  # the model's own
    assert not np.allclose(layer.kernel[...], args()[0].kernel[...])


def test_a_module_the_step_only_reads_is_not_copied_out():
    """Distillation: the teacher is read, the student and its optimizer updated in place. nnx.jit writes
    back what changed; parallelize used to return every module argument the step did not return, so the
    teacher's whole state was copied out of every step unchanged."""

    class Net(nnx.Module):
        def __init__(self, width: int, rngs: nnx.Rngs):
            self.up = nnx.Linear(32, width, rngs=rngs)
            self.down = nnx.Linear(width, 8, rngs=rngs)

        def __call__(self, x):
            return self.down(nnx.relu(self.up(x)))

    def distill(student, optimizer, teacher, x):
        target = teacher(x)
        loss, grads = nnx.value_and_grad(lambda s: jnp.mean((s(x) - target) ** 2))(student)
        optimizer.update(student, grads)
        return loss

    def models():
        student = Net(16, nnx.Rngs(0))
        return student, nnx.Optimizer(student, _OPTIMIZER, wrt=nnx.Param), Net(64, nnx.Rngs(1))

    x = normal((16, 32), seed=6)
    f = autopar.parallelize(distill, method=autopar.ShardParallel(mesh_shape=(2, 4)), batch_argnums=(3,))
    mine, theirs = models(), models()
    names = [o.path for o in f.get_execution_plan(*mine, x).outputs]
    assert any(n.startswith("new student") for n in names) and any(
        n.startswith("new optimizer") for n in names
    )
    assert not any(n.startswith("new teacher") for n in names), names
    for _ in range(2):
        assert float(f(*mine, x)) == pytest.approx(float(nnx.jit(distill)(*theirs, x)), rel=1e-5)
    assert int(mine[1].step[...]) == 2
    assert_trees_close(nnx.state(mine[0], nnx.Param), nnx.state(theirs[0], nnx.Param), rtol=1e-4, atol=1e-5)
