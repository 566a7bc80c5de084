"""The C++ layer clustering (Alpa's layer construction DP) on hand-checkable block sequences."""

from __future__ import annotations

import pytest

from autopar import _core


def chain(n: int, bytes_between: list[float]) -> list[tuple[int, float, list[int]]]:
    """Block i feeds block i + 1 with bytes_between[i]."""
    return [(i, bytes_between[i], [i + 1]) for i in range(n - 1)]


def test_uniform_chain_is_cut_evenly():
    out = _core.cluster_layers([1.0] * 8, chain(8, [1.0] * 7), 4, 0.0)
    assert out.layer_of_block == [0, 0, 1, 1, 2, 2, 3, 3]
    assert out.boundary_bytes == 3.0
    assert out.max_layer_flops == 2.0


def test_cut_goes_where_traffic_is_small_within_eps():
    # Six equal blocks, two layers. The even cut (after block 2) crosses 100 bytes; cutting after block 3
    # crosses 1 byte and is allowed with eps = 0.5 (4 blocks <= 1.5 * 3).
    between = [100.0, 100.0, 100.0, 1.0, 100.0]
    tight = _core.cluster_layers([1.0] * 6, chain(6, between), 2, 0.0)
    loose = _core.cluster_layers([1.0] * 6, chain(6, between), 2, 0.5)
    assert tight.layer_of_block == [0, 0, 0, 1, 1, 1]
    assert loose.layer_of_block == [0, 0, 0, 0, 1, 1]
    assert loose.boundary_bytes == 1.0


def test_skip_connection_counts_once_per_layer():
    # Block 0's output is read by blocks 1, 2 and 3: any cut pays it once (8 bytes), never three times.
    values = [(0, 8.0, [1, 2, 3]), (1, 1.0, [2]), (2, 1.0, [3])]
    out = _core.cluster_layers([1.0, 1.0, 1.0, 1.0], values, 2, 1.0)
    # Cutting after block 1 crosses {block0 out: 8, block1 out: 1} = 9; after 2: {8, 1} = 9;
    # after 0: 8. With eps = 1 (max 4 FLOPs) all three are allowed; the cheapest is after block 0.
    assert out.layer_of_block == [0, 1, 1, 1]
    assert out.boundary_bytes == 8.0


def test_unbalanced_blocks_report_the_needed_eps():
    # Mean 3.5 per layer; the best cut [4] | [1, 1, 1] has a 4-FLOP layer: eps >= 4 / 3.5 - 1 = 0.142857.
    with pytest.raises(ValueError, match=r"within eps=0 .*needs eps >= 0\.14285"):
        _core.cluster_layers([4.0, 1.0, 1.0, 1.0], chain(4, [1.0] * 3), 2, 0.0)
    assert _core.min_max_layer_flops([4.0, 1.0, 1.0, 1.0], 2) == 4.0


def test_more_layers_than_blocks_is_an_error():
    with pytest.raises(ValueError, match="use at most 3 layers"):
        _core.cluster_layers([1.0, 1.0, 1.0], [], 4, 0.5)


def test_out_of_range_block_is_an_error_not_a_crash():
    with pytest.raises(ValueError, match="consumer block 7"):
        _core.cluster_layers([1.0, 1.0], [(0, 1.0, [7])], 2, 0.5)
    with pytest.raises(ValueError, match="producer block -1"):
        _core.cluster_layers([1.0, 1.0], [(-1, 1.0, [1])], 2, 0.5)


def test_zero_flop_blocks_join_a_neighbour():
    out = _core.cluster_layers([1.0, 0.0, 1.0], chain(3, [1.0, 1.0]), 2, 0.0)
    assert out.layer_of_block in ([0, 0, 1], [0, 1, 1])


def test_layers_are_not_cut_below_the_mean_over_one_plus_eps():
    # Blocks 4, 1, 4, 1, 4, 1 into 3 layers, eps=2 (layers <= 10 FLOPs, >= 5/3 FLOPs). The cheapest cut
    # (after blocks 1 and 4: 2 bytes) leaves a last layer of 1 FLOP; the lower bound forbids it, so the
    # cut costs 101 bytes and the layers are 5, 5, 5.
    out = _core.cluster_layers([4.0, 1.0] * 3, chain(6, [100.0, 1.0, 100.0, 100.0, 1.0]), 3, 2.0)
    assert out.layer_of_block == [0, 0, 1, 1, 2, 2]
    assert out.boundary_bytes == 101.0


def test_lower_bound_is_dropped_when_no_cut_meets_it():
    # 6, 0.1, 6 into 3 layers: the middle layer must be the 0.1-FLOP block, below mean / (1 + eps).
    out = _core.cluster_layers([6.0, 0.1, 6.0], chain(3, [1.0, 1.0]), 3, 1.0)
    assert out.layer_of_block == [0, 1, 2]
