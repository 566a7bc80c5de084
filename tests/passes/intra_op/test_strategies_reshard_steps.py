"""The reshard rules of the intra-op cost model (resharding.reshard_steps) against what XLA compiles: for
layout pairs on 2- and 3-axis meshes, the chain of constraints the emitter writes (through the waypoint
where one is needed) compiles to exactly the collectives the model prices, with no rematerialization, and
keeps the values."""

import itertools
import os
import random
import re
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from autopar.cost import MeshModel
from autopar.passes.intra_op import expected
from autopar.passes.intra_op.resharding import MOVE_FIRST, reshard_steps, reshard_waypoints
from autopar.runtime.hlo import parse_collectives

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
    ((2, 2, 2), (0, 0, -1), (-1, -1, 2)),  # (x, y) gathered off dim 0, z sliced onto dim 2: gather first
    ((2, 2, 2), (-1, 0, 0), (2, -1, -1)),
    ((2, 2, 2), (0, 0, -1), (-1, -1, 1)),
    ((2, 2, 2), (0, 0, -1), (-1, -1, -1)),  # a plain gather of two axes
    # Gathers off several dims: one all-gather per dim, the last dim first.
    ((2, 4), (0, 1), (-1, -1)),
    ((2, 4), (1, 0), (-1, -1)),
    ((2, 2, 2), (0, 1, 2), (-1, -1, -1)),
    ((2, 2, 2), (0, 1, 2), (0, -1, -1)),  # x stays on dim 0: the gathers carry its split
    ((2, 2, 2), (2, 0, 0), (-1, -1, -1)),
    ((2, 2, 2), (0, 0, 1), (-1, 2, -1)),  # x and z gathered off two dims, y moved
]
KINDS = ("all-gather", "all-to-all", "collective-permute")
REMAT = "Involuntary full rematerialization"


def xla_warnings(compile_fn):
    """Runs compile_fn with file descriptor 2 (where XLA's C++ warns) pointed at a file; returns its result
    and what was written."""
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            result = compile_fn()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        return result, captured.read()


def spec(layout: tuple[int, ...], rank: int) -> P:
    dims = []
    for d in range(rank):
        axes = tuple(AXES[a] for a, at in enumerate(layout) if at == d)
        dims.append(axes if len(axes) > 1 else (axes[0] if axes else None))
    return P(*dims)


def compiled_counts(mesh: Mesh, chain: list[P]) -> tuple[dict[str, int], bool]:
    """The collectives XLA compiles the chain of constraints to, and whether it rematerialized."""
    counts, rematerialized, _ = compiled_collectives(mesh, chain)
    return counts, rematerialized


def compiled_collectives(mesh: Mesh, chain: list[P]) -> tuple[dict[str, int], bool, list]:
    """`compiled_counts`, and each collective's (kind, axes, bytes per device) in program order."""

    def f(a):
        a = a * 2.0
        for s in chain:
            a = jax.lax.with_sharding_constraint(a, NamedSharding(mesh, s))
        return a + 1.0

    a = jnp.arange(16 * 8 * 32, dtype=jnp.float32).reshape(16, 8, 32)
    jitted = jax.jit(
        f, in_shardings=NamedSharding(mesh, chain[0]), out_shardings=NamedSharding(mesh, chain[-1])
    )
    compiled, warnings = xla_warnings(lambda: jitted.lower(a).compile())
    np.testing.assert_array_equal(np.asarray(compiled(a)), np.asarray(a) * 2 + 1)
    text = compiled.as_text()
    counts = {k: len(re.findall(rf"\b{k}(-start)?\(", text)) for k in KINDS}
    named = dict(zip(mesh.axis_names, mesh.devices.shape, strict=True))
    found = [(c.kind, tuple(c.axes), c.bytes) for c in parse_collectives(text, named) if c.kind in KINDS]
    return counts, REMAT in warnings, found


@pytest.mark.parametrize("shape,produced,required", CASES)
def test_xla_reshards_as_priced(shape, produced, required) -> None:
    mesh = Mesh(np.array(jax.devices()[: int(np.prod(shape))]).reshape(shape), AXES[: len(shape)])
    p, c = np.array(produced, np.int8), np.array(required, np.int8)
    gather, move, permute, remat, order, _ = reshard_steps(p[None], c[None], shape)
    assert not remat[0, 0], "every case here has a remat-free order"
    waypoints = reshard_waypoints(p, c, shape)
    chain = [spec(produced, 3)] + [spec(tuple(w), 3) for w in waypoints] + [spec(required, 3)]
    counts, rematerialized, found = compiled_collectives(mesh, chain)
    assert not rematerialized, chain
    # What the plan expects (expected.py, the cost model's steps): each collective's kind, axes and bytes.
    model = MeshModel(shape, AXES[: len(shape)], (1e-6,) * len(shape), (1e-11,) * len(shape))
    priced = [
        (kind, tuple(AXES[a] for a in axes), int(size))
        for kind, axes, size in expected._reshard(p, c, (16, 8, 32), 4, model)
    ]
    assert sorted(found) == sorted(priced), (chain, found, priced)
    gathered_dims = len({int(p[a]) for a in range(len(shape)) if gather[0, 0] >> a & 1})
    assert counts["all-gather"] == gathered_dims
    assert counts["all-to-all"] == int(move[0, 0] > 0)
    assert counts["collective-permute"] == int(permute[0, 0] > 0)
    if order[0, 0] == MOVE_FIRST:
        assert waypoints and (waypoints[0] >= 0).sum() == (p >= 0).sum()


def layout_pairs(shape: tuple[int, ...], rank: int, sample: int | None) -> list:
    layouts = list(itertools.product(range(-1, rank), repeat=len(shape)))
    pairs = [(p, c) for p in layouts for c in layouts if p != c]
    if sample is not None:
        pairs = random.Random(0).sample(pairs, sample)
    return pairs


@pytest.mark.parametrize(
    "shape,rank,sample", [((2, 4), 2, None), ((2, 2, 2), 3, 120)], ids=["2x4-all", "2x2x2-sample"]
)
def test_no_reshard_the_model_prices_makes_xla_rematerialize(shape, rank, sample) -> None:
    """Every pair of layouts of a rank-2 tensor on 2x4, and a fixed sample of rank-3 pairs on 2x2x2:
    through the emitter's waypoints, XLA never falls back to a full rematerialization, unless the model
    prices the reshard as one."""
    mesh = Mesh(np.array(jax.devices()[: int(np.prod(shape))]).reshape(shape), AXES[: len(shape)])
    failures = []
    for produced, required in layout_pairs(shape, rank, sample):
        p, c = np.array(produced, np.int8), np.array(required, np.int8)
        if reshard_steps(p[None], c[None], shape)[3][0, 0]:
            continue  # priced as the rematerialization it is
        chain = [spec(produced, 3)] + [spec(tuple(w), 3) for w in reshard_waypoints(p, c, shape)]
        chain.append(spec(required, 3))
        if compiled_counts(mesh, chain)[1]:
            failures.append(chain)
    assert not failures, failures


def test_one_step_where_xla_rematerializes() -> None:
    # Without the waypoint, XLA gathers the whole tensor and slices it again (no all-to-all at all).
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("x", "y"))
    counts, rematerialized = compiled_counts(mesh, [spec((0, 0), 3), spec((-1, 2), 3)])
    assert rematerialized and counts["all-to-all"] == 0 and counts["all-gather"] == 1
