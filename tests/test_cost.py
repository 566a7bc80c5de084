"""The alpha-beta mesh model and cluster profiles."""

import dataclasses
import json

import numpy as np
import pytest

from autopar import cost


def test_collectives_follow_alpa_formulas():
    mesh = cost.make_mesh((2, 4), alpha=1e-5, beta=[1e-9, 1e-10])
    n = 4
    assert mesh.all_reduce(1e6, [1]) == pytest.approx(1e-5 + 1e-10 * 2 * (n - 1) / n * 1e6 + 1e-7)
    assert mesh.all_gather(1e6, [1]) == pytest.approx(1e-5 + 1e-10 * (n - 1) / n * 1e6 + 1e-6)
    assert mesh.reduce_scatter(1e6, [0]) == pytest.approx(1e-5 + 1e-9 * 0.5 * 1e6 + 1e-8)
    # Several axes at once: one group of 8, every latency, the slowest link.
    assert mesh.all_reduce(1e6, [0, 1]) == pytest.approx(2e-5 + 1e-9 * 2 * 7 / 8 * 1e6 + 2e-7)
    assert mesh.all_reduce(1e6, []) == 0.0
    # Vectorised over byte counts (the reshard tables use it).
    np.testing.assert_allclose(
        mesh.all_gather(np.array([0.0, 1e6]), [1]), [1.1e-5, mesh.all_gather(1e6, [1])]
    )


def test_defaults_make_the_inner_axis_fast():
    mesh = cost.make_mesh((2, 4))
    assert mesh.axis_names == ("x", "y") and mesh.beta[1] < mesh.beta[0]


def test_one_defaults_table_gives_each_pass_the_figures_it_always_had():
    # The intra-op pass's defaults (a logical mesh: inner axis fast, outer axes 10x slower per byte).
    mesh = cost.make_mesh((2, 4))
    assert mesh.device == cost.DeviceModel(flops=1e13, memory_bandwidth=1e12, memory_bytes=0)
    assert mesh.alpha == (5e-6, 5e-6) and mesh.beta == (1e-10, 1e-11)
    # The inter-op pass's cluster: a V100-class device with 16 GiB, 25 Gbit/s between hosts.
    cluster = cost.inter_op_cluster(2, 8)
    assert cluster.num_devices == 16
    assert cluster.device == cost.DeviceModel(flops=1e14, memory_bandwidth=1e12, memory_bytes=16 * 2**30)
    assert cluster.intra_host == cost.Link(5e-6, 1e-11)
    assert cluster.inter_host == cost.Link(2e-5, 1 / 3.125e9)


def test_cluster_meshes_use_the_link_each_axis_crosses():
    cluster = cost.inter_op_cluster(2, 4)
    mesh = cluster.mesh((2, 4), crosses_hosts=(True, False), axis_names=("p", "q"))
    assert mesh.alpha == (2e-5, 5e-6) and mesh.beta == (1 / 3.125e9, 1e-11)
    assert mesh.device is cluster.device and mesh.axis_names == ("p", "q")
    # A link's all-reduce is the mesh's without Alpa's 1 % latency tie-breaker.
    link = cluster.intra_host
    assert link.all_reduce(1e6, 4) == pytest.approx(mesh.all_reduce(1e6, [1]) - 0.01 * link.alpha)
    assert link.all_reduce(1e6, 1) == 0.0
    with pytest.raises(ValueError, match="link alpha and beta must be >= 0"):
        cost.Link(-1.0, 0.0)


@pytest.mark.parametrize(
    "bad", [dict(shape=(2, 2, 2, 2)), dict(shape=(0, 4)), dict(shape=(2, 4), beta=[1.0, 2.0, 3.0])]
)
def test_bad_meshes_raise_value_error(bad):
    with pytest.raises(ValueError):
        cost.make_mesh(bad["shape"], beta=bad.get("beta"))


def test_profile_overrides_device_and_links(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"device": {"flops": 2e12}, "mesh": {"alpha": [1e-4, 1e-6]}}))
    overrides, device = cost.load_profile(path, (2, 4))
    assert device.flops == 2e12 and overrides == {"alpha": (1e-4, 1e-6)}
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        cost.load_profile(path, (2, 4))
    path.write_text(json.dumps({"devices": {}}))
    with pytest.raises(ValueError, match="unknown keys"):
        cost.load_profile(path, (2, 4))


def test_profile_collectives_price_their_own_kind(tmp_path):
    # A calibrated profile (python -m autopar.calibrate) gives each collective kind its own figures.
    path = tmp_path / "p.json"
    profile = {
        "mesh": {
            "shape": [2, 4],
            "alpha": [1e-5, 1e-5],
            "beta": [1e-9, 1e-9],
            "collectives": {"all_to_all": {"alpha": [1e-3, 2e-3], "beta": 1e-8}},
        },
        "calibration": {"platform": "cpu"},
    }
    path.write_text(json.dumps(profile))
    overrides, _ = cost.load_profile(path, (2, 4))
    mesh = cost.make_mesh(
        (2, 4), alpha=overrides["alpha"], beta=overrides["beta"], collectives=overrides["collectives"]
    )
    assert mesh.all_to_all(1e6, [1]) == pytest.approx(2e-3 * 1.001 + 1e-8 * 1.5 * 3 / 16 * 1e6)
    assert mesh.all_reduce(1e6, [1]) == pytest.approx(1e-5 * 1.01 + 1e-9 * 1.5 * 1e6)  # the axis's figures
    # Without per-kind figures nothing changes (the default meshes carry none).
    assert cost.make_mesh((2, 4)).collectives == ()
    profile["mesh"]["collectives"] = {"broadcast": {"alpha": 1.0, "beta": 1.0}}
    path.write_text(json.dumps(profile))
    with pytest.raises(ValueError, match="unknown kinds"):
        cost.load_profile(path, (2, 4))


def test_profile_fuses_broadcasts_default_does_not(tmp_path):
    # XLA fuses a broadcast into its consumers: under a profile (measured figures) it costs nothing of its
    # own; without one the default model prices it as before (default plans unchanged).
    from autopar.passes.intra_op.graph import Rule
    from autopar.passes.intra_op.strategies import OpFacts, op_time

    path = tmp_path / "p.json"
    path.write_text(json.dumps({"device": {"flops": 1e10, "memory_bandwidth": 5e9}}))
    _, device = cost.load_profile(path, (8,))
    assert device.fused_broadcasts and not cost.DeviceModel().fused_broadcasts
    path.write_text(json.dumps({"device": {"fused_broadcasts": False}}))
    assert not cost.load_profile(path, (8,))[1].fused_broadcasts
    rule = Rule((1024, 256), (((1,),),), (((0,), (1,)),), frozenset(), frozenset())
    broadcast = OpFacts("stablehlo.broadcast_in_dim", rule, ((256,),), (4,), ((1024, 256),), (4,))
    multiply = dataclasses.replace(broadcast, name="stablehlo.multiply")
    fused = cost.make_mesh((8,), device=device)
    unfused = cost.make_mesh((8,), device=cost.DeviceModel(flops=1e10, memory_bandwidth=5e9))
    assert op_time(broadcast, fused) == 0.0
    assert op_time(broadcast, unfused) == pytest.approx((256 + 1024 * 256) * 4 / 5e9)
    assert op_time(multiply, fused) == op_time(multiply, unfused) > 0


def test_profile_prices_gather_relayouts_default_does_not(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"device": {"flops": 1e10}}))
    assert cost.load_profile(path, (8,))[1].relayout_gathers and not cost.DeviceModel().relayout_gathers
    path.write_text(json.dumps({"device": {"relayout_gathers": False}}))
    assert not cost.load_profile(path, (8,))[1].relayout_gathers


def test_widened_collectives_come_from_a_profile_or_the_option_and_default_off(tmp_path):
    from autopar.passes.intra_op import config as config_lib

    path = tmp_path / "p.json"
    path.write_text(json.dumps({"device": {"widened_collectives": True}}))
    assert cost.load_profile(path, (8,))[1].widened_collectives
    assert not cost.DeviceModel().widened_collectives
    assert not config_lib.from_options({"mesh": "8"}).mesh.device.widened_collectives
    assert config_lib.from_options({"mesh": "8", "widen_collectives": True}).mesh.device.widened_collectives
    assert config_lib.from_options(
        {"mesh": "8", "cluster_profile": str(path)}
    ).mesh.device.widened_collectives


def test_narrow_dots_are_slower_under_a_profile_that_says_so(tmp_path):
    # A profile's dot_half_rate_width c: a dot whose smallest per-device GEMM dim is d costs
    # 1 + c / max(d, c) times its FLOP time. Without it (the default) every dot runs at the peak.
    from autopar.passes.intra_op.graph import Rule
    from autopar.passes.intra_op.strategies import OpFacts, compute_time, op_strategies, op_time

    path = tmp_path / "p.json"
    path.write_text(
        json.dumps({"device": {"flops": 1e10, "memory_bandwidth": 1e12, "dot_half_rate_width": 16}})
    )
    device = cost.load_profile(path, (8,))[1]
    assert device.dot_half_rate_width == 16 and cost.DeviceModel().dot_half_rate_width == 0
    # [1024, 256] x [256, 512]: factors m=0, n=1, k=2 (k contracted).
    rule = Rule((1024, 512, 256), (((0,), (2,)), ((2,), (1,))), (((0,), (1,)),), frozenset({2}), frozenset())
    dot = OpFacts("stablehlo.dot_general", rule, ((1024, 256), (256, 512)), (4, 4), ((1024, 512),), (4,))
    slow = cost.make_mesh((8,), device=device)
    flat = cost.make_mesh((8,), device=dataclasses.replace(device, dot_half_rate_width=0.0))
    whole = op_time(dot, flat)
    assert whole == pytest.approx(2 * 1024 * 512 * 256 / 1e10)
    assert compute_time(dot, slow, [0]) == pytest.approx(whole / 8 * (1 + 16 / 128))  # m: 128 per device
    assert compute_time(dot, slow, [1]) == pytest.approx(whole / 8 * (1 + 16 / 64))  # n: 64
    assert compute_time(dot, slow, [2]) == pytest.approx(whole / 8 * (1 + 16 / 32))  # k: 32
    assert compute_time(dot, flat, [2]) == pytest.approx(whole / 8)
    # The strategies carry it (replicated first: the narrowest dim is k = 256).
    costs = op_strategies(dot, slow, (0,), False).cost
    assert costs[0] == pytest.approx(whole * (1 + 16 / 256))
    assert min(costs) > min(op_strategies(dot, flat, (0,), False).cost)


def _table(kind="all_reduce", axes=(1,)):
    # Time per byte grows with the size, as a CPU host's collectives do past its caches.
    return cost.tables.CollectiveTable(kind, axes, (1e3, 1e6, 1e7), (1e-4, 5e-4, 2e-2))


def test_a_measured_table_prices_its_collective_by_interpolation():
    table = _table()
    assert [table.at(b) for b in (1e3, 1e6, 1e7)] == [1e-4, 5e-4, 2e-2]
    assert table.at(10.0) == 1e-4  # below the smallest size: the latency floor
    assert table.at(5.5e6) == pytest.approx((5e-4 + 2e-2) / 2)  # on the line between two samples
    assert table.at(1.9e7) == pytest.approx(2e-2 + 9e6 * (2e-2 - 5e-4) / 9e6)  # the last slope goes on
    # A later sample measured faster than an earlier one is noise: times never fall with the size.
    noisy = cost.tables.CollectiveTable("all_gather", (0,), (1e3, 1e4, 1e5), (3e-4, 2e-4, 4e-4))
    assert noisy.seconds == (3e-4, 3e-4, 4e-4)
    bad = (((1e3, 1e3), (1.0, 1.0), "positive and distinct"), ((1e3,), (-1.0,), ">= 0"))
    for sizes, seconds, match in bad:
        with pytest.raises(ValueError, match=match):
            cost.tables.CollectiveTable("all_reduce", (0,), sizes, seconds)


def test_a_mesh_with_tables_uses_them_for_exactly_their_axes():
    mesh = cost.make_mesh((2, 4), alpha=1e-5, beta=1e-10, tables=[_table()])
    plain = cost.make_mesh((2, 4), alpha=1e-5, beta=1e-10)
    assert mesh.all_reduce(1e6, [1]) == 5e-4
    assert mesh.all_reduce(1e6, [0]) == plain.all_reduce(1e6, [0])  # no table over x alone
    assert mesh.all_reduce(1e6, [0, 1]) == plain.all_reduce(1e6, [0, 1])
    assert mesh.all_gather(1e6, [1]) == plain.all_gather(1e6, [1])  # no table of that kind
    # A gradient's part of XLA's merged all-reduce pays its share of the latency and its bytes at the
    # merged size's rate, not at its own (cheaper) size's.
    merged = mesh.all_reduce(1e6, [1], latency_share=0.1, merged_bytes=1e7)
    latency = 1.01 * 1e-5
    assert merged == pytest.approx(0.1 * latency + 1e6 * (2e-2 - latency) / 1e7)
    assert merged > mesh.all_reduce(1e6, [1]) - 0.9 * latency


def test_a_merged_gradient_pays_the_measured_cost_per_further_operand():
    # 10 gradients merged into one all-reduce: the first pays the latency, each further one what the
    # calibration measured per operand (on XLA's CPU runtime about a latency each; on GPUs far less).
    per_operand = 3e-5
    table = dataclasses.replace(_table(), merged_operand=per_operand)
    mesh = cost.make_mesh((2, 4), alpha=1e-5, beta=1e-10, tables=[table])
    share = mesh.all_reduce(1e3, [1], latency_share=0.1, merged_bytes=1e4)
    latency = 1.01 * 1e-5
    assert share == pytest.approx(0.1 * latency + 0.9 * per_operand + 1e3 * (table.at(1e4) - latency) / 1e4)
    # Ten parts sum to one latency, nine further operands and the merged bytes.
    assert 10 * share == pytest.approx(latency + 9 * per_operand + table.at(1e4) - latency)
    unmeasured = cost.make_mesh((2, 4), alpha=1e-5, beta=1e-10, tables=[_table()])
    assert share - unmeasured.all_reduce(1e3, [1], latency_share=0.1, merged_bytes=1e4) == pytest.approx(
        0.9 * per_operand
    )
    assert mesh.all_reduce(1e3, [1]) == table.at(1e3)  # an all-reduce of its own: unchanged
    with pytest.raises(ValueError, match="merged_operand must be >= 0"):
        dataclasses.replace(_table(), merged_operand=-1.0)


def test_profile_tables_are_read_and_checked(tmp_path):
    path = tmp_path / "p.json"
    samples = [[1024, 1e-4], [1048576, 6e-4], [16777216, 3e-2]]
    figures = {"alpha": 1e-4, "beta": 2e-10, "tables": [{"axes": [0, 1], "samples": samples}]}
    profile = {"mesh": {"shape": [2, 4], "collectives": {"all_reduce": figures}}}
    path.write_text(json.dumps(profile))
    overrides, _ = cost.load_profile(path, (2, 4))
    (table,) = overrides["tables"]
    assert (table.kind, table.axes, table.at(16777216)) == ("all_reduce", (0, 1), 3e-2)
    figures["tables"] = [{"axes": [2], "samples": samples}]
    path.write_text(json.dumps(profile))
    with pytest.raises(ValueError, match=r"axes \[2\] outside a 2-axis mesh"):
        cost.load_profile(path, (2, 4))
    figures["tables"] = [{"axes": [0], "samples": [[1024, 1e-4], [1024, 2e-4]]}]
    path.write_text(json.dumps(profile))
    with pytest.raises(ValueError, match="positive and distinct"):
        cost.load_profile(path, (2, 4))
    figures["tables"] = [{"axes": [0], "samples": samples, "merged_operand": 2e-5}]
    path.write_text(json.dumps(profile))
    assert cost.load_profile(path, (2, 4))[0]["tables"][0].merged_operand == 2e-5
    for entry, match in (
        ({"axes": [0], "samples": samples, "merged_operand": -1}, "merged_operand must be >= 0"),
        ({"axes": [0], "samples": samples, "latency": 1}, "nothing else"),
        ({"axes": [0], "samples": samples, "merged_operand": "fast"}, "merged_operand must be seconds"),
    ):
        figures["tables"] = [entry]
        path.write_text(json.dumps(profile))
        with pytest.raises(ValueError, match=match):
            cost.load_profile(path, (2, 4))


def test_tables_carry_over_to_a_mesh_of_grouped_axes():
    tables = [_table(axes=(0, 1)), _table(axes=(1,)), _table("all_gather", (0,))]
    # Axes (0, 1) become one axis; tables over a part of a group do not carry.
    assert [t.axes for t in cost.tables.regrouped(tables, [(0, 1)])] == [(0,)]
    assert [(t.kind, t.axes) for t in cost.tables.regrouped(tables, [(1,), (0,)])] == [
        ("all_reduce", (0, 1)),
        ("all_reduce", (0,)),
        ("all_gather", (1,)),
    ]
