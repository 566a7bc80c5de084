"""The hand-written plan families of autopar-intra-op (families.py) and the guarantee they give: the
pass's objective is never worse than the best of them, even when its own search is cut short."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autopar import ir as aio
from autopar import passes
from autopar.passes.intra_op import _populate_rules, families, solve
from autopar.passes.intra_op import config as config_lib
from autopar.passes.intra_op import graph as graph_lib
from autopar.passes.intra_op import problem as problem_lib

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from benchmarks.models import gpt  # noqa: E402


def _mark(module, batch_args, parameter_args):
    from jaxlib.mlir import ir

    main = next(op for op in module.body.operations if op.operation.name == "func.func").operation
    with module.context:
        n = len(main.regions[0].blocks[0].arguments)
        attrs = []
        for i in range(n):
            entries = {}
            if i in batch_args:
                entries["autopar.batch"] = ir.UnitAttr.get()
            if i in parameter_args:
                entries["autopar.parameter"] = ir.UnitAttr.get()
            attrs.append(ir.DictAttr.get(entries))
        main.attributes["arg_attrs"] = ir.ArrayAttr.get(attrs)
    return main


# The graphs keep their ops (for locations), so the modules they were read from must stay alive.
_MODULES = []


def _gpt_problem(mesh: str, layers: int = 2, **options):
    cfg = gpt.GPTConfig("toy", 64, 128, layers, 4, 256, batch=8)
    module = aio.lower(gpt.make_train_step(cfg), gpt.abstract_params(cfg), *gpt.abstract_batch(cfg))
    _MODULES.append(module)
    passes.run(module, "builtin.module(autopar-inline)")
    num_params = len(jax.tree.leaves(gpt.abstract_params(cfg)))
    main = _mark(module, (num_params, num_params + 1), tuple(range(num_params)))
    _populate_rules(module.operation)
    g = graph_lib.read_function(main)
    config = config_lib.from_options({"mesh": mesh, **options})
    return g, problem_lib.build(g, config), config


def test_grid_covers_data_model_combinations_and_zero():
    config = config_lib.from_options({"mesh": "2x4"})
    assert families.family_roles(config) == [
        ("data", "data"),
        ("data", "model"),
        ("model", "data"),
        ("model", "model"),
        ("zero2", "zero2"),
        ("zero3", "zero3"),
    ]
    assert families.family_roles(config_lib.from_options({"mesh": "1x8"}))[:2] == [("data",), ("model",)]
    assert families.family_roles(config_lib.from_options({"mesh": "1"})) == []


def test_data_parallel_family_is_one_fixed_plan():
    g, prob, config = _gpt_problem("2x4")
    keep = families.masks(g, prob, config, ("data", "data"))
    for v, k in enumerate(keep):  # nothing left to choose but where an argument is gathered for its readers
        layouts = {prob.strategies[v].result_layouts[0][i].tobytes() for i in np.flatnonzero(k)}
        assert int(k.sum()) == 1 or (prob.strategies[v].gathered is not None and len(layouts) == 1), v
    core = solve.to_solver_problem(prob, None)
    plan = families.plan(g, prob, config, ("data", "data"), core, None)
    for v, node in enumerate(g.nodes[: g.num_args]):
        layout = prob.strategies[v].result_layouts[0][plan.strategies[v]]
        if node.is_parameter:
            assert (layout < 0).all(), v  # replicated
        else:
            assert list(layout) == [0, 0], v  # batch dim over both axes


def test_model_family_never_splits_the_batch_and_zero3_shards_parameters():
    g, prob, config = _gpt_problem("8")
    core = solve.to_solver_problem(prob, None)
    model = families.plan(g, prob, config, ("model",), core, None)
    zero3 = families.plan(g, prob, config, ("zero3",), core, None)
    sharded_params = 0
    for v, node in enumerate(g.nodes[: g.num_args]):
        layouts = prob.strategies[v].result_layouts[0]
        if node.is_batch:
            assert layouts[model.strategies[v]][0] != 0
            assert layouts[zero3.strategies[v]][0] == 0
        elif node.is_parameter:
            sharded_params += int(layouts[zero3.strategies[v]][0] >= 0)
    assert sharded_params == sum(n.is_parameter for n in g.nodes)  # every parameter divides by 8 here


@pytest.mark.parametrize("mesh", ["8", "2x4"])
def test_objective_is_never_worse_than_any_family(mesh):
    g, prob, config = _gpt_problem(mesh)
    core = solve.to_solver_problem(prob, None)
    grid = families.plans(g, prob, config, core, None)
    assert len(grid) == len(families.family_roles(config)) and all(f.feasible for f in grid)
    for solver in ("auto", "heuristic"):
        sol = solve.solve(
            prob, usage_limit=None, budget=2.0, time_limit=60.0, solver=solver, graph=g, config=config
        )
        assert sol.cost == pytest.approx(prob.objective(sol.strategies), rel=1e-9)
        for f in grid:
            assert sol.cost <= f.cost * (1 + 1e-9), (solver, f.name, sol.cost, f.cost)


def test_search_cut_short_falls_back_to_the_best_family():
    # A search with almost no time returns its greedy start; the families still bound the answer.
    g, prob, config = _gpt_problem("2x4", layers=4)
    core = solve.to_solver_problem(prob, None)
    best = families.best(families.plans(g, prob, config, core, None))
    sol = solve.solve(
        prob, usage_limit=None, budget=0.01, time_limit=0.01, solver="heuristic", graph=g, config=config
    )
    assert best is not None and sol.cost <= best.cost * (1 + 1e-9)
    if sol.status != "optimal":
        assert "family" in sol.message or sol.cost < best.cost


def test_family_respects_the_memory_budget():
    g, prob, config = _gpt_problem("8")
    core = solve.to_solver_problem(prob, None)
    dp = families.plan(g, prob, config, ("data",), core, None)
    budget = dp.peak_memory - 1  # data parallel (replicated weights) no longer fits
    limited = solve.to_solver_problem(prob, budget)
    assert not families.plan(g, prob, config, ("data",), limited, budget).feasible
    sol = solve.solve(
        prob, usage_limit=budget, budget=2.0, time_limit=60.0, solver="auto", graph=g, config=config
    )
    assert sol.feasible and sol.peak_memory <= budget
    assert np.isfinite(sol.cost)


def test_mlp_smoke_no_active_axes_skips_families():
    module = aio.lower(lambda x, w: jnp.tanh(x @ w), *(jax.ShapeDtypeStruct((8, 8), jnp.float32),) * 2)
    passes.run(module, "builtin.module(autopar-intra-op{mesh=1})")
    assert '"optimal"' in str(module.operation.attributes["autopar.solver_status"])


@pytest.mark.parametrize("mesh", ["2x4", "2x2x2"])
def test_multi_axis_plan_is_never_worse_than_the_one_axis_plan_laid_onto_it(mesh):
    # Every layout of the one-axis plan exists on the multi-axis mesh (split over all axes at once), so
    # the search over more axes must not end worse than that plan, priced on the same problem.
    g, prob, config = _gpt_problem(mesh, layers=4)
    core = solve.to_solver_problem(prob, None)
    embedded = [
        families.coarse_embedding(g, prob, config, core, None, groups, 1.0, 60.0)
        for groups in families.coarse_groupings(config)
    ]
    sol = solve.solve(
        prob, usage_limit=None, budget=2.0, time_limit=60.0, solver="auto", graph=g, config=config
    )
    for plan in embedded:
        assert plan.feasible and sol.cost <= plan.cost * (1 + 1e-9), (plan.name, sol.cost, plan.cost)
