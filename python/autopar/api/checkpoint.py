"""`autopar.save_checkpoint(path, state)` / `autopar.restore_checkpoint(path, like=...)` (Alpa's names),
through orbax-checkpoint.

Each mesh worker writes the arrays it holds (a pipelined step's parameters and optimizer state stay on the
worker that updates them: runtime/remote_array.py) into its own part, `worker_<k>/`; this process
writes the rest into `driver/`. Everything goes into a temporary folder beside `path`; `manifest.json`
(where each leaf is) is written last, and the folder is renamed to `path` only then, so a checkpoint cut
short by a fault is never taken for a whole one: `restore_checkpoint` refuses a folder without a manifest.
A typed PRNG key (a dropout key in the training state) is saved as its key data with its implementation's
name in the manifest, and restored as a key again where `like` holds a key of that implementation.
The parts are read back here, so a checkpoint restores on any cluster shape, or without one. The hosts must
share the file system `path` is on. A save replaces only a checkpoint: any other file or folder at `path` (a
typo'd `"."`, a data folder) is refused, since replacing it would delete what it holds.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import jax
import numpy as np

from autopar.api.arguments import is_key_leaf, key_data
from autopar.errors import AutoparError
from autopar.runtime.remote_array import RemoteArray

MANIFEST = "manifest.json"


class CheckpointError(AutoparError):
    """A checkpoint cannot be written or read (names the path and what is wrong)."""


def save_checkpoint(path: str | os.PathLike, state: Any) -> None:
    """Writes every leaf of the pytree `state` under `path` (replacing a checkpoint already there)."""
    target = Path(path).resolve()
    staging = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    if target.exists() and not (target / MANIFEST).is_file():
        what = "a folder" if target.is_dir() else "a file"
        raise CheckpointError(
            f"{target} is {what} but not a checkpoint (no {MANIFEST}): a save replaces only an earlier "
            "checkpoint; choose another path, or remove it yourself"
        )
    _checkpointer()  # orbax is there, before anything is staged
    paths, leaves = _leaf_paths(state, "state")
    where: list[str] = []
    on_driver: dict[str, np.ndarray] = {}
    key_impls: dict[str, str] = {}  # leaf -> PRNG implementation, for typed keys saved as their data
    by_worker: dict[tuple[Any, int], dict[str, str]] = {}  # (executor, worker) -> {leaf: key}, in order
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, RemoteArray) and not leaf.is_deleted():
            holder = (leaf.executor, leaf.worker)
            by_worker.setdefault(holder, {})[str(i)] = leaf.key
            where.append(f"worker_{list(by_worker).index(holder)}")
        else:
            if is_key_leaf(leaf):
                key_impls[str(i)] = str(jax.random.key_impl(leaf))
            leaf = key_data(leaf)
            on_driver[str(i)] = _host_array(leaf, paths[i])
            where.append("driver")
    nearest = next(a for a in target.parents if a.exists())
    if not nearest.is_dir():
        raise CheckpointError(f"{nearest} is a file: a checkpoint at {target} needs a folder there")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot make the folder {target.parent}: {e.strerror}") from None
    try:
        staging.mkdir()
        for n, ((executor, worker), keys) in enumerate(by_worker.items()):
            executor.save_arrays(worker, str(staging / f"worker_{n}"), keys)
        if on_driver:
            _checkpointer().save(str(staging / "driver"), on_driver)
        manifest = {"leaves": len(leaves), "where": where, "paths": paths, "key_impls": key_impls}
        (staging / MANIFEST).write_text(json.dumps(manifest))
        if target.exists():
            retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def restore_checkpoint(path: str | os.PathLike, like: Any) -> Any:
    """The checkpoint at `path` as a pytree shaped like `like` (numpy arrays; a step takes them anywhere)."""
    root = Path(path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(
            f"{root} is not a complete checkpoint (no {MANIFEST}: it was never written, or its save was cut "
            "short); restore an earlier one"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        counted, where = int(manifest["leaves"]), list(manifest["where"])
        key_impls = dict(manifest.get("key_impls", {}))
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{manifest_path} is damaged ({e}); restore an earlier checkpoint") from None
    paths, leaves = _leaf_paths(like, "like")
    treedef = jax.tree.structure(like)
    if counted != len(leaves):
        raise CheckpointError(
            f"{root} holds {counted} arrays but `like` has {len(leaves)} leaves: pass the pytree "
            "the checkpoint was saved from"
        )
    parts: dict[str, dict[str, np.ndarray]] = {}
    for part in sorted(set(where)):
        parts[part] = _checkpointer().restore(str((root / part).resolve()))
    out = []
    for i, (part, leaf) in enumerate(zip(where, leaves, strict=True)):
        value = np.asarray(parts[part][str(i)])
        saved_impl, wanted_impl = (
            key_impls.get(str(i)),
            str(jax.random.key_impl(leaf)) if is_key_leaf(leaf) else None,
        )
        if saved_impl != wanted_impl:
            raise CheckpointError(
                f"{root}: {paths[i]} is {_describe_key(saved_impl)} in the checkpoint but "
                f"{_describe_key(wanted_impl)} in `like`: pass the pytree the checkpoint was saved from"
            )
        leaf = key_data(leaf)
        shape, dtype = tuple(np.shape(leaf)), np.dtype(getattr(leaf, "dtype", value.dtype))
        if value.shape != shape or value.dtype != dtype:
            raise CheckpointError(
                f"{root}: {paths[i]} is {value.dtype}{list(value.shape)} in the checkpoint but "
                f"{dtype}{list(shape)} in `like`: pass the pytree the checkpoint was saved from"
            )
        out.append(value if wanted_impl is None else jax.random.wrap_key_data(value, impl=wanted_impl))
    return jax.tree.unflatten(treedef, out)


def _leaf_paths(tree: Any, name: str) -> tuple[list[str], list[Any]]:
    """Each leaf's pytree path as errors name it (`state['opt'][0]`) and the leaves, in flattening order."""
    with_paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [f"{name}{jax.tree_util.keystr(k)}" for k, _ in with_paths], [leaf for _, leaf in with_paths]


def _describe_key(impl: str | None) -> str:
    return "an array" if impl is None else f"a typed PRNG key ({impl})"


def _host_array(leaf: Any, path: str) -> np.ndarray:
    """The leaf as a numpy array of a numeric or boolean dtype, or a CheckpointError naming it."""
    value = np.asarray(leaf)
    if not (jax.dtypes.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
        raise CheckpointError(
            f"{path} is a {type(leaf).__name__} ({value.dtype}), not a numeric array: a checkpoint holds "
            "arrays; keep other values out of the saved pytree"
        )
    return value


def _checkpointer() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError:
        # An optional dependency (the `checkpoint` extra): training without checkpoints does not need it.
        raise ImportError(
            "autopar.save_checkpoint and restore_checkpoint need orbax-checkpoint: "
            "pip install 'autopar[checkpoint]'"
        ) from None
    return ocp.PyTreeCheckpointer()
