"""The named pipelines (passes/pipelines.py): `parallelize` runs `autopar-shard{...}` or
`autopar-pipeshard{...}` and nothing else, so `autopar-opt` with the same pipeline text on the module
`parallelize` lowered writes exactly the module it runs (compared byte for byte, locations included); the
runtime plans nothing; intra-op options reach the stage costs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import autopar
from autopar import ir as air
from autopar import passes
from autopar.api.parallelize import ParallelizedFunction
from autopar.ir import attrs
from autopar.passes import pipeline, pipelines
from autopar.passes.inter_op import intra_op_costs
from cases import CASES

REPO = Path(__file__).resolve().parents[2]
# The subprocess imports autopar from where this process did: the installed package, or python/ in-tree.
PYTHON_DIR = Path(autopar.__file__).resolve().parents[1]

METHODS = {
    "shard-2x4": lambda: autopar.ShardParallel(mesh_shape=(2, 4)),
    "pipeshard-2-stages": lambda: autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=2),
        stage_option=autopar.UniformStageOption(2),
    ),
}


@pytest.fixture
def recorded(monkeypatch):
    """Records, for every planning, the module `parallelize` hands its pipeline and the pipeline text."""
    seen: list[tuple[bytes, str]] = []
    real = ParallelizedFunction._run_pipeline

    def spy(self, module, pipeline_text):
        seen.append((air.to_bytes(module, air.Emit.BYTECODE), pipeline_text))
        real(self, module, pipeline_text)

    monkeypatch.setattr(ParallelizedFunction, "_run_pipeline", spy)
    return seen


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_autopar_opt_writes_the_module_parallelize_runs(case, method, recorded, tmp_path):
    step, args, batch_argnums = CASES[case]()
    f = autopar.parallelize(step, method=METHODS[method](), batch_argnums=batch_argnums)
    lowered = f.lower(*args)
    ((given, text),) = recorded
    name = "autopar-pipeshard" if method.startswith("pipeshard") else "autopar-shard"
    assert text.startswith(f"builtin.module({name}{{") and text.count("autopar-") == 1
    (tmp_path / "in.mlirbc").write_bytes(given)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "autopar.opt",
            str(tmp_path / "in.mlirbc"),
            f"--pass-pipeline={text}",
            "--mlir-print-debuginfo",
            "-o",
            str(tmp_path / "out.mlir"),
        ],
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(PYTHON_DIR)},
    )
    ran = air.to_bytes(lowered.module, air.Emit.TEXT, debug_info=True)
    assert (tmp_path / "out.mlir").read_bytes() == ran
    if name == "autopar-pipeshard":  # every stage function is sharded in the module itself
        stages = [op for op in lowered.module.body.operations if attrs.get_stage_mesh(op) is not None]
        assert stages and all("sdy.sharding = #sdy.sharding<@stage_" in str(op) for op in stages)


def test_the_runtime_runs_no_pass():
    for path in (REPO / "python" / "autopar" / "runtime").glob("*.py"):
        text = path.read_text()
        assert "passes" not in text.replace("passes/", "") or path.name == "__init__.py", path
        assert "builtin.module(" not in text, path


def test_pipeline_texts_expand_to_the_steps():
    text = autopar.PipeshardParallel(
        num_micro_batches=4,
        layer_option=autopar.AutoLayerOption(layer_num=3),
        auto_sharding_option=autopar.AutoShardingOption(zero_stage=2, allow_all_gather=False),
    ).pipeline((1, 8))
    (element,) = pipeline.parse_pipeline(text)
    expanded = pipelines.expand("autopar-pipeshard", pipeline.parsed_options(element))
    steps = [e.name for e in pipeline.parse_pipeline(expanded)]
    assert steps == [
        "autopar-inline",
        "autopar-unroll-loops",
        "autopar-flatten-conditionals",
        "autopar-fold-transposes",
        "autopar-cluster-layers",
        "autopar-inter-op",
        "autopar-shard-stages",
        "autopar-reshard",
        "autopar-schedule",
    ]
    # The strategy options reach the stage costs too (only the ones not at their defaults).
    assert "intra-op-options='allow-all-gather=false zero-stage=2'" in expanded
    assert "autopar-cluster-layers{num-layers=3 eps=0.6}" in expanded


def test_strategy_options_reach_the_stage_costs():
    step, args, batch_argnums = CASES["mlp"]()
    method = METHODS["pipeshard-2-stages"]()
    f = autopar.parallelize(step, method=method, batch_argnums=batch_argnums)
    module = f.lower(*args).module
    base = attrs.get_inter_op_plan(module.operation).stages
    forced = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=2),
        stage_option=autopar.UniformStageOption(2),
        auto_sharding_option=autopar.AutoShardingOption(force_data_parallel=True, zero_stage=3),
    )
    g = autopar.parallelize(step, method=forced, batch_argnums=batch_argnums)
    other = attrs.get_inter_op_plan(g.lower(*args).module.operation).stages
    # ZeRO-3 shards every stage's parameters and gathers them where used: both stages cost more.
    # (prefer_reduce_scatter, which this test used before, is off on CPU devices: methods.as_compiled_for)
    assert all(o.cost > b.cost for o, b in zip(other, base, strict=True)), (base, other)
    given = intra_op_costs.strategy_options("zero-stage=0 allow-all-gather=false")
    assert given == {"allow_all_gather": False}  # defaults are left out: the same cache entries


def test_pipeshard_runs_with_options_and_matches_jax():
    step, args, batch_argnums = CASES["mlp"]()
    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=2),
        stage_option=autopar.UniformStageOption(2),
        auto_sharding_option=autopar.AutoShardingOption(allow_all_to_all=False),
    )
    f = autopar.parallelize(step, method=method, batch_argnums=batch_argnums)
    got = f(*args)
    want = jax.jit(step)(*args)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_shard_stages_on_an_outlined_module_equals_the_pipeline():
    step, args, batch_argnums = CASES["mlp"]()
    f = autopar.parallelize(step, method=METHODS["pipeshard-2-stages"](), batch_argnums=batch_argnums)
    planned = air.to_bytes(f.lower(*args).module, air.Emit.TEXT, debug_info=False)
    assert b"autopar.inter_op.plan" in planned
    with pytest.raises(autopar.errors.PassError, match="already sharded"):
        passes.run(air.parse_text(planned.decode()), "builtin.module(autopar-shard-stages)")
