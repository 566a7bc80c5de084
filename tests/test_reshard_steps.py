"""The reshard rules of the intra-op cost model (strategies.reshard_steps) against what XLA compiles: for
layout pairs on 2- and 3-axis meshes, the chain of constraints the emitter writes (through the waypoint
where one is needed) compiles to exactly the collectives the model prices, with no rematerialization, and
keeps the values."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from autopar.passes.intra_op.strategies import MOVE_FIRST, reshard_steps, reshard_waypoint

AXES = ("x", "y", "z")
# (mesh shape, produced, required): layouts give each mesh axis's dim (-1: not sharded), as the pass does.
CASES = [
    ((2, 4), (0, 0), (-1, 2)),  # (x, y) on dim 0 -> y on dim 2: the all-to-all first
    ((2, 4), (0, 0), (2, -1)),  # (x, y) on dim 0 -> x on dim 2: the all-gather first
    ((2, 4), (0, 1), (-1, 2)),  # different dims: one step
    ((2, 4), (0, 0), (2, 2)),  # both move together
    ((2, 4), (1, -1), (-1, 0)),  # gather x, slice y
    ((2, 2, 2), (0, 0, 0), (-1, -1, 2)),
    ((2, 2, 2), (0, 0, 0), (2, -1, -1)),
    ((2, 2, 2), (0, 0, 1), (-1, 2, 1)),
]
KINDS = ("all-gather", "all-to-all", "collective-permute")


def spec(layout: tuple[int, ...], rank: int) -> P:
    dims = []
    for d in range(rank):
        axes = tuple(AXES[a] for a, at in enumerate(layout) if at == d)
        dims.append(axes if len(axes) > 1 else (axes[0] if axes else None))
    return P(*dims)


def compiled_counts(mesh: Mesh, chain: list[P]) -> tuple[dict[str, int], str]:
    def f(a):
        a = a * 2.0
        for s in chain:
            a = jax.lax.with_sharding_constraint(a, NamedSharding(mesh, s))
        return a + 1.0

    a = jnp.arange(16 * 8 * 32, dtype=jnp.float32).reshape(16, 8, 32)
    jitted = jax.jit(
        f, in_shardings=NamedSharding(mesh, chain[0]), out_shardings=NamedSharding(mesh, chain[-1])
    )
    compiled = jitted.lower(a).compile()
    np.testing.assert_array_equal(np.asarray(compiled(a)), np.asarray(a) * 2 + 1)
    text = compiled.as_text()
    counts = {k: len(re.findall(rf"\b{k}(-start)?\(", text)) for k in KINDS}
    return counts, text


@pytest.mark.parametrize("shape,produced,required", CASES)
def test_xla_reshards_as_priced(shape, produced, required) -> None:
    mesh = Mesh(np.array(jax.devices()[: int(np.prod(shape))]).reshape(shape), AXES[: len(shape)])
    p, c = np.array(produced, np.int8), np.array(required, np.int8)
    gather, move, permute, remat, order = reshard_steps(p[None], c[None], shape)
    assert not remat[0, 0], "every case here has a remat-free order"
    waypoint = reshard_waypoint(p, c, shape)
    chain = [spec(produced, 3)] + ([spec(tuple(waypoint), 3)] if waypoint is not None else [])
    chain.append(spec(required, 3))
    counts, text = compiled_counts(mesh, chain)
    expected = {
        "all-gather": int(gather[0, 0] > 0),
        "all-to-all": int(move[0, 0] > 0),
        "collective-permute": int(permute[0, 0] > 0),
    }
    assert counts == expected, (chain, counts, expected)
    if order[0, 0] == MOVE_FIRST:
        assert waypoint is not None and (waypoint >= 0).sum() == (p >= 0).sum()


def test_one_step_where_xla_rematerializes() -> None:
    # Without the waypoint, XLA gathers the whole tensor and slices it again (no all-to-all at all).
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("x", "y"))
    counts, _ = compiled_counts(mesh, [spec((0, 0), 3), spec((-1, 2), 3)])
    assert counts["all-to-all"] == 0 and counts["all-gather"] == 1
