"""How a mesh worker (runtime/mesh_worker.py) receives and sends: an inbox the peers' receiver threads fill,
one sender thread, and values sent as their transfer plans say."""

from __future__ import annotations

import dataclasses
import queue
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np


class Aborted(Exception):
    pass


class Inbox:
    """Values received from peers, keyed (step, *tag). `take` blocks until the value arrives, its step is
    aborted, or a peer or the driver died. Keys carry the step so that a value sent for an abandoned step
    is never taken for the next one."""

    def __init__(self) -> None:
        self._values: dict[tuple, Any] = {}
        self._ready = threading.Condition()
        self._aborted: set[int] = set()
        self._broken = False

    def put(self, key: tuple, value: Any) -> None:
        with self._ready:
            self._values[key] = value
            self._ready.notify_all()

    def take(self, step: int, *tag: Any) -> Any:
        key = (step, *tag)
        with self._ready:
            while key not in self._values:
                if step in self._aborted or self._broken:
                    raise Aborted
                self._ready.wait()
            return self._values.pop(key)

    def abort(self, step: int) -> None:
        with self._ready:
            self._aborted.add(step)
            self._ready.notify_all()

    def break_off(self) -> None:
        """A peer or the driver is gone: nothing will arrive any more."""
        with self._ready:
            self._broken = True
            self._ready.notify_all()

    def forget_before(self, step: int) -> None:
        """Drops what earlier (abandoned) steps left."""
        with self._ready:
            for key in [k for k in self._values if k[0] < step]:
                del self._values[key]
            self._aborted = {s for s in self._aborted if s >= step}


class Sender:
    """Sends what this worker sends: queued, by one thread that waits for each jax array there and not in
    the thread that dispatches the parts, or at once (`send_now`) from the caller's thread. A Connection
    is not thread-safe, so each is written under its own lock."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self.bytes_sent: dict[int, int] = {}  # array bytes sent to each peer (by worker index), this step
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def send(self, conn: Connection, message: tuple, peer: int | None = None) -> None:
        self._queue.put((conn, message, peer))

    def send_now(self, conn: Connection, message: tuple, peer: int | None = None) -> None:
        """Waits for the message's arrays and sends it from this thread."""
        self._deliver(conn, message, peer)

    def flush(self) -> None:
        self._queue.join()

    def _run(self) -> None:
        while True:
            conn, message, peer = self._queue.get()
            try:
                self._deliver(conn, message, peer)
            finally:
                self._queue.task_done()

    def _deliver(self, conn: Connection, message: tuple, peer: int | None) -> None:
        try:
            message = tuple(_host(x) for x in message)
            with self._lock(conn):
                if peer is not None:
                    sent = sum(_nbytes(x) for x in message)
                    self.bytes_sent[peer] = self.bytes_sent.get(peer, 0) + sent
                conn.send(message)
        except (OSError, ValueError):
            pass  # the peer or the driver is gone: the driver notices and reports it

    def _lock(self, conn: Connection) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(id(conn), threading.Lock())


@dataclasses.dataclass(frozen=True)
class Planned:
    """A value to send as its transfer plan says: only the slices the plan sends (runtime/transfer.py),
    cut in the sender thread. `layout` is the sharding the plan was made for (a value combined over
    micro-batches may have another)."""

    value: Any
    plan: Any
    layout: Any


def _host(x: Any) -> Any:
    """A jax.Array as a numpy array (waits for it), a Planned value as {send index: slice}; anything else
    as it is."""
    if isinstance(x, Planned):
        from autopar.runtime import transfer

        value = x.value
        if not value.sharding.is_equivalent_to(x.layout, value.ndim):
            import jax

            value = jax.device_put(value, x.layout)
        return transfer.slices_to_send(value, x.plan)
    if hasattr(x, "addressable_shards") and hasattr(x, "block_until_ready"):
        return np.asarray(x)
    return x


def _nbytes(x: Any) -> int:
    if isinstance(x, dict):
        return sum(int(v.nbytes) for v in x.values())
    return int(x.nbytes) if isinstance(x, np.ndarray) else 0
