"""autopar.save_checkpoint / restore_checkpoint: each mesh worker writes what it holds, the checkpoint appears
whole or not at all, and training resumes from it on another runtime with the same losses."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from benchmarks.models.small import tanh_mlp_adam

import autopar
from autopar.api import checkpoint
from autopar.runtime.remote_array import RemoteArray


def start(width: int = 16, layers: int = 4, batch: int = 16):
    return tanh_mlp_adam(width, layers, batch, lr=1e-2)[1]


adam_step = tanh_mlp_adam(1, 1, 1, lr=1e-2)[0]  # the step does not depend on the sizes


def pipelined(executor: str, cluster_shape=(1, 2)):
    method = autopar.PipeshardParallel(
        num_micro_batches=2,
        layer_option=autopar.AutoLayerOption(layer_num=4),
        stage_option=autopar.UniformStageOption(num_stages=2),
        cluster_shape=cluster_shape,
        executor=executor,
    )
    devices = jax.devices()[: cluster_shape[0] * cluster_shape[1]]
    return autopar.parallelize(adam_step, method=method, devices=devices, batch_argnums=(2,))


def test_resume_from_a_checkpoint_on_another_runtime_gives_the_same_losses(tmp_path: Path):
    params, state, batch = start()
    step = pipelined("processes")
    losses, carry = [], (params, state)
    for _ in range(4):
        *carry, loss = step(*carry, batch)
        losses.append(float(loss))
        if len(losses) == 2:
            assert all(isinstance(x, RemoteArray) for x in jax.tree.leaves(carry))
            autopar.save_checkpoint(tmp_path / "ckpt", tuple(carry))
    parts = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert parts == ["manifest.json", "worker_0", "worker_1"]  # each mesh worker wrote what it holds
    # Resume after step 2 in one process on four devices: the same losses.
    resumed = autopar.restore_checkpoint(tmp_path / "ckpt", like=(params, state))
    other = pipelined("in-process", cluster_shape=(1, 4))
    again = []
    for _ in range(2):
        *resumed, loss = other(*resumed, batch)
        again.append(float(loss))
    np.testing.assert_allclose(again, losses[2:], rtol=1e-5)


def test_a_cut_short_save_leaves_the_last_whole_checkpoint(tmp_path: Path, monkeypatch):
    params, state, _ = start()
    autopar.save_checkpoint(tmp_path / "ckpt", (params, state))
    real = checkpoint._checkpointer

    def failing():
        class Failing:
            def save(self, *args, **kwargs):
                raise OSError("disk full")

        return Failing()

    monkeypatch.setattr(checkpoint, "_checkpointer", failing)
    changed = jax.tree.map(lambda x: x + 1, (params, state))
    with pytest.raises(OSError, match="disk full"):
        autopar.save_checkpoint(tmp_path / "ckpt", changed)
    monkeypatch.setattr(checkpoint, "_checkpointer", real)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no half-written folder left beside it
    restored = autopar.restore_checkpoint(tmp_path / "ckpt", like=(params, state))
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves((params, state)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_incomplete_or_mismatched_checkpoint_is_refused(tmp_path: Path):
    params, state, _ = start()
    (tmp_path / "half").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="not a complete checkpoint"):
        autopar.restore_checkpoint(tmp_path / "half", like=params)
    autopar.save_checkpoint(tmp_path / "ckpt", params)
    with pytest.raises(checkpoint.CheckpointError, match="holds 4 arrays but `like` has"):
        autopar.restore_checkpoint(tmp_path / "ckpt", like=(params, state))
    wrong = [jnp.zeros((3, 3), jnp.float32)] * 4
    with pytest.raises(
        checkpoint.CheckpointError,
        match=r"like\[0\] is float32\[16, 16\] in the checkpoint but float32\[3, 3\] in `like`",
    ):
        autopar.restore_checkpoint(tmp_path / "ckpt", like=wrong)
    (tmp_path / "ckpt" / checkpoint.MANIFEST).write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match=r"manifest.json is damaged .*restore an earlier"):
        autopar.restore_checkpoint(tmp_path / "ckpt", like=params)


def test_a_save_replaces_only_a_checkpoint(tmp_path: Path):
    # `save_checkpoint(".", state)` once renamed the working folder aside and deleted it after the save.
    state = {"w": np.ones((2, 2), np.float32)}
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("1,2\n")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(checkpoint.CheckpointError, match=r"data is a folder but not a checkpoint"):
        autopar.save_checkpoint(data, state)
    with pytest.raises(checkpoint.CheckpointError, match=r"notes.txt is a file but not a checkpoint"):
        autopar.save_checkpoint(tmp_path / "notes.txt", state)
    with pytest.raises(
        checkpoint.CheckpointError, match=r"notes.txt is a file: a checkpoint at .* needs a folder"
    ):
        autopar.save_checkpoint(tmp_path / "notes.txt" / "ckpt", state)
    assert (data / "train.csv").read_text() == "1,2\n"
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["data", "notes.txt"]  # nothing staged beside them
    autopar.save_checkpoint(tmp_path / "ckpt", state)
    autopar.save_checkpoint(tmp_path / "ckpt", {"w": state["w"] + 1})  # an earlier checkpoint is replaced
    np.testing.assert_array_equal(
        autopar.restore_checkpoint(tmp_path / "ckpt", like=state)["w"], state["w"] + 1
    )
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "data", "notes.txt"]


def test_leaves_that_are_not_arrays_are_refused_by_path_before_anything_is_written(tmp_path: Path):
    with pytest.raises(checkpoint.CheckpointError, match=r"state\['name'\] is a str .*not a numeric array"):
        autopar.save_checkpoint(tmp_path / "a", {"name": "run-1", "w": np.ones(2, np.float32)})
    assert os.listdir(tmp_path) == []
    # Scalars, booleans and bfloat16 are arrays: they come back as numpy arrays of their dtype.
    state = {"step": 3, "done": np.bool_(True), "w": jnp.ones((2,), jnp.bfloat16)}
    autopar.save_checkpoint(tmp_path / "c", state)
    restored = autopar.restore_checkpoint(tmp_path / "c", like=state)
    assert int(restored["step"]) == 3 and bool(restored["done"])
    assert restored["w"].dtype == jnp.bfloat16


def test_typed_prng_keys_come_back_as_keys_of_their_implementation(tmp_path: Path):
    # A dropout key carried in the training state (it was refused: "save jax.random.key_data(key)").
    state = {"rng": (jax.random.key(7), jax.random.split(jax.random.key(1, impl="rbg"), 3)), "w": np.ones(2)}
    autopar.save_checkpoint(tmp_path / "ckpt", state)
    restored = autopar.restore_checkpoint(tmp_path / "ckpt", like=state)
    for got, want in zip(restored["rng"], state["rng"], strict=True):
        assert jax.random.key_impl(got) == jax.random.key_impl(want) and got.shape == want.shape
        np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(want))
    assert (
        jax.random.normal(restored["rng"][0], (3,)).tolist()
        == jax.random.normal(state["rng"][0], (3,)).tolist()
    )
    as_data = {"rng": (jax.random.key_data(state["rng"][0]), state["rng"][1]), "w": state["w"]}
    with pytest.raises(
        checkpoint.CheckpointError,
        match=r"like\[.rng.\]\[0\] is a typed PRNG key \(threefry2x32\) in the checkpoint but an array",
    ):
        autopar.restore_checkpoint(tmp_path / "ckpt", like=as_data)
    autopar.save_checkpoint(tmp_path / "data", as_data)
    with pytest.raises(
        checkpoint.CheckpointError, match=r"is an array in the checkpoint but a typed PRNG key"
    ):
        autopar.restore_checkpoint(tmp_path / "data", like=state)


def test_without_orbax_the_error_names_the_extra_and_nothing_is_written(tmp_path: Path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)  # `import orbax.checkpoint` fails
    with pytest.raises(ImportError, match=r"need orbax-checkpoint: pip install 'autopar\[checkpoint\]'"):
        autopar.save_checkpoint(tmp_path / "ckpt", {"w": np.ones(2, np.float32)})
    assert list(tmp_path.iterdir()) == []
