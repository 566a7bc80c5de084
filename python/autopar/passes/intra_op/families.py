"""Hand-written plan families as strategy vectors of the same problem: data parallel, Megatron tensor
parallel, their per-axis combinations, ZeRO-2 and ZeRO-3.

A family gives every active mesh axis a role:

- `data`: every op that carries a batch dim splits it over the axis (batch arguments on dim 0); parameters
  and every op without a batch dim stay replicated along it (classic data parallelism).
- `model`: no batch dim is split over the axis; the axis is free for tensor parallelism (Megatron's
  column/row splits are what the restricted search finds there).
- `zero2` / `zero3`: `data`, but optimizer state (zero2) or every parameter (zero3) is sharded over the
  axis, and elementwise ops without a batch dim (the optimizer's update) may split too.

A family is a mask over each node's strategies. A family whose masks leave one strategy per node is a
fixed plan; otherwise the restricted problem (every free node keeps only its masked strategies) is solved
by the solver's fast path with a work bound, so the family's plan is deterministic. The pass evaluates
every family on the full problem and hands the best one to the solver as its incumbent: the returned
objective is never worse than any family's (see `solve.solve`).
"""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np

from autopar import cost as cost_lib
from autopar import solver as solver_lib
from autopar.cost import tables as cost_tables
from autopar.passes.intra_op import config as config_lib
from autopar.passes.intra_op import problem as problem_lib
from autopar.passes.intra_op.config import PlanConfig
from autopar.passes.intra_op.graph import Graph

ROLES = config_lib.FAMILY_ROLES  # data, model, zero2, zero3


@dataclasses.dataclass(frozen=True)
class FamilyPlan:
    """One family's plan. Attributes: name (roles per axis, e.g. 'data x model'), strategies (one index per
    node of the full problem), cost (objective seconds), peak_memory (bytes per device), feasible."""

    name: str
    strategies: np.ndarray
    cost: float
    peak_memory: int
    feasible: bool
    clock_cut: bool = False


def family_roles(config: PlanConfig) -> list[tuple[str, ...]]:
    """The grid: every data/model combination over the active axes, then ZeRO-2 and ZeRO-3 on all axes."""
    active = config.active_axes
    grid = [tuple(c) for c in itertools.product(("data", "model"), repeat=len(active))]
    grid += [("zero2",) * len(active), ("zero3",) * len(active)]
    return grid if active else []


@dataclasses.dataclass
class _GraphFacts:
    """What the masks read from the graph, computed once for the whole grid."""

    batch: dict[int, frozenset[int]]
    state: set[int]
    cache: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, graph: Graph) -> _GraphFacts:
        state = {v for v in range(graph.num_args) if problem_lib.is_optimizer_state(graph, v)}
        return cls(problem_lib.batch_factors(graph), state)


def masks(
    graph: Graph,
    prob: problem_lib.Problem,
    config: PlanConfig,
    roles: tuple[str, ...],
    facts: _GraphFacts | None = None,
) -> list[np.ndarray]:
    """Per node, the strategies the family allows (a node left with none keeps all of them)."""
    facts = facts or _GraphFacts.of(graph)
    out = []
    for v, node in enumerate(graph.nodes):
        s = prob.strategies[v]
        if s.size == 1:
            out.append(np.ones(1, dtype=bool))
            continue
        # Nodes share their (cached) Strategies objects: so do their masks.
        if node.kind == "arg":
            key = (id(s), node.is_batch, node.is_parameter, v in facts.state, roles)
        else:
            key = (id(s), facts.batch.get(v), _elementwise(node), roles)
        keep = facts.cache.get(key)
        if keep is None:
            keep = _node_mask(s, node.kind == "arg", key[1:-1], config.active_axes, roles)
            facts.cache[key] = keep
        out.append(keep)
    return out


def _node_mask(s, is_arg: bool, flags: tuple, active: tuple[int, ...], roles: tuple[str, ...]) -> np.ndarray:
    keep = np.ones(s.size, dtype=bool)
    for axis, role in zip(active, roles, strict=True):
        choice = s.assignment[:, axis]
        if is_arg:
            keep &= _argument_mask(choice, *flags, role)
        elif flags[0] is not None:
            on_batch = np.isin(choice, sorted(flags[0]))
            keep &= ~on_batch if role == "model" else on_batch
        elif role == "data" or (role in ("zero2", "zero3") and not flags[1]):
            # Without a batch dim an op runs replicated; under ZeRO the elementwise ones (the optimizer's
            # update of split state and parameters) may run split: never a tensor-parallel matmul.
            keep &= choice < 0
    return keep if keep.any() else np.ones(s.size, dtype=bool)


def _elementwise(node) -> bool:
    rule = node.rule
    return (
        rule is not None
        and not rule.reduction
        and len(node.result_shapes) == 1
        and all(s == node.result_shapes[0] for s in node.operand_shapes)
    )


def _argument_mask(
    dims: np.ndarray, is_batch: bool, is_parameter: bool, is_state: bool, role: str
) -> np.ndarray:
    if is_batch:
        return dims == 0 if role != "model" else dims != 0
    sharded = role == "zero3" or (role == "zero2" and is_state)
    if role == "model" or (sharded and not is_parameter):
        return np.ones(dims.shape, dtype=bool)
    if sharded:
        return dims >= 0
    return dims < 0  # data parallel: parameters and other inputs replicated along the axis


def plan(
    graph: Graph,
    prob: problem_lib.Problem,
    config: PlanConfig,
    roles: tuple[str, ...],
    core: solver_lib.StrategyProblem,
    usage_limit: int | None,
    time_limit: float = 10.0,
    facts: _GraphFacts | None = None,
) -> FamilyPlan:
    """The family's plan on the full problem `core` (built from `prob`); `time_limit` is only a safety net
    for the work-bounded restricted search."""
    keep = masks(graph, prob, config, roles, facts)
    index = _gathers_chosen(prob, [np.flatnonzero(k) for k in keep])
    clock_cut = False
    if all(len(i) == 1 for i in index):
        chosen = np.array([int(i[0]) for i in index], dtype=np.int64)
    else:
        chosen, clock_cut = _solve_restricted(prob, index, usage_limit, time_limit)
    cost, peak, ok = core.evaluate(chosen)
    return FamilyPlan(" x ".join(roles), chosen, float(cost), int(peak), bool(ok), clock_cut)


def _gathers_chosen(prob: problem_lib.Problem, index: list[np.ndarray]) -> list[np.ndarray]:
    """A family that fixes every layout leaves the arguments' gathers (gathers.py) open: each is then
    the cheapest given its fixed readers, chosen here, so that a fixed plan needs no search."""
    free = [v for v, i in enumerate(index) if len(i) > 1]
    for v in free:
        s = prob.strategies[v]
        if s.gathered is None or len({s.result_layouts[0][i].tobytes() for i in index[v]}) > 1:
            return index  # a layout is open too: the restricted search decides
    if not free:
        return index
    total = {v: prob.node_costs[v][index[v]].astype(np.float64) for v in free}
    for (u, w), cost in zip(prob.edges.reshape(-1, 2), prob.edge_costs, strict=True):
        u, w = int(u), int(w)
        if (u in total) == (w in total):
            continue  # arguments never read arguments: one end is fixed
        table = cost.reshape(prob.strategies[u].size, prob.strategies[w].size)
        if u in total:
            total[u] += table[index[u], int(index[w][0])]
        else:
            total[w] += table[int(index[u][0]), index[w]]
    out = list(index)
    for v, cost in total.items():
        out[v] = index[v][int(np.argmin(cost)) : int(np.argmin(cost)) + 1]
    return out


# Fast-path perturbation rounds for a restricted problem: a work bound (deterministic). The greedy and its
# iterated conditional modes do nearly all the work (measured on GPT-125M 2x4: 0 rounds 0.19 s per family,
# 500 rounds 0.4-0.8 s for under 1 % better); the warm-started polish of the best family does the rest.
_RESTRICTED_ROUNDS = 50


def _solve_restricted(
    prob: problem_lib.Problem, index: list[np.ndarray], usage_limit: int | None, time_limit: float
) -> tuple[np.ndarray, bool]:
    sizes = [prob.strategies[v].size for v in range(len(index))]
    edge_costs = []
    for (u, v), cost in zip(prob.edges, prob.edge_costs, strict=True):
        matrix = cost.reshape(sizes[u], sizes[v])
        edge_costs.append(matrix[np.ix_(index[u], index[v])].ravel())
    intervals = prob.intervals.copy()
    intervals[:, 1] += 1  # ours are inclusive [first, last]; the solver's are half-open
    sub = solver_lib.StrategyProblem.from_arrays(
        intervals,
        [c[i] for c, i in zip(prob.node_costs, index, strict=True)],
        [m[i] for m, i in zip(prob.node_usages, index, strict=True)],
        prob.edges.reshape(-1, 2),
        edge_costs,
        usage_limit=usage_limit,
    )
    result = solver_lib.solve(sub, time_limit=time_limit, seed=0, exact=False, max_rounds=_RESTRICTED_ROUNDS)
    local = np.asarray(result.strategies, dtype=np.int64)
    return np.array([int(i[s]) for i, s in zip(index, local, strict=True)], dtype=np.int64), result.clock_cut


def plans(
    graph: Graph,
    prob: problem_lib.Problem,
    config: PlanConfig,
    core: solver_lib.StrategyProblem,
    usage_limit: int | None,
    time_limit: float = 60.0,
    embed_budget: float = 0.0,
) -> list[FamilyPlan]:
    """Every family of the grid in `family_roles` order, then (with `embed_budget` > 0 seconds of counted
    work, on meshes of several active axes) the embeddings of coarser meshes (`coarse_groupings`), which
    share that budget; `time_limit` (all together) is a safety net."""
    deadline = time.perf_counter() + time_limit

    def left() -> float:  # the cap is one clock for all of them, never a share that a slow one overruns
        return max(deadline - time.perf_counter(), 0.05)

    groupings = coarse_groupings(config) if embed_budget > 0 else []
    facts = _GraphFacts.of(graph)
    out = [
        plan(graph, prob, config, roles, core, usage_limit, left(), facts) for roles in family_roles(config)
    ]
    for groups in groupings:
        share = embed_budget / len(groupings)
        out.append(coarse_embedding(graph, prob, config, core, usage_limit, groups, share, left()))
    return out


def coarse_groupings(config: PlanConfig) -> list[tuple[tuple[int, ...], ...]]:
    """The ways to merge neighbouring active axes into fewer axes, coarsest first: 2 axes give the flat
    mesh ((x, y),); 3 give ((x, y, z),), then ((x, y), (z,)) and ((x,), (y, z))."""
    active = config.active_axes
    if len(active) < 2:
        return []
    out = [(tuple(active),)]
    for cut in range(1, len(active)) if len(active) > 2 else []:
        out.append((tuple(active[:cut]), tuple(active[cut:])))
    return out


def coarse_mesh(config: PlanConfig, groups: tuple[tuple[int, ...], ...]) -> cost_lib.MeshModel:
    """One axis per group of the mesh's axes, costed as those axes used together (their latencies add up,
    the slowest bandwidth counts: `MeshModel.group`)."""
    sizes, alphas, betas = zip(*(config.mesh.group(g) for g in groups), strict=True)
    names = tuple("_".join(config.mesh.axis_names[a] for a in g) for g in groups)
    kinds = []  # a calibrated profile's per-collective figures, grouped the same way
    for kind, _, _ in config.mesh.collectives:
        grouped = [config.mesh.group(g, kind) for g in groups]
        kinds.append((kind, tuple(a for _, a, _ in grouped), tuple(b for _, _, b in grouped)))
    tables = cost_tables.regrouped(config.mesh.tables, groups)
    return cost_lib.MeshModel(
        tuple(sizes), names, tuple(alphas), tuple(betas), config.mesh.device, tuple(kinds), tables
    )


def coarse_embedding(
    graph: Graph,
    prob: problem_lib.Problem,
    config: PlanConfig,
    core: solver_lib.StrategyProblem,
    usage_limit: int | None,
    groups: tuple[tuple[int, ...], ...],
    budget: float,
    time_limit: float,
) -> FamilyPlan:
    """The program planned on a coarser mesh whose axes are groups of this mesh's axes, laid onto them (a
    dim split over the coarse axis of (x, y) is split over ("x", "y"): the same devices in the same order).
    This mesh can carry every layout of the coarse plan, so its search should never end worse than it. The
    coarse problem has far smaller tables (a 1,500-op step: 16k entries flat, 5M on 2x2x2) and is planned
    by the same `solve`, its own embeddings included, with `budget` seconds."""
    from autopar.passes.intra_op import solve as solve_lib  # solve imports this module

    # The coarse axis holding a forced batch axis is forced (the batch then spans its whole group).
    forced = next((g for g, axes in enumerate(groups) if config.force_batch_dim_to_mesh_dim in axes), -1)
    coarse_config = dataclasses.replace(
        config,
        mesh=coarse_mesh(config, groups),
        force_batch_dim_to_mesh_dim=forced,
        keep_input_shardings=False,
    )
    coarse = problem_lib.build(graph, coarse_config)
    result = solve_lib.solve(
        coarse,
        usage_limit=usage_limit,
        budget=budget,
        time_limit=time_limit,
        solver="auto",
        graph=graph,
        config=coarse_config,
    )
    index = []
    for v, s in enumerate(prob.strategies):
        if not result.feasible:
            index.append(np.arange(s.size))
            continue
        wanted = coarse.strategies[v].assignment[int(result.strategies[v])]
        match = np.ones(s.size, dtype=bool)
        for coarse_axis, axes in enumerate(groups):
            match &= np.all(s.assignment[:, list(axes)] == wanted[coarse_axis], axis=1)
        found = np.flatnonzero(match)
        index.append(found if found.size else np.arange(s.size))
    index = _gathers_chosen(prob, index)
    if all(len(i) == 1 for i in index):
        chosen, cut = np.array([int(i[0]) for i in index], dtype=np.int64), False
    else:
        chosen, cut = _solve_restricted(prob, index, usage_limit, time_limit)
    cost, peak, ok = core.evaluate(chosen)
    name = " x ".join("(" + ",".join(config.mesh.axis_names[a] for a in g) + ")" for g in groups)
    return FamilyPlan(f"embedded {name}", chosen, float(cost), int(peak), bool(ok), cut or result.clock_cut)


def best(family_plans: list[FamilyPlan]) -> FamilyPlan | None:
    feasible = [f for f in family_plans if f.feasible]
    return min(feasible, key=lambda f: f.cost) if feasible else None
