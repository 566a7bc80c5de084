"""The strategy problem (the IOPDDL contest's shape), held by the C++ core as flat arrays.

Pick one strategy per node so that node costs plus edge (resharding) costs are minimal while the summed
usage of the nodes live at every moment stays under a limit. Shapes for `StrategyProblem.from_arrays`:
intervals [N, 2] (a node is live on [start, end)), node_costs and node_usages one row per node (one entry
per strategy), edges [E, 2], edge_costs one row per edge (row-major over the two nodes' strategies); a cost
of INFINITE_COST (1e18) or more forbids that strategy or pair.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autopar import _core

__all__ = ["INFINITE_COST", "StrategyProblem"]

INFINITE_COST = 1e18


class StrategyProblem:
    """A validated strategy problem held by the C++ core (flat arrays).

    Attributes:
      num_nodes: number of nodes.
      num_edges: number of edges.
      usage_limit: the per-moment usage limit, or None when unlimited.
      name: the problem's name ("" if none).
    """

    def __init__(self, core: _core.StrategyProblem):
        self._core = core

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> StrategyProblem:
        """Reads the contest format from .json or .json.gz (gzip detected by its magic bytes)."""
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as e:
                raise ValueError(f"{path}: not a readable gzip file ({e})") from None
        try:
            return cls(_core.StrategyProblem.from_json_text(raw))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    @classmethod
    def from_arrays(
        cls,
        intervals: np.ndarray | Sequence[Sequence[int]],
        node_costs: Sequence[Sequence[float]],
        node_usages: Sequence[Sequence[int]],
        edges: np.ndarray | Sequence[Sequence[int]],
        edge_costs: Sequence[Sequence[float]],
        usage_limit: int | None = None,
        name: str = "",
    ) -> StrategyProblem:
        """Builds a problem from per-node / per-edge arrays (see the module docstring for shapes)."""
        iv = _as_pairs(intervals, "intervals")
        ed = _as_pairs(edges, "edges")
        costs, cost_off = _flatten(node_costs, np.float64, "node_costs")
        usages, usage_off = _flatten(node_usages, np.int64, "node_usages")
        ecosts, ecost_off = _flatten(edge_costs, np.float64, "edge_costs")
        if usage_limit is not None:
            usage_limit = int(usage_limit)
        core = _core.StrategyProblem.from_flat(
            name,
            iv[:, 0].copy(),
            iv[:, 1].copy(),
            cost_off,
            costs,
            usage_off,
            usages,
            ed[:, 0].copy(),
            ed[:, 1].copy(),
            ecost_off,
            ecosts,
            usage_limit,
        )
        return cls(core)

    @property
    def num_nodes(self) -> int:
        return self._core.num_nodes

    @property
    def num_edges(self) -> int:
        return self._core.num_edges

    @property
    def usage_limit(self) -> int | None:
        return self._core.usage_limit

    @property
    def name(self) -> str:
        return self._core.name

    def num_strategies(self, node: int) -> int:
        return self._core.num_strategies(int(node))

    def evaluate(self, solution: Sequence[int] | np.ndarray) -> tuple[float, int, bool]:
        """(cost, peak usage, feasible); feasible means no forbidden cost and peak <= usage_limit."""
        return self._core.evaluate(_as_solution(solution))

    def arrays(self) -> _core.ProblemArrays:
        """Copies of the flat arrays, as numpy attributes (interval_start/end, strategy_offset, node_cost,
        node_usage, edge_u/v, edge_offset, edge_cost)."""
        return self._core.arrays()

    def to_json(self, path: str | os.PathLike) -> None:
        """Writes the contest format that `from_json` reads, gzipped when `path` ends with .gz.

        Integer-valued costs are written as integers, other costs in Python's shortest round-trip form (so
        a reread problem has bit-identical costs); forbidden costs (>= INFINITE_COST, inf, nan) as 1e18;
        no "usage_limit" key when there is none. The file appears atomically (a temporary file in the same
        directory, then os.replace), so a reader never sees half a problem.
        """
        import json  # local: only this method writes files
        import tempfile

        a = self.arrays()
        starts, ends = a.interval_start.tolist(), a.interval_end.tolist()
        node_rows = self._json_cost_rows(a.node_cost, a.strategy_offset)
        usages, offsets = a.node_usage.tolist(), a.strategy_offset.tolist()
        edge_rows = self._json_cost_rows(a.edge_cost, a.edge_offset)
        out = [
            '{"problem": {"name": ',
            json.dumps(self.name),
            ',\n"nodes": {"intervals": [',
            ",".join(f"[{s},{e}]" for s, e in zip(starts, ends, strict=True)),
            '],\n"costs": [',
            ",\n".join(node_rows),
            '],\n"usages": [',
            ",\n".join(
                "[" + ",".join(map(str, usages[b:e])) + "]"
                for b, e in zip(offsets[:-1], offsets[1:], strict=True)
            ),
            ']},\n"edges": {"nodes": [',
            ",".join(f"[{u},{v}]" for u, v in zip(a.edge_u.tolist(), a.edge_v.tolist(), strict=True)),
            '],\n"costs": [',
            ",\n".join(edge_rows),
            "]}",
        ]
        if self.usage_limit is not None:
            out.append(f',\n"usage_limit": {int(self.usage_limit)}')
        out.append("}}\n")
        data = "".join(out).encode()
        path = Path(path)
        if path.name.endswith(".gz"):
            data = gzip.compress(data, mtime=0)  # mtime 0: the same problem, the same bytes
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            umask = os.umask(0o22)  # mkstemp makes the file 0600; give it what open() would have
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _json_cost_rows(costs: np.ndarray, offsets: np.ndarray) -> list[str]:
        """One JSON list per row of `costs` (split at `offsets`): integral values as integers, forbidden ones
        as 1e18, the rest by repr (shortest text that reads back as the same double)."""
        # Tokenised once per distinct value: the intra-op pass's reshard tables repeat a few values millions
        # of times on 3-axis meshes.
        values, index = np.unique(costs, return_inverse=True)  # nan sorts last; all nan are forbidden
        forbidden = ~(values < INFINITE_COST)
        integral = ~forbidden & (np.abs(values) < 2.0**53) & (values == np.floor(values))
        unique = np.array(
            [
                "1e18" if f else str(int(c)) if i else repr(c)
                for c, f, i in zip(values.tolist(), forbidden.tolist(), integral.tolist(), strict=True)
            ],
            dtype=object,
        )
        tokens = unique[index.reshape(-1)].tolist()
        bounds = offsets.tolist()
        return ["[" + ",".join(tokens[b:e]) + "]" for b, e in zip(bounds[:-1], bounds[1:], strict=True)]


def _as_solution(solution: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(solution)
    if arr.ndim != 1:
        raise ValueError(f"solution must be a 1-D sequence of strategy indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"solution must hold integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _as_pairs(values: np.ndarray | Sequence[Sequence[int]], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64) if len(values) else np.zeros((0, 2), np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{what} must have shape [n, 2], got {arr.shape}")
    return arr


def _flatten(rows: Sequence[Sequence[float]], dtype: type, what: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for k, row in enumerate(rows):
        a = np.asarray(row, dtype=dtype)
        if a.ndim != 1:
            raise ValueError(f"{what}[{k}] must be 1-D, got shape {a.shape}")
        arrays.append(a)
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    if arrays:
        offsets[1:] = np.cumsum([a.size for a in arrays])
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
    return np.ascontiguousarray(flat, dtype=dtype), offsets
