"""A mesh worker: the process that owns one stage mesh's devices and runs its part of every pipelined step.

Started by runtime/cluster.py as `python -m autopar.runtime.mesh_worker ADDRESS INDEX` (a new interpreter,
not a fork, so the user's script is never re-imported and the worker can confine itself to its cores and
choose its device count before jax starts). It connects to the driver, receives its `WorkerPlan` once,
connects to the other workers, compiles its stage functions for its local devices and then serves steps:

- driver -> worker: ("step", StepOrder) | ("fetch", key) | ("free", keys) | ("hlo",) | ("abort", step) |
  ("save", path, {name: key}) | ("stop",)
- worker -> driver: ("ready", address) | ("done", StepReport) | ("value", key, ndarray) | ("error", text)
- worker -> worker: ((step, *tag), data), tag one of ("mb", value, micro_batch, n) (a forward/backward
  result for the same micro-batch), ("g", value, -1, n) (a value gathered over micro-batches, or an apply
  part's result, for an apply part) or ("arg", index) (a step argument another worker holds); n numbers
  the value's transfers; data is the whole value, or {send index: slice} when its transfer plan
  (autopar-reshard) says which slices go (each once; a gather group then all-gathers them).

The worker walks its instruction list in order and never waits for anything but data: a part runs as
soon as its operands are here (XLA runs it asynchronously), its results for other meshes are handed to a
sender thread that waits for them and sends them, and a receiver thread per peer fills an inbox.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import os
import queue
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

import numpy as np

from autopar.runtime.worker_io import Aborted, Inbox, Planned, Sender

# A send: (worker, transfer number, the value's autopar.transfer plan or None: the whole value).
Route = tuple[int, int, Any]
# An instruction of a worker's program: (callee, micro-batch or -1 for apply parts, operand value ids,
# result value ids, sends: per result id its routes to the other workers that read it, moved: per operand
# position that another worker produces, (transfer number, plan or None)).
Instruction = tuple[
    str, int, tuple[int, ...], tuple[int, ...], tuple[tuple[int, tuple[Route, ...]], ...], dict[int, tuple]
]


@dataclasses.dataclass
class WorkerPlan:
    """Everything a worker needs, computed once by the driver (plain data: it is pickled).

    Attributes:
      index, num_workers: this worker and how many there are.
      platform: "cpu" or "gpu"; num_devices: the devices of this worker's mesh.
      cores: the CPU cores the worker confines itself to (None: all).
      stages: callee -> (stage module bytecode, positions of the stage's devices among the worker's).
      program: the forward/backward instructions for every micro-batch, in the order the schedule runs
        them on this mesh; applies: the apply parts (micro-batch -1), in @main's order (their sends go to
        the other meshes' apply parts, tagged ("g", value)).
      num_arguments, batch_arguments, micro_batches: @main's argument count, those sliced per micro-batch.
      readers: value id -> how many of this worker's forward/backward parts read it in one micro-batch.
      gather: value id -> its combination label, for the values this worker gathers over micro-batches;
      gathered_to: value id -> the routes to the workers whose apply parts read the gathered value.
    """

    index: int
    num_workers: int
    platform: str
    num_devices: int
    cores: tuple[int, ...] | None
    stages: dict[str, tuple[bytes, tuple[int, ...]]]
    program: list[Instruction]
    applies: list[Instruction]
    num_arguments: int
    batch_arguments: tuple[int, ...]
    micro_batches: int
    readers: dict[int, int]
    gather: dict[int, str]
    gathered_to: dict[int, tuple[Route, ...]]


@dataclasses.dataclass
class StepOrder:
    """One step (numbered) for one worker: per argument it reads, ("host", array | per-micro-batch slices),
    ("resident", key) or ("peer",); the resident values to send to other workers as their arguments
    (key, worker, argument index); the returned values it holds, by output index, with the keys to keep
    them under; the resident keys the step donates (deleted after it); whether to time each part."""

    step: int
    arguments: dict[int, tuple]
    forward: list[tuple[str, int, int]]
    outputs: dict[int, tuple[int, str]]
    donated: list[str]
    profile: bool = False


@dataclasses.dataclass
class StepReport:
    """What a worker did in one step: each kept output's (shape, dtype name, bytes per local device id);
    the host seconds spent dispatching parts and how many; with profile, each part's (callee, micro-batch,
    start, end) in seconds from the step's start and the most bytes the worker's devices held; the array
    bytes it sent to each other worker; the wall-clock time (time.time) of the step's start, which puts
    the workers' events on one time axis (runtime/timeline.py)."""

    outputs: dict[int, tuple[tuple[int, ...], str, dict[int, int]]]
    dispatch_seconds: float
    calls: int
    events: list[tuple[str, int, float, float]]
    peak_bytes: int
    bytes_sent: dict[int, int] = dataclasses.field(default_factory=dict)
    started_at: float = 0.0


class Worker:
    """Runs the steps of one mesh (see the module docstring)."""

    def __init__(self, plan: WorkerPlan, driver: Connection, peers: dict[int, Connection]):
        import jax

        from autopar.ir.io import parse_bytes
        from autopar.runtime import executable as rt_exe

        self.plan, self.driver, self.peers = plan, driver, peers
        self.inbox, self.sender = Inbox(), Sender()
        self.resident: dict[str, Any] = {}
        devices = jax.local_devices()
        self.stages = {
            name: rt_exe.compile(parse_bytes(code), [devices[i] for i in positions])
            for name, (code, positions) in plan.stages.items()
        }
        # A worker confined to one CPU core sends a micro-batch's results from the thread that dispatched
        # the part: the core cannot compute and run a sender thread at once, so handing the send to a
        # thread only adds a wake-up to every crossing's latency, the 1F1B critical path.
        inline = plan.platform == "cpu" and plan.cores is not None and len(plan.cores) == 1
        self._send_result = self.sender.send_now if inline else self.sender.send
        # The part (callee, its result ids) that computes each forward/backward value, for gathered sends.
        self._producer = {v: (ins[0], ins[3]) for ins in plan.program for v in ins[3]}
        for peer, conn in peers.items():
            threading.Thread(target=self._receive_peer, args=(conn,), daemon=True, name=f"peer{peer}").start()

    def _receive_peer(self, conn: Connection) -> None:
        while True:
            try:
                tag, value = conn.recv()
            except (EOFError, OSError):
                self.inbox.break_off()  # a peer died: a step waiting for its data would wait forever
                return
            self.inbox.put(tag, value)

    # ---- one step ------------------------------------------------------------------------------------

    def step(self, order: StepOrder) -> StepReport:
        plan, step = self.plan, order.step
        self.inbox.forget_before(step)
        started, started_at = time.perf_counter(), time.time()
        arguments: dict[int, Any] = {}
        for i, spec in order.arguments.items():
            arguments[i] = (
                spec[1] if spec[0] == "host" else self.resident[spec[1]] if spec[0] == "resident" else None
            )
        for key, worker, index in order.forward:
            self.sender.send(self.peers[worker], ((step, "arg", index), self.resident[key]), worker)
        for i, spec in order.arguments.items():
            if spec[0] == "peer":
                arguments[i] = self.inbox.take(step, "arg", i)
        B = plan.micro_batches
        local: list[dict[int, Any]] = [{} for _ in range(B)]
        left = [dict(plan.readers) for _ in range(B)]
        from autopar.runtime.program import Gathered  # imports jax.numpy: not at worker start-up

        gathered = {v: Gathered(label, B) for v, label in plan.gather.items()}
        dispatch, calls, events, peak = 0.0, 0, [], 0
        for callee, m, operands, results, sends, moved in plan.program:
            values = local[m]
            args = []
            for j, v in enumerate(operands):
                if v < plan.num_arguments:
                    x = arguments[v]
                    args.append(x[m] if v in plan.batch_arguments and B > 1 else x)
                elif v in values:
                    args.append(values[v])
                else:  # another mesh's value, received as a whole or as the slices its plan sends
                    n, route = moved[j]
                    if (v, n) not in values:
                        values[(v, n)] = self._arrived(self.inbox.take(step, "mb", v, m, n), route, callee, j)
                    args.append(values[(v, n)])
            began = time.perf_counter()
            out = self.stages[callee](args)
            dispatch += time.perf_counter() - began
            calls += 1
            for v, x in zip(results, out, strict=True):
                values[v] = x
                if v in gathered:
                    gathered[v].add(m, x)
            self._send(step, "mb", m, sends, values, callee, results)
            readers = left[m]
            for v in set(operands):
                if v in readers:
                    readers[v] -= 1
                    if readers[v] == 0:
                        values.pop(v, None)
                        for key in [k for k in values if isinstance(k, tuple) and k[0] == v]:
                            del values[key]
            for v in results:
                if not readers.get(v):
                    values.pop(v, None)
            if order.profile:
                _block(out)
                events.append((callee, m, began - started, time.perf_counter() - started))
                peak = max(
                    peak,
                    _bytes(
                        [*arguments.values(), *(g.total for g in gathered.values() if g.total is not None)]
                        + [*self.resident.values()]
                        + [x for d in local for x in d.values()]
                    ),
                )
        env = {v: g.result() for v, g in gathered.items()}
        for v, routes in plan.gathered_to.items():
            self._send(step, "g", -1, [(v, routes)], env, *self._producer[v])
        if plan.applies:
            self.sender.flush()  # an apply part may reuse a buffer a send still reads
        for callee, _, operands, results, sends, moved in plan.applies:
            args = []
            for j, v in enumerate(operands):
                if v < plan.num_arguments:
                    args.append(arguments[v])
                elif v in env:
                    args.append(env[v])
                else:
                    n, route = moved[j]
                    if (v, n) not in env:
                        env[(v, n)] = self._arrived(self.inbox.take(step, "g", v, -1, n), route, callee, j)
                    args.append(env[(v, n)])
            began = time.perf_counter()
            out = self.stages[callee](args)
            dispatch += time.perf_counter() - began
            calls += 1
            env.update(zip(results, out, strict=True))
            self._send(step, "g", -1, sends, env, callee, results)
            if order.profile:
                _block(out)
                events.append((callee, -1, began - started, time.perf_counter() - started))
        kept = {}
        for index, (v, key) in order.outputs.items():
            x = arguments[v] if v < plan.num_arguments else env[v]
            self.resident[key] = x
            held: dict[int, int] = {}
            for shard in getattr(x, "addressable_shards", ()):
                held[shard.device.id] = held.get(shard.device.id, 0) + shard.data.nbytes
            kept[index] = (tuple(np.shape(x)), str(x.dtype), held)
        for key in order.donated:
            x = self.resident.pop(key, None)
            if x is not None and hasattr(x, "delete") and not any(x is y for y in self.resident.values()):
                x.delete()
        _block(list(env.values()))
        self.sender.flush()
        sent, self.sender.bytes_sent = self.sender.bytes_sent, {}
        return StepReport(kept, dispatch, calls, events, peak, sent, started_at)

    def _send(
        self, step: int, kind: str, m: int, sends: Any, values: dict, callee: str, results: Any
    ) -> None:
        """Hands each result other meshes read to the sender: whole, or as its transfer plan's slices
        (cut from the layout `callee` planned for it)."""
        for v, routes in sends:
            for worker, n, route in routes:
                x = values[v]
                if route is not None:
                    layout = self.stages[callee].out_shardings[list(results).index(v)]
                    x = Planned(x, route, layout)
                self._send_result(self.peers[worker], ((step, kind, v, m, n), x), worker)

    def _arrived(self, data: Any, route: Any, callee: str, j: int) -> Any:
        """A received operand on this mesh: the slices of a plan assembled into the layout operand `j` of
        `callee` takes (each device's tile; a gather group's all-gather), or a whole value as it is."""
        if route is None:
            return data
        from autopar.runtime import transfer

        return transfer.array_from_slices(data, route, self.stages[callee].in_shardings[j])

    # ---- serving -------------------------------------------------------------------------------------

    def serve(self) -> None:
        """Answers the driver until it says stop or goes away. A thread reads the driver's messages, so
        that an abort reaches a step waiting for data."""
        messages: queue.Queue = queue.Queue()

        def receive() -> None:
            while True:
                try:
                    message = self.driver.recv()
                except (EOFError, OSError):
                    message = ("stop",)  # the driver is gone: abandon the step, then stop
                    self.inbox.break_off()
                if message[0] == "abort":
                    self.inbox.abort(message[1])
                    continue
                messages.put(message)
                if message[0] == "stop":
                    return

        threading.Thread(target=receive, daemon=True, name="driver").start()
        while True:
            message = messages.get()
            kind = message[0]
            if kind == "stop":
                return
            if kind == "step":
                try:
                    report = self.step(message[1])
                    self.sender.send(self.driver, ("done", report))
                except Aborted:
                    self.sender.send(self.driver, ("aborted",))
                except Exception as err:  # reported to the driver, which raises it there
                    text = str(err).splitlines()[0] if str(err) else ""
                    traceback.print_exc()  # the whole story on the worker's stderr; one line to the driver
                    self.sender.send(self.driver, ("error", f"{type(err).__name__}: {text}"))
            elif kind == "hlo":
                texts = {name: exe.as_text() for name, exe in self.stages.items()}
                self.sender.send(self.driver, ("value", "hlo", texts))
            elif kind == "save":  # (path, {name: key}): this worker's part of a checkpoint
                try:
                    import orbax.checkpoint as ocp

                    arrays = {name: np.asarray(self.resident[key]) for name, key in message[2].items()}
                    ocp.PyTreeCheckpointer().save(message[1], arrays)
                    self.sender.send(self.driver, ("value", "saved", None))
                except Exception as err:
                    self.sender.send(self.driver, ("error", f"{type(err).__name__}: {err}"))
            elif kind == "fetch":
                self.sender.send(self.driver, ("value", message[1], self.resident[message[1]]))
            elif kind == "free":
                for key in message[1]:
                    self.resident.pop(key, None)


def _block(values: list[Any]) -> None:
    for x in values:
        if hasattr(x, "block_until_ready"):
            x.block_until_ready()


def _bytes(values: list[Any]) -> int:
    return sum(int(getattr(x, "nbytes", 0)) for x in values)


def _confine(plan: WorkerPlan) -> None:
    """Confines the process to its cores before jax starts its backend (the driver set the device count
    and platform in this process's environment: XLA reads them when the backend starts)."""
    if plan.cores is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, plan.cores)


def _connect_peers(
    plan: WorkerPlan, listener: Listener, addresses: list[str], authkey: bytes
) -> dict[int, Connection]:
    """Connects to every other worker: accepts from the lower indices, then connects to the higher ones
    (each connection starts with the connecting worker's index)."""
    peers: dict[int, Connection] = {}
    for _ in range(plan.index):
        conn = listener.accept()
        peers[conn.recv()] = conn
    for j in range(plan.index + 1, plan.num_workers):
        conn = Client(addresses[j], authkey=authkey)
        conn.send(plan.index)
        peers[j] = conn
    return peers


def format_address(address: str | tuple[str, int]) -> str:
    """A listener's address as a command-line argument: a Unix socket path, or tcp:HOST:PORT."""
    return address if isinstance(address, str) else f"tcp:{address[0]}:{address[1]}"


def parse_address(text: str) -> str | tuple[str, int]:
    if text.startswith("tcp:"):
        host, port = text[4:].rsplit(":", 1)
        return host, int(port)
    return text


def main(argv: list[str]) -> int:
    # `kill -USR1 <worker>` prints every thread's stack to the worker's stderr (a hang's diagnosis).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    address, index = parse_address(argv[0]), int(argv[1])
    authkey = bytes.fromhex(os.environ.pop("AUTOPAR_WORKER_KEY"))
    driver = Client(address, authkey=authkey)
    # Between hosts the workers listen on TCP at their host's address; on one machine, on a Unix socket.
    listen = os.environ.get("AUTOPAR_WORKER_LISTEN")
    listener = (
        Listener((listen, 0), authkey=authkey) if listen else Listener(family="AF_UNIX", authkey=authkey)
    )
    driver.send(("ready", index, listener.address))
    plan, addresses = driver.recv()
    _confine(plan)
    try:
        peers = _connect_peers(plan, listener, addresses, authkey)
        worker = Worker(plan, driver, peers)
    except Exception as err:
        driver.send(("error", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"))
        return 1
    driver.send(("compiled",))
    worker.serve()
    worker.sender.flush()
    return 0


if __name__ == "__main__":
    # Run from the module's own name, not __main__: the driver unpickles what it sends by that name.
    from autopar.runtime import mesh_worker

    sys.exit(mesh_worker.main(sys.argv[1:]))
