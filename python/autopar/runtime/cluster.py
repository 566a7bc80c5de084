"""Where the mesh workers run: this machine (`autopar.init(cluster="local")`, the default) or the hosts of a
Ray cluster (`autopar.init(cluster="ray")`).

A cluster starts the worker processes of runtime/processes.py and reports on them; the driver and the workers
then talk over their own connections (Unix sockets on one machine, TCP between hosts), so a step costs the
cluster nothing. With Ray, one actor per host (`HostAgent`, on that node) starts the host's workers with
its own Python and environment, watches them and kills them; the workers read their plan and their data
from the driver and from each other directly, not through Ray's object store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autopar.errors import AutoparError


class ClusterError(AutoparError):
    """The cluster cannot be reached, or cannot run what was asked of it."""


def worker_command() -> list[str]:
    return [sys.executable, "-m", "autopar.runtime.mesh_worker"]


def worker_environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment for a worker: autopar importable from where it is here, plus `extra`."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def spawn(argv: list[str], env: dict[str, str], stderr: Any) -> subprocess.Popen:
    """Starts a worker process. Popen forks and at once execs a new interpreter; JAX's warning that a fork
    of a multithreaded process may deadlock is about a fork that goes on running Python, so it is muted."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        return subprocess.Popen(
            worker_command() + argv,
            env=worker_environment(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def _log_tail(log: Any) -> str:
    log.seek(0)
    lines = [line for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


class LocalWorker:
    """A worker process on this machine."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.host = "localhost"
        self._log = tempfile.TemporaryFile()
        stderr = None if os.environ.get("AUTOPAR_WORKER_STDERR") else self._log
        self._process = spawn(argv, env, stderr)
        self.pid = self._process.pid

    def poll(self) -> int | None:
        return self._process.poll()

    def wait(self, timeout: float) -> int | None:
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()

    def log_tail(self) -> str:
        return _log_tail(self._log)


class LocalCluster:
    """This machine: one host, its workers sharing this process's cores."""

    kind = "local"
    family = "AF_UNIX"

    @property
    def hosts(self) -> list[str]:
        return ["localhost"]

    def host_cores(self, host: int) -> list[int] | None:
        return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

    def host_address(self, host: int) -> str | None:
        return None  # Unix sockets

    def driver_address(self) -> str | None:
        return None

    def start_worker(self, host: int, argv: list[str], env: dict[str, str]) -> LocalWorker:
        return LocalWorker(argv, env)

    def shutdown(self) -> None:
        pass


class RayWorker:
    """A worker process started by the host agent of a Ray node."""

    def __init__(self, agent: Any, host: str, argv: list[str], env: dict[str, str]):
        import ray

        self._agent, self.host = agent, host
        self.pid = ray.get(agent.start.remote(argv, env))

    def _ask(self, method: str, *args: Any, default: Any = None) -> Any:
        import ray

        if not ray.is_initialized():  # Ray was shut down, and its agents with it: ray.get would start a new
            return default  # local Ray instance (an executor closed at exit did, after ray.shutdown())
        try:
            return ray.get(getattr(self._agent, method).remote(self.pid, *args), timeout=10)
        except Exception:  # the agent (its node) is gone
            return default

    def poll(self) -> int | None:
        return self._ask("poll", default=-1)

    def wait(self, timeout: float) -> int | None:
        return self._ask("wait", timeout, default=-1)

    def kill(self) -> None:
        self._ask("kill")

    def log_tail(self) -> str:
        return self._ask("log_tail", default="") or ""


class HostAgent:
    """The Ray actor on one node: starts, watches and kills that node's mesh workers."""

    def __init__(self) -> None:
        self._workers: dict[int, tuple[subprocess.Popen, Any]] = {}

    def describe(self) -> tuple[str, list[int]]:
        import ray

        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        return ray.util.get_node_ip_address(), cores

    def start(self, argv: list[str], env: dict[str, str]) -> int:
        log = tempfile.TemporaryFile()
        process = spawn(argv, env, log)
        self._workers[process.pid] = (process, log)
        return process.pid

    def poll(self, pid: int) -> int | None:
        return self._workers[pid][0].poll()

    def wait(self, pid: int, timeout: float) -> int | None:
        try:
            return self._workers[pid][0].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, pid: int) -> None:
        process = self._workers[pid][0]
        if process.poll() is None:
            process.kill()
            process.wait()

    def log_tail(self, pid: int) -> str:
        return _log_tail(self._workers[pid][1])

    def stop_all(self) -> None:
        for process, _ in self._workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()


class RayCluster:
    """The nodes of a Ray cluster, as hosts in a fixed order (`node_ids`, default: by IP, then node id).

    Args:
      address: a running cluster's address ("auto", "ray://...", "host:port"); None starts or joins a local
        one as `ray.init` does.
      node_ids: the Ray node ids to use as hosts 0, 1, ... (default: every alive node).
    """

    kind = "ray"
    family = "AF_INET"

    def __init__(self, address: str | None = None, node_ids: Sequence[str] | None = None):
        try:
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        except ImportError:
            raise ClusterError("cluster='ray' needs Ray: pip install 'autopar[ray]'") from None
        # Our agents ask for no GPU; they must still see the node's GPUs to give each worker its own.
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        if not ray.is_initialized():
            try:
                ray.init(address=address, log_to_driver=False, include_dashboard=False)
            except Exception as err:
                raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {err}") from None
        alive = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
        if node_ids is None:
            node_ids = sorted(alive, key=lambda n: (alive[n], n))
        for node in node_ids:
            if node not in alive:
                raise ClusterError(f"Ray node {node} is not alive in the cluster (alive: {sorted(alive)})")
        agent = ray.remote(num_cpus=0)(HostAgent)
        self.node_ids = list(node_ids)
        self._agents = [
            agent.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False)
            ).remote()
            for node in self.node_ids
        ]
        described = ray.get([a.describe.remote() for a in self._agents])
        self._addresses = [ip for ip, _ in described]
        self._cores = [cores or None for _, cores in described]

    @property
    def hosts(self) -> list[str]:
        return [f"{ip} (node {node[:8]})" for ip, node in zip(self._addresses, self.node_ids, strict=True)]

    def host_cores(self, host: int) -> list[int] | None:
        return self._cores[host]

    def host_address(self, host: int) -> str | None:
        return self._addresses[host]

    def driver_address(self) -> str | None:
        import ray

        return ray.util.get_node_ip_address()

    def start_worker(self, host: int, argv: list[str], env: dict[str, str]) -> RayWorker:
        return RayWorker(self._agents[host], self.hosts[host], argv, env)

    def shutdown(self) -> None:
        import ray

        for agent in self._agents:
            try:
                ray.get(agent.stop_all.remote(), timeout=30)
                ray.kill(agent)
            except Exception:
                pass
        self._agents = []


def place_on_hosts(
    meshes: Sequence[Sequence[int]], devices_per_host: int, cluster: LocalCluster | RayCluster
) -> list[int]:
    """Each mesh's host: the one its devices belong to (device d is on host d // devices_per_host); on
    the local cluster, this machine."""
    hosts = []
    for ids in meshes:
        on = {i // devices_per_host for i in ids}
        if len(on) > 1:
            raise ClusterError(
                f"the stage mesh on devices {list(ids)} spans hosts {sorted(on)}: a mesh worker runs on "
                "one host (give submesh shapes within a host)"
            )
        host = on.pop() if cluster.kind != "local" else 0  # this machine plays every host
        if host >= len(cluster.hosts):
            raise ClusterError(
                f"the stage mesh on devices {list(ids)} is on host {host} but the {cluster.kind} cluster "
                f"has {len(cluster.hosts)} host(s): autopar.init a cluster with more"
            )
        hosts.append(host)
    return hosts


def share_host_cores(
    hosts: Sequence[int], cluster: LocalCluster | RayCluster, cores: Sequence[int] | None = None
) -> list[tuple[int, ...] | None]:
    """Each worker's cores (workers listed by their host): its host's cores shared among the host's
    workers, an equal share each when there are enough, else one core each, round robin."""
    out: list[tuple[int, ...] | None] = [None] * len(hosts)
    for host in sorted(set(hosts)):
        workers = [w for w, h in enumerate(hosts) if h == host]
        available = list(cores) if cores is not None else cluster.host_cores(host)
        if not available:
            continue
        n = len(available)
        for k, w in enumerate(workers):
            if n >= len(workers):
                out[w] = tuple(available[k * n // len(workers) : (k + 1) * n // len(workers)])
            else:
                out[w] = (available[k % n],)
    return out


_current: LocalCluster | RayCluster = LocalCluster()


def init(
    cluster: str = "local", *, address: str | None = None, node_ids: Sequence[str] | None = None
) -> None:
    """Chooses where the mesh workers of the next compiled pipeshard steps run (Alpa's `alpa.init`).

    cluster="local" (the default): processes on this machine. cluster="ray": one host per Ray node
    (`address` and `node_ids` as RayCluster takes them); the plan's cluster_shape (hosts, devices per host)
    puts device d on host d // devices_per_host. Steps compiled before keep their workers.
    """
    global _current
    if cluster not in ("local", "ray"):
        raise ClusterError(f"cluster must be 'local' or 'ray', got {cluster!r}")
    shutdown()
    _current = RayCluster(address, node_ids) if cluster == "ray" else LocalCluster()


def shutdown() -> None:
    """Stops the cluster's workers and agents (Alpa's `alpa.shutdown`); the local cluster stays usable."""
    global _current
    _current.shutdown()
    _current = LocalCluster()


def current() -> LocalCluster | RayCluster:
    return _current
