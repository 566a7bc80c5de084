"""Why no plan satisfies the intra-op pass's options (passes/intra_op/conflicts.py): the op they leave without
a layout, or the memory the layouts they allow need, named in the pass's error."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import autopar
from autopar.errors import PassError
from autopar.passes.intra_op import config as config_lib
from autopar.passes.intra_op import conflicts
from autopar.passes.intra_op.problem import Problem
from autopar.passes.intra_op.strategies import FORBIDDEN

OK, NO = 0.0, FORBIDDEN


def two_layout_problem(usages, edges, tables, costs=None) -> Problem:
    """Nodes of two layouts each, all live at once; `tables[e]` the 2x2 reshard costs of edge e."""
    n = len(usages)
    return Problem(
        intervals=np.zeros((n, 2), np.int64),
        node_costs=[np.asarray(c, float) for c in (costs or [[1.0, 1.0]] * n)],
        node_usages=[np.asarray(u, np.int64) for u in usages],
        edges=np.asarray(edges, np.int64).reshape(-1, 2),
        edge_costs=[np.asarray(t, float).ravel() for t in tables],
        strategies=[],
        remarks=[],
    )


def graph_of(*names):
    """A stand-in graph: node i is the argument `names[i]`."""
    return types.SimpleNamespace(nodes=[types.SimpleNamespace(kind="arg", path=p, op=None) for p in names])


def test_a_chain_of_forbidden_reshards_names_the_node_it_empties():
    # 0 -> 1 -> 2: node 0 may only take layout 0, which node 1 meets only with its layout 1, which node 2
    # cannot meet with either of its own.
    prob = two_layout_problem(
        [[1, 1]] * 3,
        [(0, 1), (1, 2)],
        [[[NO, OK], [OK, OK]], [[OK, OK], [NO, NO]]],
        costs=[[1.0, NO], [1.0, 1.0], [1.0, 1.0]],
    )
    found = conflicts.allowed_layouts(prob)
    assert isinstance(found, conflicts.Conflict)
    assert {found.node, found.neighbour} == {1, 2}


def test_a_node_whose_own_costs_forbid_every_layout_is_named_alone():
    prob = two_layout_problem([[1, 1]] * 2, [(0, 1)], [[[OK, OK], [OK, OK]]], costs=[[1.0, 1.0], [NO, NO]])
    assert conflicts.allowed_layouts(prob) == conflicts.Conflict(1, None)
    config = config_lib.from_options({"mesh": "8", "zero_stage": 3})
    message = conflicts.explain(graph_of("params['w']", "params['b']"), prob, config)
    assert message == (
        "no sharding plan satisfies the options (zero-stage=3): they forbid every layout of params['b']; "
        "relax them"
    )


def test_the_floor_counts_only_the_layouts_the_options_leave():
    # Node 0's small layout (1 byte) meets no layout of node 1: every plan holds its 10-byte layout.
    prob = two_layout_problem([[1, 10], [5, 5]], [(0, 1)], [[[NO, NO], [OK, OK]]])
    allowed = conflicts.allowed_layouts(prob)
    assert [m.tolist() for m in allowed] == [[False, True], [True, True]]
    assert prob.min_peak_memory() == 6
    assert conflicts.min_peak_memory(prob, allowed) == 15
    config = config_lib.from_options({"mesh": "8", "allow_all_gather": False, "memory_budget": 12})
    message = conflicts.explain(graph_of("x", "w"), prob, config)
    assert "within memory-budget=12 bytes per device: the layouts they allow need at least 15" in message
    assert message.startswith("no sharding plan satisfies the options (allow-all-gather=false)")


def test_a_conflict_around_a_cycle_is_reported_without_naming_an_op():
    # Three nodes that must pairwise differ, with two layouts each: arc consistent, yet no plan exists.
    differ = [[NO, OK], [OK, NO]]
    prob = two_layout_problem([[1, 1]] * 3, [(0, 1), (1, 2), (0, 2)], [differ] * 3)
    assert all(m.all() for m in conflicts.allowed_layouts(prob))
    config = config_lib.from_options({"mesh": "8", "allow_all_gather": False})
    assert conflicts.explain(graph_of("a", "b", "c"), prob, config) == (
        "no sharding plan satisfies the options (allow-all-gather=false): every plan needs a reshard they "
        "forbid; relax them"
    )


def test_parallelize_names_the_op_and_the_parameter_the_options_cannot_lay_out():
    def loss(params, x):
        return jnp.sum(jnp.tanh(x @ params["w1"]) @ params["w2"])

    params = {"w1": jnp.ones((256, 1024)), "w2": jnp.ones((1024, 256))}
    x = jnp.ones((64, 256))
    option = autopar.AutoShardingOption(zero_stage=3, allow_all_gather=False)
    step = autopar.parallelize(loss, method=autopar.ShardParallel(auto_sharding_option=option))
    with pytest.raises(PassError) as raised:
        step(params, x)
    message = str(raised.value)
    assert message.startswith(
        "ShardParallel: no sharding plan satisfies the options (allow_all_gather=False, zero_stage=3)"
    )
    assert "stablehlo.dot_general at " in message and "test_conflicts.py:" in message
    assert "params['w" in message
    assert jax.device_count() == 8
