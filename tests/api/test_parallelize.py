"""autopar.parallelize: jax.jit-like caching, pytrees, donation, AOT lower/compile, execution plans and
errors, on 8 virtual CPU devices. Plans here are given by hand (ManualShardingOption) or by a test double
of autopar-intra-op that checks the API's side of the pass contract; test_parallelize_e2e.py runs the real
pass. Every output is compared with the unsharded program."""

from __future__ import annotations

import dataclasses
import types

import jax
import jax.numpy as jnp
import optax
import pytest
from jax.sharding import PartitionSpec as P
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import func, sdy

import autopar
from autopar.api import methods
from autopar.errors import ArgumentError, AutoparError
from autopar.ir import attrs
from autopar.passes import registry
from autopar.runtime import shardings as sh
from numeric import assert_trees_close, normal

MEGATRON = autopar.ShardParallel(
    mesh_shape=(2, 4),
    manual_sharding_option=autopar.ManualShardingOption(
        ("x", "y"),
        in_axis_resources=({"w1": P(None, "y"), "w2": P("y", None)}, P("x")),
        out_axis_resources={"y": P("x"), "h_sum": None},
    ),
)


def mlp(params, x):
    h = jnp.tanh(x @ params["w1"])
    return {"y": h @ params["w2"], "h_sum": jnp.abs(h).sum()}


def _params(hidden=64, d=16, seed=0):
    return {"w1": normal((d, hidden), seed) / 4, "w2": normal((hidden, d), seed + 100) / 8}


def _batch(n=32, d=16, seed=1):
    return normal((n, d), seed)


def test_manual_megatron_mlp_matches_unsharded_and_returns_named_shardings():
    f = autopar.parallelize(mlp, method=MEGATRON)
    params, x = _params(), _batch()
    out = f(params, x)
    assert_trees_close(out, jax.jit(mlp)(params, x))
    assert out["y"].sharding.spec == P("x") and out["h_sum"].sharding.spec == P()
    assert isinstance(out["y"].sharding, jax.sharding.NamedSharding)


@pytest.mark.parametrize(
    ("ins", "outs", "message"),
    [
        ((None, P("x"), P()), None, "in_axis_resources has 3 entries where the arguments have 2$"),
        (
            ({"w1": P()}, P("x")),
            None,
            r"in_axis_resources\[0\] has keys \['w1'\] where the arguments have \['w1', 'w2'\]$",
        ),
        (([P()], P("x")), None, r"in_axis_resources\[0\] is a list where the arguments have a dict$"),
        ((None, (P("x"),)), None, r"in_axis_resources\[1\] is a tuple where the arguments have an array$"),
        (
            (None, P("x")),
            {"y": (P(),), "h_sum": None},
            r"out_axis_resources\['y'\] is a tuple where the outputs",
        ),
    ],
)
def test_manual_specs_that_do_not_fit_say_where_in_one_line(ins, outs, message):
    # JAX's own message spans five lines and names its variables ("broadcast_prefix prefix_tree").
    method = autopar.ShardParallel(
        mesh_shape=(2, 4), manual_sharding_option=autopar.ManualShardingOption(("x", "y"), ins, outs)
    )
    with pytest.raises(ValueError, match=message) as info:
        autopar.parallelize(mlp, method=method)(_params(), _batch())
    assert "\n" not in str(info.value) and "is not a pytree prefix of what it describes: " in str(info.value)


def test_compiles_once_per_signature():
    f = autopar.parallelize(mlp, method=MEGATRON)
    params, x = _params(), _batch()
    for _ in range(3):
        f(params, x)
    assert f.cache_size() == 1
    f(params, _batch(seed=5))  # same signature, other values
    assert f.cache_size() == 1
    f(params, _batch(n=64))  # new shape
    assert f.cache_size() == 2
    f(jax.tree.map(lambda a: a.astype(jnp.bfloat16), params), _batch(n=64).astype(jnp.bfloat16))
    assert f.cache_size() == 3


def test_static_arguments_and_pytree_structure_key_the_cache():
    def scaled(params, x, scale):
        return jax.tree.map(lambda w: w * scale, params), x * scale

    f = autopar.parallelize(
        scaled,
        static_argnums=(2,),
        method=autopar.ShardParallel(
            manual_sharding_option=autopar.ManualShardingOption(("x",), (None, P("x")))
        ),
    )
    params, x = _params(), _batch()
    for scale in (2.0, 3.0, 2.0):
        assert_trees_close(f(params, x, scale), jax.jit(scaled, static_argnums=2)(params, x, scale))
    assert f.cache_size() == 2
    assert_trees_close(f({"w1": params["w1"]}, x, 2.0), ({"w1": params["w1"] * 2}, x * 2))
    assert f.cache_size() == 3


def test_static_argnames_as_jax_jits_keyword_only_arguments_too():
    # A keyword-only flag (def step(p, x, *, train)) could not be static at all: the error said
    # "static_argnums", which cannot name it, and the traced bool failed in Python control flow.
    def step(params, x, *, train, activation="tanh"):
        h = getattr(jnp, activation)(x @ params["w1"]) @ params["w2"]
        return jnp.mean(h**2) * (1.0 if train else 0.5)

    def ranked(params, x, scale):
        return jnp.mean(x @ params["w1"]) * (scale if scale > 1 else 1)

    params, x = _params(), _batch()
    method = autopar.ShardParallel(mesh_shape=(2, 4))
    want = jax.jit(step, static_argnames=("train", "activation"))
    f = autopar.parallelize(step, method=method, static_argnames=("train", "activation"))
    for train, activation in ((True, "tanh"), (False, "sin"), (True, "tanh")):
        got = f(params, x, train=train, activation=activation)
        assert_trees_close(got, want(params, x, train=train, activation=activation))
    assert f.cache_size() == 2
    # A positional parameter's name makes its position static; "auto" covers keyword arguments.
    g = autopar.parallelize(ranked, method=method, static_argnames="scale")
    assert g.static_argnums == (2,)
    assert_trees_close(g(params, x, scale=3), jax.jit(ranked, static_argnames="scale")(params, x, scale=3))
    auto = autopar.parallelize(step, method=method, static_argnums="auto")
    assert_trees_close(
        auto(params, x, train=False, activation="sin"), want(params, x, train=False, activation="sin")
    )
    with pytest.raises(
        ValueError, match=r"static_argnames names 'trian', which is no parameter of step \(its"
    ):
        autopar.parallelize(step, static_argnames="trian")
    with pytest.raises(TypeError, match="static argument activation of step has unhashable type list"):
        f(params, x, train=True, activation=["tanh"])
    with pytest.raises(
        TypeError, match=r"^activation \(a str\) is not an array: .* static \(static_argnames\)"
    ):
        autopar.parallelize(step, method=method)(params, x, train=1.0, activation="sin")


def test_a_leaf_that_is_not_an_array_is_named_by_its_path():
    # A module that keeps its activation among its weights (Equinox's modules do) is the usual case.
    def apply(model, x, *, extra):
        return model["act"](x @ model["layers"][0]) + extra["b"]

    def relu(v):
        return jnp.maximum(v, 0)

    f = autopar.parallelize(apply, method=autopar.ShardParallel(mesh_shape=(8,)))
    x, w = jnp.ones((8, 4)), jnp.ones((4, 4))
    with pytest.raises(
        TypeError, match=r"^model\['act'\] \(a function\) is not an array: .* make model static"
    ):
        f({"layers": [w], "act": relu}, x, extra={"b": 1.0})
    with pytest.raises(TypeError, match=r"^extra\['b'\] \(a str\) is not an array"):
        f({"layers": [w]}, x, extra={"b": "1"})


def test_a_mutable_array_ref_is_refused_by_its_path():
    # It failed inside jax with "No pxla_result_handler for type: AbstractRef" (jax.new_ref, or a flax NNX
    # Variable made with ref=True, which nnx.jit accepts).
    nnx = pytest.importorskip("flax.nnx")

    def step(counter, x):
        counter[...] = counter[...] + 1
        return jnp.sum(x)

    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=(8,)), batch_argnums=(1,))
    x = jnp.ones((8, 4))
    with pytest.raises(TypeError, match=r"^counter\.value is a mutable array ref .* pass its value"):
        f(nnx.Variable(jnp.zeros((), jnp.int32), ref=True), x)
    with pytest.raises(TypeError, match=r"^counter is a mutable array ref"):
        f(jax.new_ref(jnp.zeros((), jnp.int32)), x)
    counter = nnx.Variable(jnp.zeros((), jnp.int32))  # the same step on a plain Variable runs
    f(counter, x)
    assert int(counter[...]) == 1


@pytest.mark.parametrize("transform", ["jit", "grad", "vmap"])
def test_a_call_inside_a_jax_transformation_is_refused_by_name(transform):
    # It met the tracer deep inside ("The 'sharding' attribute is not available on traced array").
    def loss(w, x):
        return jnp.mean(jnp.tanh(x @ w) ** 2)

    f = autopar.parallelize(loss, method=autopar.ShardParallel(mesh_shape=(8,)))
    w, x = jnp.ones((16, 8)), jnp.ones((32, 16))
    call = {
        "jit": lambda: jax.jit(f)(w, x),
        "grad": lambda: jax.grad(f)(w, x),
        "vmap": lambda: jax.vmap(f, in_axes=(None, 0))(w, jnp.stack([x, x])),
    }[transform]
    with pytest.raises(TypeError, match=r"^(w|x) is a tracer: loss was called inside jax.jit, jax.grad"):
        call()


def test_auto_static_and_donated_arguments_are_chosen_as_alpa_did():
    """`static_argnums="auto"` and `donate_argnums="auto"` (Alpa's defaults): Python scalars, strings and
    pytrees with a non-array leaf are static; a flax TrainState is donated. Chosen on the first call."""
    from flax.training import train_state

    def step(state, x, train, activation):
        def loss(p):
            h = getattr(jnp, activation)(x @ p["w1"])
            return jnp.mean((h @ p["w2"]) ** 2) * (1.0 if train else 0.5)

        value, grads = jax.value_and_grad(loss)(state.params)
        return state.apply_gradients(grads=grads), value

    params, x, tx = _params(), _batch(), optax.sgd(0.1)
    make = lambda: train_state.TrainState.create(apply_fn=None, params=params, tx=tx)  # noqa: E731
    f = autopar.parallelize(step, static_argnums="auto", donate_argnums="auto")
    want = jax.jit(step, static_argnums=(2, 3))
    got = f(make(), x, True, "tanh")
    assert f.static_argnums == (2, 3) and f.donate_argnums == (0,)
    assert (
        "input_output_alias" in f.lower(make(), x, True, "tanh").compile().as_text()
    )  # donation reached XLA
    assert_trees_close(got, want(make(), x, True, "tanh"))
    assert_trees_close(f(make(), x, False, "sin"), want(make(), x, False, "sin"))
    assert f.cache_size() == 2
    with pytest.raises(ValueError, match="donate_argnums must be non-negative ints or \"auto\", got 'all'"):
        autopar.parallelize(step, donate_argnums="all")


def test_a_batch_passed_by_keyword_is_the_batch_and_shares_the_plan():
    """`f(params, batch=x)` is `f(params, x)`: batch_argnums (positions, as jax.jit's argnums) apply to a
    keyword argument too. Before, a batch passed by keyword was planned as a parameter."""

    def step(params, batch):
        value, grads = jax.value_and_grad(lambda p: jnp.mean(mlp(p, batch)["y"] ** 2))(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), value

    params, x = _params(), _batch()
    f = autopar.parallelize(step, method=autopar.DataParallel())
    assert_trees_close(f(params, batch=x), jax.jit(step)(params, x))
    assert_trees_close(f(params, x), jax.jit(step)(params, x))
    assert f.cache_size() == 1
    plan = f.get_execution_plan(params, batch=x)
    assert {p.path: p.role for p in plan.inputs}["batch"] == "batch"
    assert plan.input_specs()["batch"] == P("x")


def test_decorator_forms_and_keyword_arguments():
    @autopar.parallelize
    def add(a, b):
        return a + b

    @autopar.parallelize(
        method=autopar.ShardParallel(manual_sharding_option=autopar.ManualShardingOption(("x",), (P("x"),)))
    )
    def affine(a, *, bias):
        return a * 2 + bias

    a = jnp.arange(16.0)
    with pytest.raises(AutoparError) if registry.lookup(methods.INTRA_OP_PASS) is None else _nothing():
        assert_trees_close(add(a, a), a + a)
    assert_trees_close(affine(a, bias=jnp.ones(16)), a * 2 + 1)
    assert affine.__name__ == "affine"


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_lower_with_abstract_arguments_then_compile_and_run():
    f = autopar.parallelize(mlp, method=MEGATRON)
    params, x = _params(), _batch()
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (params, x))
    lowered = f.lower(*abstract)
    text = lowered.as_text()
    assert 'sdy.mesh @mesh = <["x"=2, "y"=4]>' in text
    assert text.count("autopar.parameter") == 2 and text.count("autopar.batch") == 1
    assert '#sdy.sharding<@mesh, [{}, {"y"}]>' in text
    compiled = lowered.compile()
    hlo = compiled.as_text()
    assert "all-reduce(" in hlo and "ENTRY" in hlo
    assert_trees_close(compiled(params, x), jax.jit(mlp)(params, x))
    assert compiled.input_shardings[0][1].spec == P("x")
    f(params, x)
    assert f.cache_size() == 1  # the abstract lowering served the concrete call
    with pytest.raises(TypeError, match="do not match the signature"):
        compiled(params, _batch(n=64))


def test_execution_plan_names_parameters_and_counts_collectives():
    f = autopar.parallelize(mlp, method=MEGATRON)
    plan = f.get_execution_plan(_params(), _batch())
    assert plan.mesh_shape == {"x": 2, "y": 4}
    assert plan.parameter_specs() == {"params['w1']": P(None, "y"), "params['w2']": P("y")}
    assert plan.input_specs()["x"] == P("x")
    assert [t.path for t in plan.outputs] == ["out['h_sum']", "out['y']"]
    counts = plan.collective_counts()
    assert counts["all-reduce"] >= 1 and counts["all-gather"] == 0
    assert all("y" in c.axes for c in plan.collectives if c.kind == "all-reduce" and c.bytes > 4)
    assert plan.solver_status == "manual" and plan.estimated_cost is None
    text = str(plan)
    assert "ShardParallel on mesh [x=2, y=4]" in text and "params['w1']" in text and "all-reduce" in text
    assert f.cache_size() == 1


def _train_step(params, opt_state, batch):
    x, y = batch

    def loss_fn(p):
        h = jax.nn.relu(x @ p["w1"])
        return jnp.mean((h @ p["w2"] - y) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


OPTIMIZER = optax.adam(1e-2)


@pytest.mark.parametrize(
    ("mesh_shape", "param_specs", "batch_spec"),
    [
        ((8,), {"w1": None, "w2": None}, P("x")),  # data parallel
        ((2, 4), {"w1": P(None, "y"), "w2": P("y")}, P("x")),  # Megatron x data
    ],
    ids=["data-parallel", "megatron-2x4"],
)
def test_optax_training_step_with_donation_matches_unsharded(mesh_shape, param_specs, batch_spec):
    names = ("x",) if len(mesh_shape) == 1 else ("x", "y")
    opt_specs = (optax.ScaleByAdamState(count=None, mu=param_specs, nu=param_specs), optax.EmptyState())
    method = autopar.ShardParallel(
        mesh_shape=mesh_shape,
        manual_sharding_option=autopar.ManualShardingOption(
            names, (param_specs, opt_specs, batch_spec), (param_specs, opt_specs, None)
        ),
    )
    step = autopar.parallelize(_train_step, method=method, donate_argnums=(0, 1), batch_argnums=(2,))
    reference = jax.jit(_train_step)
    params = _params(hidden=32)
    batch = (_batch(n=32), _batch(n=32, seed=7))
    opt_state = OPTIMIZER.init(params)
    ref_params, ref_state = params, opt_state
    params, opt_state = jax.tree.map(jnp.copy, (params, opt_state))
    for _ in range(3):
        old_w1 = params["w1"]
        params, opt_state, loss = step(params, opt_state, batch)
        ref_params, ref_state, ref_loss = reference(ref_params, ref_state, batch)
        assert_trees_close((params, opt_state, loss), (ref_params, ref_state, ref_loss), rtol=1e-5, atol=1e-6)
    assert step.cache_size() == 1
    assert params["w1"].sharding.spec == (param_specs["w1"] or P())
    assert old_w1.is_deleted()  # donated: its buffer became the update
    plan = step.get_execution_plan(params, opt_state, batch)
    assert {t.path: t.role for t in plan.inputs}["batch[0]"] == "batch"
    assert plan.parameter_specs()["opt_state[0].mu['w2']"] == (param_specs["w2"] or P())


# ---- the API's side of the autopar-intra-op contract, through a test double of the pass -----------------


def _write_data_parallel_plan(module_op: ir.Operation, options: types.SimpleNamespace) -> list[str]:
    body = module_op.regions[0].blocks[0]
    main = next(op for op in body.operations if isinstance(op, func.FuncOp) and op.name.value == "main")
    names = options.axis_names.split(",")[: len(options.mesh.split("x"))]
    shape = tuple(int(s) for s in options.mesh.split("x"))
    with ir.InsertionPoint.at_block_begin(body):
        sdy.MeshOp(
            "mesh", sdy.MeshAttr.get([sdy.MeshAxisAttr.get(n, s) for n, s in zip(names, shape, strict=True)])
        )
    roles = []
    for i, marks in enumerate(attrs.get_argument_marks(main)):
        role = "batch" if marks.is_batch else "parameter" if marks.is_parameter else "?"
        roles.append(role)
        rank = ir.RankedTensorType(main.type.inputs[i]).rank
        spec = P(tuple(names)) if role == "batch" else P()
        sh.set_arg_attr(main, i, "sdy.sharding", sh.spec_to_sharding(spec, rank, "mesh"))
    attrs.set_intra_op_result(module_op, attrs.IntraOpResult(shape, 1.5e-3, 1.25e-3, "optimal", 0))
    return roles


@pytest.fixture
def recording_intra_op(monkeypatch):
    """Registers a stand-in `autopar-intra-op` that records what it was given and writes a data-parallel
    plan (batch dim 0 over every mesh axis, the rest replicated) with the plan attributes the real pass
    writes. Restored after the test."""
    seen = types.SimpleNamespace(options=None, roles=None)

    def run(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
        seen.options = options
        with module_op.context, ir.Location.unknown():
            seen.roles = _write_data_parallel_plan(module_op, options)

    real = registry.lookup(methods.INTRA_OP_PASS)
    options = (
        real.options
        if real is not None
        else tuple(
            registry.Option(name, kind, default, "contract option")
            for name, kind, default in [
                ("mesh", str, "1x8"),
                ("axis-names", str, "x,y,z"),
                ("mesh-alpha", str, ""),
                ("mesh-beta", str, ""),
                ("memory-budget", int, 0),
                ("solver", str, "auto"),
                ("time-limit", float, 10.0),
                ("force-data-parallel", bool, False),
                ("force-batch-dim-to-mesh-dim", int, -1),
                ("allow-all-gather", bool, True),
                ("allow-all-to-all", bool, True),
                ("prefer-reduce-scatter", bool, False),
                ("zero-stage", int, 0),
                ("allow-replicated-parameters", bool, True),
            ]
        )
    )
    info = registry.PassInfo(methods.INTRA_OP_PASS, "test double", "test double", tuple(options), run)
    monkeypatch.setitem(registry._REGISTRY, methods.INTRA_OP_PASS, info)
    return seen


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        (autopar.DataParallel(), dict(force_data_parallel=True, zero_stage=0, mesh="8", axis_names="x")),
        (
            autopar.Zero2Parallel(mesh_shape=(2, 4)),
            dict(
                force_data_parallel=True,
                # Off on these CPU devices: XLA runs a reduce-scatter as an all-reduce and a slice
                # (methods.as_compiled_for, test_reduce_scatter_is_left_to_platforms_that_compile_it).
                prefer_reduce_scatter=False,
                zero_stage=2,
                mesh="2x4",
                axis_names="x,y",
            ),
        ),
        (autopar.Zero3Parallel(), dict(zero_stage=3, mesh="8")),
        (
            autopar.ShardParallel(
                mesh_shape=(2, 2, 2),
                axis_names=("dp", "tp", "pp"),
                auto_sharding_option=autopar.AutoShardingOption(
                    memory_budget=1 << 20,
                    solver="ilp",
                    time_limit=2.0,
                    allow_all_to_all=False,
                    mesh_beta=(1e-9, 2e-9, 3e-9),
                ),
            ),
            dict(
                mesh="2x2x2",
                axis_names="dp,tp,pp",
                memory_budget=1 << 20,
                solver="ilp",
                time_limit=2.0,
                allow_all_to_all=False,
                force_data_parallel=False,
                mesh_beta="1e-09,2e-09,3e-09",
            ),
        ),
    ],
    ids=["data", "zero2", "zero3", "options"],
)
def test_methods_reach_the_pass_as_its_options(recording_intra_op, method, expected):
    f = autopar.parallelize(mlp, method=method)
    params, x = _params(), _batch()
    assert_trees_close(f(params, x), jax.jit(mlp)(params, x))
    for key, value in expected.items():
        assert getattr(recording_intra_op.options, key) == value, key
    assert recording_intra_op.roles == ["parameter", "parameter", "batch"]
    plan = f.get_execution_plan(params, x)
    assert plan.solver_status == "optimal" and plan.estimated_cost == 1.5e-3 and plan.lower_bound == 1.25e-3
    assert plan.input_specs()["x"] == P(tuple(method.mesh_for(8)[1]))
    assert "estimated cost 0.0015 s (lower bound 0.00125 s, gap 16.67%)" in str(plan)


def test_batch_argnums_marks_batches_and_scalars_stay_parameters(recording_intra_op):
    def f(x, params, step):
        return x @ params * step

    g = autopar.parallelize(f, method=autopar.DataParallel(), batch_argnums=(0,))
    args = (_batch(), jnp.ones((16, 4)), jnp.float32(2.0))
    assert_trees_close(g(*args), jax.jit(f)(*args))
    assert recording_intra_op.roles == ["batch", "parameter", "parameter"]


def _sgd_batch_first(batch, params):
    """A step written batch-first: Alpa's default batch_argnums (1,) would take the weights for the batch."""
    x, y = batch
    grads = jax.grad(lambda p: jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2))(params)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)


def test_the_default_batch_argnums_refuses_state_the_step_returns_and_an_explicit_one_plans_it():
    """Before, DataParallel split the weights along dim 0 as data and left the batch whole (right numbers,
    a model-parallel plan under a data-parallel name)."""
    params = {"w1": normal((64, 128), seed=1), "w2": normal((128, 64), seed=2)}
    batch = (normal((32, 64), seed=3), normal((32, 64), seed=4))
    with pytest.raises(
        ArgumentError, match=r"params at position 1 is state .* batch_argnums=\(0,\) \(batch\)"
    ):
        autopar.parallelize(_sgd_batch_first, method=autopar.DataParallel())(batch, params)
    f = autopar.parallelize(_sgd_batch_first, method=autopar.DataParallel(), batch_argnums=(0,))
    assert_trees_close(f(batch, params), jax.jit(_sgd_batch_first)(batch, params))
    plan = f.get_execution_plan(batch, params)
    assert {t.path: t.role for t in plan.inputs} == {
        "batch[0]": "batch",
        "batch[1]": "batch",
        "params['w1']": "parameter",
        "params['w2']": "parameter",
    }
    assert all(t.spec == P() for t in plan.inputs if t.role == "parameter")
    assert all(t.spec == P("x") for t in plan.inputs if t.role == "batch"), plan


def test_the_default_batch_argnums_names_the_batch_after_two_state_arguments():
    def step(params, opt_state, batch):
        new = _sgd_batch_first((batch, batch), params)
        return new, jax.tree.map(lambda m, p: 0.9 * m + p, opt_state, new)

    params = {"w1": normal((16, 24), seed=1), "w2": normal((24, 16), seed=2)}
    with pytest.raises(ArgumentError, match=r"opt_state at position 1 .* batch_argnums=\(2,\) \(batch\)"):
        autopar.parallelize(step)(params, params, normal((8, 16), seed=3))
    fixed_batch = normal((8, 16), seed=3)
    with pytest.raises(ArgumentError, match=r"or batch_argnums=\(\) for a step that takes no batch"):
        autopar.parallelize(lambda params, opt_state: step(params, opt_state, fixed_batch))(params, params)

    # A step that returns something of its batch's structure is not refused: an eval step's predictions of
    # its inputs (an autoencoder's reconstruction and the predicted labels).
    def evaluate(params, batch):
        x, labels = batch
        recon = jnp.tanh(x @ params["w1"]) @ params["w2"]
        return recon, jnp.argmax(recon, axis=1).astype(labels.dtype)

    g = autopar.parallelize(evaluate)
    batch = (normal((8, 16), seed=4), jnp.zeros((8,), jnp.int32))
    assert_trees_close(g(params, batch), jax.jit(evaluate)(params, batch))


def test_the_default_batch_argnums_hint_leaves_out_a_lone_weight_the_step_returns():
    """A step over one weight matrix and its optimizer state: before, the hint named the weight beside the
    batch (batch_argnums=(0, 2)), and following it split the weight as data and left the batch whole (the
    larger leading size wins)."""
    opt = optax.adam(1e-2)

    def step(w, opt_state, x):
        grads = jax.grad(lambda w: jnp.mean(jnp.tanh(x @ w) ** 2))(w)
        updates, opt_state = opt.update(grads, opt_state, w)
        return optax.apply_updates(w, updates), opt_state

    w, x = normal((32, 32), seed=1), normal((16, 32), seed=2)
    with pytest.raises(ArgumentError, match=r"opt_state at position 1 .* batch_argnums=\(2,\) \(x\)$"):
        autopar.parallelize(step)(w, opt.init(w), x)


# ---- errors ----------------------------------------------------------------------------------------------


def test_mesh_shape_that_does_not_match_the_devices():
    with pytest.raises(ValueError, match="mesh shape 2x4 needs 8 devices but 4 devices"):
        autopar.parallelize(mlp, method=autopar.ShardParallel(mesh_shape=(2, 4)), devices=jax.devices()[:4])
    # A smaller mesh than the devices: the error says how to pick that many.
    with pytest.raises(ValueError, match=r"or 4 devices \(devices=jax\.devices\(\)\[:4\]\)$"):
        autopar.parallelize(mlp, method=autopar.ShardParallel(mesh_shape=(2, 2)))


def test_default_devices_are_all_local_devices():
    f = autopar.parallelize(mlp, method=autopar.DataParallel())
    assert f.devices == tuple(jax.local_devices()) and f.mesh_shape == (8,)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(static_argnums=(0,), donate_argnums=(0,)), ValueError, "also static_argnums"),
        (dict(static_argnums=(-1,)), ValueError, "non-negative"),
        (dict(method="data"), TypeError, "method must be a ShardParallel"),
        (
            dict(method=autopar.ShardParallel(mesh_shape=(2, 4), axis_names=("x",))),
            ValueError,
            "1 axis names",
        ),
    ],
)
def test_bad_parallelize_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        autopar.parallelize(mlp, **kwargs)


def test_bad_call_arguments():
    f = autopar.parallelize(
        lambda a, n: a * len(n),
        static_argnums=(1,),
        method=autopar.ShardParallel(manual_sharding_option=autopar.ManualShardingOption(("x",), (None,))),
    )
    with pytest.raises(TypeError, match="unhashable type list"):
        f(jnp.ones(8), [1, 2])
    g = autopar.parallelize(
        lambda a: a,
        method=autopar.ShardParallel(manual_sharding_option=autopar.ManualShardingOption(("x",), (None,))),
        batch_argnums=(3,),
    )
    with pytest.raises(ValueError, match="batch_argnums names argument 3 but <lambda> was called with 1 "):
        g(jnp.ones(8))
    # A call that lacks the batch argument says so, not that batch_argnums is wrong;
    # extra ones fail in Python's words.
    two = autopar.parallelize(lambda params, batch: params * batch.sum(), batch_argnums=(1,))
    with pytest.raises(
        TypeError, match="cannot be called with these arguments: missing a required argument: 'batch'"
    ):
        two(jnp.ones(8))
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
        two(jnp.ones(8), jnp.ones(8), jnp.ones(8))
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'lr'"):
        two(jnp.ones(8), jnp.ones(8), lr=0.1)
    with pytest.raises(TypeError, match="not an array"):
        g("text")
    h = autopar.parallelize(
        lambda a: a,
        method=autopar.ShardParallel(manual_sharding_option=autopar.ManualShardingOption(("x",), (P("y"),))),
    )
    with pytest.raises(ValueError, match="names axis 'y'"):
        h(jnp.ones(8))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (dict(zero_stage=1), "zero_stage=1"),
        (dict(memory_budget=0), "memory_budget=0"),
        (dict(time_limit=-1.0), "time_limit=-1.0"),
    ],
)
def test_auto_sharding_option_validation(option, message):
    with pytest.raises(ValueError, match=message):
        autopar.AutoShardingOption(**option)


def test_per_axis_costs_must_match_the_mesh():
    method = autopar.ShardParallel(
        mesh_shape=(2, 4), auto_sharding_option=autopar.AutoShardingOption(mesh_alpha=(1e-6,))
    )
    with pytest.raises(ValueError, match="mesh_alpha has 1 values for the 2-axis mesh 2x4"):
        method.pipeline((2, 4), ("x", "y"))
    method = dataclasses.replace(
        method, auto_sharding_option=autopar.AutoShardingOption(force_batch_dim_to_mesh_dim=2)
    )
    with pytest.raises(ValueError, match="force_batch_dim_to_mesh_dim=2 is not an axis"):
        method.pipeline((2, 4), ("x", "y"))


def test_reduce_scatter_is_left_to_platforms_that_compile_it():
    from autopar.api.methods import REDUCE_SCATTER_ON_CPU, as_compiled_for

    zero2 = autopar.Zero2Parallel(mesh_shape=(2, 4))
    on_cpu, remarks = as_compiled_for(zero2, "cpu")
    assert not on_cpu.auto_sharding_option.prefer_reduce_scatter and remarks == (REDUCE_SCATTER_ON_CPU,)
    # The rest of the preset stays, and the user's method is not changed.
    assert on_cpu.auto_sharding_option.zero_stage == 2 and on_cpu.auto_sharding_option.force_data_parallel
    assert type(on_cpu) is autopar.Zero2Parallel and zero2.auto_sharding_option.prefer_reduce_scatter
    assert as_compiled_for(zero2, "gpu") == (zero2, ())
    # Without reduce-scatters nothing is remarked, but collectives are priced as CPU runs them.
    data = autopar.DataParallel()
    on_cpu, remarks = as_compiled_for(data, "cpu")
    assert remarks == () and on_cpu.auto_sharding_option.widen_collectives
    assert not data.auto_sharding_option.widen_collectives and as_compiled_for(data, "gpu") == (data, ())


def mixed_precision_step(params, batch):
    """float32 parameters, bfloat16 compute: the weight gradients are partial sums in bfloat16."""
    x, y = batch

    def loss(params):
        h = x.astype(jnp.bfloat16)
        for w in params:
            h = jnp.tanh(h @ w.astype(jnp.bfloat16))
        return jnp.mean((h.astype(jnp.float32) - y) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    return [p - 0.1 * g for p, g in zip(params, grads, strict=True)], value


@pytest.mark.parametrize(
    "method", [autopar.DataParallel(), autopar.ShardParallel(mesh_shape=(2, 4))], ids=["data", "2x4"]
)
def test_bfloat16_collectives_are_priced_as_the_float32_xla_runs_on_cpu(method):
    """XLA's CPU compiler all-reduces bfloat16 partial sums in float32 (docs/platform.md, "Collectives of
    narrow floats on CPU"): priced at 2 bytes an element, the plan expected half the bytes compiled."""
    from numeric import assert_priced_bytes_compiled

    params = [jnp.asarray(normal((64, 64)) * 0.2) for _ in range(3)]
    batch = (jnp.asarray(normal((16, 64))), jnp.asarray(normal((16, 64))))
    step = autopar.parallelize(mixed_precision_step, method=method)
    plan = step.get_execution_plan(params, batch)
    assert sum(c.bytes for c in plan.expected_collectives if c.kind == "all-reduce") > 0
    assert_priced_bytes_compiled(plan)
    assert_trees_close(
        step(params, batch), jax.jit(mixed_precision_step)(params, batch), rtol=2e-2, atol=2e-3
    )


def test_pipeline_text_is_deterministic_and_names_every_contract_option():
    text = autopar.Zero3Parallel(mesh_shape=(2, 4)).pipeline((2, 4), ("x", "y"))
    assert text == autopar.Zero3Parallel(mesh_shape=(2, 4)).pipeline((2, 4), ("x", "y"))
    # The method runs the named pipeline autopar-shard: autopar-inline, autopar-unroll-loops,
    # autopar-flatten-conditionals, autopar-fold-transposes, then autopar-intra-op.
    assert text.startswith("builtin.module(autopar-shard{mesh=2x4 axis-names=x,y ")
    from autopar.passes import pipeline, pipelines

    (element,) = pipeline.parse_pipeline(text)
    assert pipelines.expand("autopar-shard", pipeline.parsed_options(element)).startswith(
        "builtin.module(autopar-inline,autopar-unroll-loops,autopar-flatten-conditionals,"
        "autopar-fold-transposes,"
        "autopar-intra-op{mesh=2x4 axis-names=x,y "
    )
    for option in (
        "force-data-parallel=true",
        "force-batch-dim-to-mesh-dim=-1",
        "allow-all-gather=true",
        "allow-all-to-all=true",
        "prefer-reduce-scatter=true",
        "zero-stage=3",
        "allow-replicated-parameters=true",
    ):
        assert option in text
