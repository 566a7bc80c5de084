"""The stage DP prices the transfers between stages: the activations and cotangents crossing each stage
boundary, moved by the cross-mesh resharding plan, add to the receiving stages' costs, so a pipeline is
no longer free to cut the model everywhere."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autopar import cost, passes
from autopar import ir as air
from autopar.passes.inter_op import cluster as cluster_lib
from autopar.passes.inter_op.inter_op import read_layers, solve_plan
from autopar.passes.inter_op.stage_costs import boundary_transfer_times, profile_layers, stage_cost_table

LAYERS = 8


def mlp_step(params, x):
    def loss(p, x):
        for w in p:
            x = jnp.tanh(x @ w)
        return jnp.mean(x**2)

    value, grads = jax.value_and_grad(loss)(params, x)
    return value, [p - 0.1 * g for p, g in zip(params, grads, strict=True)]


def _module(width: int, batch: int):
    module = air.lower(mlp_step, [jnp.zeros((width, width))] * LAYERS, jnp.zeros((batch, width)))
    return passes.run(module, f"builtin.module(autopar-inline,autopar-cluster-layers{{num-layers={LAYERS}}})")


def _stages(module, options: str) -> list[tuple[int, int]]:
    from autopar.ir import attrs

    passes.run(module, f"builtin.module(autopar-inter-op{{cluster=1x8 {options}}})")
    plan = attrs.get_inter_op_plan(module.operation)
    return [s.layers for s in plan.stages]


def test_the_analytic_planner_no_longer_cuts_an_mlp_into_single_device_stages():
    # 8 layers of 512 x 512 on 8 devices, B = 8: with crossing free, the analytic model cuts a stage per
    # layer per device (the symptom of issue #15); priced, the activations (1 MiB per boundary and
    # direction) cost more than what pipelining saves.
    options = "micro-batches=8 stage-cost=analytic"
    free = _stages(_module(512, 512), f"{options} price-transfers=false")
    priced = _stages(_module(512, 512), options)
    assert len(free) == 8
    assert len(priced) < 8
    assert priced[0][0] == 0 and priced[-1][1] == LAYERS


def test_boundary_values_are_the_activations_crossing_each_layer_boundary():
    module = _module(512, 256)
    with module.context:
        profile = profile_layers(read_layers(module.operation))
    assert profile.boundary_values[0] == []
    for k in range(1, LAYERS):
        assert profile.boundary_values[k] == [((256, 512), 4)]


def _plan(profile, cluster, transfer_cluster, micro_batches=8):
    submeshes = cluster_lib.default_submeshes(cluster)
    times = (
        None if transfer_cluster is None else boundary_transfer_times(profile, submeshes, transfer_cluster)
    )
    table = stage_cost_table(profile, submeshes, cluster, micro_batches, LAYERS, transfer_time=times)
    return solve_plan(table, profile, submeshes, cluster, micro_batches, math.inf), times


def test_a_costlier_link_gives_fewer_stages():
    module = _module(1024, 1024)
    with module.context:
        profile = profile_layers(read_layers(module.operation))
    cluster = cost.inter_op_cluster(1, 8)
    link = cluster.intra_host
    costly = dataclasses.replace(cluster, intra_host=cost.Link(link.alpha * 10, link.beta * 20))
    free, _ = _plan(profile, cluster, None)
    cheap, cheap_times = _plan(profile, cluster, cluster)
    dear, dear_times = _plan(profile, cluster, costly)
    # The costlier link prices every interior boundary higher on every logical mesh, none of the ends
    # (padded configs, which no submesh has, stay 0).
    priced = cheap_times[1:LAYERS] > 0
    assert priced.any() and np.all((dear_times[1:LAYERS] > cheap_times[1:LAYERS])[priced])
    assert not dear_times[[0, LAYERS]].any() and not cheap_times[[0, LAYERS]].any()
    assert len(free.stages) >= len(cheap.stages) > len(dear.stages)
    # Each plan's latency includes what it pays for crossing: never below the plan without transfers.
    assert cheap.latency >= free.latency and dear.latency >= cheap.latency


def test_a_single_device_stage_receives_each_activation_as_one_message():
    module = _module(256, 256)
    with module.context:
        profile = profile_layers(read_layers(module.operation))
    cluster = cost.inter_op_cluster(1, 4)
    submeshes = cluster_lib.default_submeshes(cluster)
    times = boundary_transfer_times(profile, submeshes, cluster)
    link = cluster.intra_host
    one = submeshes.index((1, 1))
    assert times[1:LAYERS, one, 0] == pytest.approx(link.alpha + link.beta * 256 * 256 * 4)
    # Batch-split over 4 devices on both sides: each device receives a quarter, all in parallel.
    four = submeshes.index((1, 4))
    data_parallel = cluster_lib.logical_meshes((1, 4)).index((4, 1))
    assert times[1, four, data_parallel] == pytest.approx(link.alpha + link.beta * 256 * 256)


def test_whole_host_stages_receive_over_the_inter_host_link():
    module = _module(256, 256)
    with module.context:
        profile = profile_layers(read_layers(module.operation))
    one_host, two_hosts = cost.inter_op_cluster(1, 4), cost.inter_op_cluster(2, 4)
    whole = boundary_transfer_times(profile, [(1, 4)], two_hosts)
    inside = boundary_transfer_times(profile, [(1, 4)], one_host)
    assert np.all(whole[1:LAYERS] > inside[1:LAYERS])
    # a stage on part of a host keeps the intra-host link
    part = [(1, 2)]
    assert np.array_equal(
        boundary_transfer_times(profile, part, two_hosts), boundary_transfer_times(profile, part, one_host)
    )
