"""`autopar.save_checkpoint(path, state)` / `autopar.restore_checkpoint(path, like=...)` (Alpa's names),
through orbax-checkpoint.

Each mesh worker writes the arrays it holds (a pipelined step's parameters and optimizer state stay on the
worker that updates them: runtime/remote_array.py) into its own part, `worker_<k>/`; this process
writes the rest into `driver/`. Everything goes into a temporary folder beside `path`; `manifest.json`
(where each leaf is) is written last, and the folder is renamed to `path` only then, so a checkpoint cut
short by a fault is never taken for a whole one: `restore_checkpoint` refuses a folder without a manifest.
The parts are read back here, so a checkpoint restores on any cluster shape, or without one. The hosts must
share the file system `path` is on.
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

from autopar.errors import AutoparError
from autopar.runtime.remote_array import RemoteArray

MANIFEST = "manifest.json"


class CheckpointError(AutoparError):
    """A checkpoint cannot be written or read (names the path and what is wrong)."""


def save_checkpoint(path: str | os.PathLike, state: Any) -> None:
    """Writes every leaf of the pytree `state` under `path` (replacing a checkpoint already there)."""
    target = Path(path).resolve()
    staging = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree.leaves(state)
    where: list[str] = []
    on_driver: dict[str, np.ndarray] = {}
    by_worker: dict[tuple[Any, int], dict[str, str]] = {}  # (executor, worker) -> {leaf: key}, in order
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, RemoteArray) and not leaf.is_deleted():
            holder = (leaf.executor, leaf.worker)
            by_worker.setdefault(holder, {})[str(i)] = leaf.key
            where.append(f"worker_{list(by_worker).index(holder)}")
        else:
            on_driver[str(i)] = _host_array(leaf)
            where.append("driver")
    try:
        staging.mkdir()
        for n, ((executor, worker), keys) in enumerate(by_worker.items()):
            executor.save_arrays(worker, str(staging / f"worker_{n}"), keys)
        if on_driver:
            _checkpointer().save(str(staging / "driver"), on_driver)
        manifest = {"leaves": len(leaves), "where": where}
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
    manifest = json.loads(manifest_path.read_text())
    leaves, treedef = jax.tree.flatten(like)
    if manifest["leaves"] != len(leaves):
        raise CheckpointError(
            f"{root} holds {manifest['leaves']} arrays but `like` has {len(leaves)} leaves: pass the pytree "
            "the checkpoint was saved from"
        )
    parts: dict[str, dict[str, np.ndarray]] = {}
    for part in sorted(set(manifest["where"])):
        parts[part] = _checkpointer().restore(str((root / part).resolve()))
    out = []
    for i, (part, leaf) in enumerate(zip(manifest["where"], leaves, strict=True)):
        value = np.asarray(parts[part][str(i)])
        shape, dtype = tuple(np.shape(leaf)), np.dtype(getattr(leaf, "dtype", value.dtype))
        if value.shape != shape or value.dtype != dtype:
            raise CheckpointError(
                f"{root}: leaf {i} is {value.dtype}{list(value.shape)} but `like` has {dtype}{list(shape)}"
            )
        out.append(value)
    return jax.tree.unflatten(treedef, out)


def _host_array(leaf: Any) -> np.ndarray:
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
        raise CheckpointError("a typed PRNG key cannot be saved as it is: save jax.random.key_data(key)")
    return np.asarray(leaf)


def _checkpointer() -> Any:
    import orbax.checkpoint as ocp

    return ocp.PyTreeCheckpointer()
