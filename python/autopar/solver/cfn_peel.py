"""Peeling a cost function network's tree parts before toulbar2 sees it.

A variable with one neighbour (a leaf) can be folded into that neighbour exactly: for each of the
neighbour's values, the leaf's best value costs min over the leaf's values of (its unary + the pair's
cost), which becomes part of the neighbour's unary cost; the leaf's best value is read back once the
neighbour's is known. A variable with no neighbour left contributes its cheapest unary cost as a constant.
Repeating this to a fixpoint solves every tree-shaped part of the network (dynamic programming over it) and
leaves toulbar2 the part with cycles (the 2-core). With `max_degree=2` a variable with two neighbours is
folded too, into a pair function between them (chains; measured, not the default: cfn.PEEL_DEGREE).

Why: toulbar2 does the same elimination (variables of degree <= 3, `elimDegree`) at every node of its
search, and undoes it on every backtrack. On the IOPDDL problems most variables are leaves or isolated
(K: 26,885 leaves of 33,979 free nodes; N: 19,446 isolated ones) and a search node of a restricted network
cost 3.9 ms on N against 0.4-0.7 ms with that elimination off, which found worse priced optima in the same
backtracks. Peeled once, before posting, the network keeps the elimination's strength and loses its
per-node cost (docs/solver.md, "Peeling the tree parts before toulbar2").

    peeled = peel(unary, edge_u, edge_v, tables)
    ... toulbar2 over peeled.unary / peeled.edges_u / edges_v / tables (kept variables, renumbered) ...
    values = peeled.expand(kept_values)   # every variable's value index
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Peeled", "peel"]


@dataclass
class Peeled:
    """The network left after peeling, and how to read the peeled variables' values back.

    Attributes:
      kept: original indices of the variables left, in their new order (toulbar2's variable k is kept[k]).
      unary: per kept variable, its unary costs (the folded leaves' included).
      edges_u, edges_v, tables: the pair functions left, over new indices (table rows: edges_u's values).
      constant: the cost of the isolated trees, added to every solution's value.
      num_vars: variables of the original network.
    """

    kept: np.ndarray
    unary: list[np.ndarray]
    edges_u: np.ndarray
    edges_v: np.ndarray
    tables: list[np.ndarray]
    constant: float
    num_vars: int
    # Peeled variables in elimination order: (variable, what it was folded into, its best value): into a
    # neighbour j, best per value of j; into the pair (j, k), best per pair of values; into the constant
    # (-1), the single best value.
    _order: list[tuple[int, int | tuple[int, int], np.ndarray | int]]

    def expand(self, kept_values: np.ndarray) -> np.ndarray:
        """Every original variable's value index, given those of the kept variables."""
        values = np.full(self.num_vars, -1, dtype=np.int64)
        values[self.kept] = np.asarray(kept_values, dtype=np.int64)
        for var, parent, best in reversed(self._order):
            if isinstance(parent, tuple):
                values[var] = best[values[parent[0]], values[parent[1]]]
            else:
                values[var] = best if parent < 0 else best[values[parent]]
        return values


def peel(
    unary: list[np.ndarray],
    edge_u: np.ndarray,
    edge_v: np.ndarray,
    tables: list[np.ndarray],
    max_degree: int = 1,
) -> Peeled:
    """Folds leaves into their neighbours and isolated variables into a constant, to a fixpoint.

    `unary[i]` holds variable i's costs per value, `tables[e]` edge e's costs (|D(edge_u[e])| x
    |D(edge_v[e])|); forbidden entries are inf. Edges between the same two variables are summed first."""
    n = len(unary)
    unary = [np.asarray(c, dtype=np.float64).copy() for c in unary]
    pair: dict[tuple[int, int], np.ndarray] = {}
    for u, v, table in zip(edge_u.tolist(), edge_v.tolist(), tables, strict=True):
        t = np.asarray(table, dtype=np.float64)
        if u > v:
            u, v, t = v, u, t.T
        key = (u, v)
        pair[key] = pair[key] + t if key in pair else t.copy()
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for u, v in pair:
        neighbours[u].add(v)
        neighbours[v].add(u)
    removed = np.zeros(n, dtype=bool)
    order: list[tuple[int, int | tuple[int, int], np.ndarray | int]] = []
    constant = 0.0
    stack = [i for i in range(n) if len(neighbours[i]) <= max_degree]
    while stack:
        i = stack.pop()
        if removed[i] or len(neighbours[i]) > max_degree:
            continue
        removed[i] = True
        if len(neighbours[i]) == 2:
            j, k = sorted(neighbours[i])
            tj, tk = _pop_pair(pair, i, j), _pop_pair(pair, i, k)
            total = unary[i][:, None, None] + tj[:, :, None] + tk[:, None, :]
            choice = np.argmin(total, axis=0)
            folded = np.take_along_axis(total, choice[None], axis=0)[0]
            neighbours[j].discard(i)
            neighbours[k].discard(i)
            if (j, k) in pair:
                pair[(j, k)] += folded
            else:
                pair[(j, k)] = folded
                neighbours[j].add(k)
                neighbours[k].add(j)
            order.append((i, (j, k), choice))
            for m in (j, k):
                if len(neighbours[m]) <= max_degree:
                    stack.append(m)
            continue
        if not neighbours[i]:
            best = int(np.argmin(unary[i]))
            constant += float(unary[i][best])
            order.append((i, -1, best))
            continue
        j = neighbours[i].pop()
        neighbours[j].discard(i)
        t = _pop_pair(pair, i, j)
        total = unary[i][:, None] + t
        choice = np.argmin(total, axis=0)
        unary[j] += total[choice, np.arange(total.shape[1])]
        order.append((i, j, choice))
        if len(neighbours[j]) <= max_degree:
            stack.append(j)
    kept = np.flatnonzero(~removed)
    index = np.full(n, -1, dtype=np.int64)
    index[kept] = np.arange(len(kept))
    keys = sorted(pair)
    return Peeled(
        kept=kept,
        unary=[unary[i] for i in kept.tolist()],
        edges_u=np.array([index[u] for u, _ in keys], dtype=np.int64),
        edges_v=np.array([index[v] for _, v in keys], dtype=np.int64),
        tables=[pair[k] for k in keys],
        constant=constant,
        num_vars=n,
        _order=order,
    )


def _pop_pair(pair: dict[tuple[int, int], np.ndarray], i: int, j: int) -> np.ndarray:
    """Removes the pair function of i and j (stored under (min, max)) and returns it with rows i's values."""
    return pair.pop((i, j)) if i < j else pair.pop((j, i)).T
