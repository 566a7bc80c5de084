"""`RemoteArray`: a step result that stays on the mesh worker process that computed it (runtime/processes.py).

A next step takes it back without moving it (unless another mesh reads it); numpy and jax take it as they take
a numpy array (its shape and dtype are known here, its data is fetched when a computation needs it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from autopar.runtime.step import ExecutionError

if TYPE_CHECKING:
    from autopar.runtime.processes import ProcessExecutor


# jax.Array attributes about where an array lives: the fetched copy's would describe another placement.
_PLACEMENT = frozenset(
    {"sharding", "addressable_shards", "global_shards", "addressable_data", "committed", "device"}
)


class RemoteArray:
    """A step result held by the mesh worker that computed it. Pass it to the next step as it is (it does
    not move unless another mesh reads it); `np.asarray(x)` (or `jnp.asarray`, `float`) fetches it."""

    def __init__(
        self,
        executor: ProcessExecutor,
        worker: int,
        key: str,
        shape: tuple[int, ...],
        dtype: str,
        held: Mapping[int, int],
    ):
        # A strong reference: the executor (and its workers) lives as long as an array it holds.
        self._executor, self.worker, self.key = executor, worker, key
        self.shape, self.dtype = tuple(shape), np.dtype(jax.numpy.dtype(dtype))
        self._held = dict(held)
        self._deleted = False

    @property
    def executor(self) -> ProcessExecutor:
        return self._executor

    def bytes_by_device(self) -> dict[int, int]:
        """Bytes of this array on each cluster device (by id) of the worker's mesh."""
        return dict(self._held)

    def devices(self) -> set[Any]:
        """The cluster devices holding a part of this array."""
        return {self._executor.cluster_devices[i] for i in self._held}

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape)))
    nbytes = property(lambda self: self.size * self.dtype.itemsize)

    def owned_by(self, executor: ProcessExecutor) -> bool:
        return self._executor is executor and not self._deleted

    def fetch(self) -> np.ndarray:
        executor = self._executor
        if self._deleted:
            raise ExecutionError(f"remote array {self.key} was deleted (donated, or its executor closed)")
        return executor.fetch(self.worker, self.key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        x = self.fetch()
        return x if dtype is None else x.astype(dtype)

    def __jax_array__(self) -> jax.Array:
        return jax.numpy.asarray(self.fetch())

    def __float__(self) -> float:
        return float(self.fetch())

    def __int__(self) -> int:
        return int(self.fetch())

    def __bool__(self) -> bool:
        return bool(self.fetch())

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __getitem__(self, index: Any) -> jax.Array:
        return self.__jax_array__()[index]

    def __iter__(self) -> Iterator[jax.Array]:
        # Without it Python iterates through __getitem__ until an IndexError, which jax's indexing (it
        # clamps) never raises: `list(x)` never returned.
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return iter(self.__jax_array__())

    def __format__(self, spec: str) -> str:  # f"{loss:.4f}" as for a jax.Array
        return format(self.__jax_array__(), spec)

    def __reduce__(self) -> tuple[Any, tuple[np.ndarray]]:  # pickles as its value, as a jax.Array does
        return jax.numpy.asarray, (self.fetch(),)

    def __getattr__(self, name: str) -> Any:
        """Any other jax.Array attribute (`item`, `mean`, `astype`, `tolist`, `T`, ...), of the fetched
        value; the ones about placement are refused: the fetched copy is not where the array lives."""
        if name.startswith("_") or name in _PLACEMENT:
            raise AttributeError(
                f"'RemoteArray' object has no attribute '{name}'"
                + (
                    f": it lives on mesh worker {self.worker} (devices(), bytes_by_device())"
                    if name in _PLACEMENT
                    else ""
                )
            )
        return getattr(self.__jax_array__(), name)

    def __repr__(self) -> str:
        return f"RemoteArray(worker={self.worker}, shape={self.shape}, dtype={self.dtype})"

    def block_until_ready(self) -> RemoteArray:
        return self  # a step returns once every worker finished it

    def is_deleted(self) -> bool:
        return self._deleted

    def delete(self) -> None:
        if not self._deleted:
            self._deleted = True
            self._executor.release(self.worker, self.key)

    def __del__(self) -> None:
        try:
            self.delete()
        except Exception:  # interpreter shutdown
            pass


def _arithmetic(name: str) -> Any:
    def method(self: RemoteArray, *others: Any) -> Any:
        return getattr(self.__jax_array__(), name)(*others)

    method.__name__ = name
    return method


for _name in (
    "add radd sub rsub mul rmul truediv rtruediv floordiv rfloordiv pow rpow matmul rmatmul mod rmod divmod "
    "rdivmod neg pos abs invert and rand or ror xor rxor lshift rlshift rshift rrshift round complex index "
    "eq ne lt le gt ge"
).split():
    setattr(RemoteArray, f"__{_name}__", _arithmetic(f"__{_name}__"))


def _register_with_jax() -> None:
    """Lets jax functions take a RemoteArray as they take a numpy array: its shape and dtype without a
    fetch (abstract evaluation), its data fetched when a computation needs it. jax has no public hook for
    this in 0.10.2 (pinned); `__jax_array__` alone is refused during abstractification."""
    from jax._src import core, dtypes
    from jax._src.interpreters import pxla

    core.pytype_aval_mappings[RemoteArray] = lambda x: core.ShapedArray(x.shape, x.dtype)
    dtypes.register_canonicalize_value_handler(RemoteArray, None)

    def shard(xs: Sequence[RemoteArray], shardings: Any, layouts: Any, copy_semantics: Any) -> Any:
        arrays = [jax.device_put(x.fetch(), s) for x, s in zip(xs, shardings, strict=True)]
        return pxla.shard_args(shardings, layouts, copy_semantics, arrays)

    pxla.shard_arg_handlers[RemoteArray] = shard


_register_with_jax()
