"""Builds the solver's arrays (the IOPDDL-shaped strategy problem) from a function graph.

Node v: one argument or op; strategy s of v has cost `node_costs[v][s]` (compute + its own collectives, in
seconds) and memory `node_usages[v][s]` (bytes per device of its results), live over `intervals[v]` in
program order. Edge (u, v): v reads a result of u; `edge_costs[e][i * |S_v| + j]` is the resharding time
when u picks i and v picks j. Options of the pass become filters on the strategy lists, so a forced choice
shrinks the problem instead of adding forbidden entries.
"""

from __future__ import annotations

import dataclasses
import functools
import types

import numpy as np

from autopar import solver as solver_lib
from autopar.errors import PassError
from autopar.passes.intra_op import convolutions, gathers, resharding, scatters
from autopar.passes.intra_op import strategies as strat
from autopar.passes.intra_op.config import PlanConfig
from autopar.passes.intra_op.graph import Graph, Node, collective_itemsizes
from autopar.passes.intra_op.graph_facts import (
    batch_factors,
    derived,
    gradient_reductions,
    is_optimizer_state,
    latency_share,
    live_intervals,
    merged_gradient_bytes,
    parameter_results,
)

# Ops without operands that every device makes whole at no cost in communication, and whose readers
# slice them locally whatever layout they need: replicated is their plan, nothing to remark (an iota per
# attention mask or position table in every HF transformer would otherwise fill the remarks).
MADE_ON_EVERY_DEVICE = frozenset({"stablehlo.constant", "stablehlo.iota"})


@dataclasses.dataclass
class Problem:
    """The arrays the solver takes, plus what is needed to read its answer back.

    Attributes:
      intervals: int64 [N, 2], first and last program point at which node N's results are live.
      node_costs / node_usages: per node, float64 [S] / int64 [S].
      edges: int64 [E, 2] (producer, consumer); edge_costs: per edge, float64 [S_u * S_v] row-major.
      strategies: per node, its Strategies (layouts for writing the plan).
      remarks: notes for the user (ops replicated because Shardy has no rule, relaxed constraints).
    """

    intervals: np.ndarray
    node_costs: list[np.ndarray]
    node_usages: list[np.ndarray]
    edges: np.ndarray
    edge_costs: list[np.ndarray]
    strategies: list[strat.Strategies]
    remarks: list[str]

    def min_peak_memory(self) -> int:
        """Peak over program points of the smallest memory every live node can have: no plan does better."""
        return peak(self.intervals, np.array([u.min() for u in self.node_usages], dtype=np.int64))

    def peak_memory(self, chosen: list[int]) -> int:
        return peak(
            self.intervals,
            np.array([u[s] for u, s in zip(self.node_usages, chosen, strict=True)], dtype=np.int64),
        )

    def objective(self, chosen: list[int]) -> float:
        total = sum(float(c[s]) for c, s in zip(self.node_costs, chosen, strict=True))
        for (u, v), cost in zip(self.edges, self.edge_costs, strict=True):
            total += float(cost[chosen[u] * self.strategies[v].size + chosen[v]])
        return total


def peak(intervals: np.ndarray, usage: np.ndarray) -> int:
    if len(usage) == 0:
        return 0
    end = int(intervals[:, 1].max()) + 2
    delta = np.zeros(end, dtype=np.int64)
    np.add.at(delta, intervals[:, 0], usage)
    np.add.at(delta, intervals[:, 1] + 1, -usage)
    return int(np.cumsum(delta).max())


def build(graph: Graph, config: PlanConfig) -> Problem:
    remarks: list[str] = []
    batch = derived(graph, "batch", batch_factors)
    signatures = derived(graph, "signatures", _signatures)
    # Nodes with the same signature (a transformer's repeated elementwise ops, every layer's matmuls) get
    # the same Strategies object: enumerated once per mesh, and their reshard tables are shared too.
    memo: dict[tuple, tuple[strat.Strategies, bool]] = {}
    node_strategies = []
    for v in range(len(graph.nodes)):
        key = signatures[v]
        if key is None:
            node_strategies.append(_node_strategies(graph, v, config, batch, remarks))
            continue
        if key not in memo:
            found: list[str] = []
            memo[key] = (_node_strategies(graph, v, config, batch, found), bool(found))
        s, remark = memo[key]
        if remark:  # the remark names this node's location
            _remark_again(graph.nodes[v], s, batch.get(v), config, remarks)
        node_strategies.append(s)
    if config.force_data_parallel and config.active_axes:
        node_strategies = _data_parallel_only(graph, node_strategies, config)
    node_strategies = gathers.gather_once(graph, node_strategies, config)
    edges, edge_costs = _add_state_edges(
        graph, node_strategies, config, *_edges(graph, node_strategies, config)
    )
    return Problem(
        intervals=live_intervals(graph),
        node_costs=[s.cost for s in node_strategies],
        node_usages=[s.memory for s in node_strategies],
        edges=edges,
        edge_costs=edge_costs,
        strategies=node_strategies,
        remarks=remarks,
    )


def _data_parallel_only(
    graph: Graph, node_strategies: list[strat.Strategies], config: PlanConfig
) -> list[strat.Strategies]:
    """force-data-parallel means what DataParallel, Zero2Parallel and Zero3Parallel mean: every mesh axis is
    a data-parallel axis of the ZeRO stage asked for (the `data`, `zero2` or `zero3` family of
    families.py): batch dims split over all of them; parameters and optimizer state replicated (stage 0),
    optimizer state split (stage 2), or parameters split too (stage 3); with stage 0, ops without a batch
    dim replicated, so the only collectives are the gradients' all-reduces."""
    from autopar.passes.intra_op import families  # families reads problems; this is a problem option

    role = {2: "zero2", 3: "zero3"}.get(config.zero_stage, "data")
    view = types.SimpleNamespace(strategies=node_strategies)
    keep = families.masks(graph, view, config, (role,) * len(config.active_axes))
    restricted: dict[tuple[int, bytes], strat.Strategies] = {}  # nodes that shared strategies still do
    out = []
    for s, mask in zip(node_strategies, keep, strict=True):
        if mask.all():
            out.append(s)
            continue
        key = (id(s), mask.tobytes())
        if key not in restricted:
            restricted[key] = s.take(mask)
        out.append(restricted[key])
    return out


def _signatures(graph: Graph) -> list[tuple | None]:
    """Per node, what its strategies depend on besides the mesh and options (None: not shared, e.g. ops
    without a rule, whose remark names them). Argument strategies depend on the shape and marks; op
    strategies on the op's facts and its batch factors. Facts are interned to small ints so the keys hash
    fast."""
    batch = derived(graph, "batch", batch_factors)
    gradients = derived(graph, "gradients", gradient_reductions)
    interned: dict[strat.OpFacts, int] = {}
    out: list[tuple | None] = []
    for v, node in enumerate(graph.nodes):
        if node.kind == "arg":
            state = node.is_parameter and is_optimizer_state(graph, v)
            out.append(
                (
                    "arg",
                    node.result_shapes[0],
                    node.result_itemsizes[0],
                    node.is_batch,
                    node.is_parameter,
                    state,
                )
            )
        elif node.rule is None or node.kind == "stablehlo.constant":
            out.append(None)
        else:
            facts = _facts(node)
            out.append(
                ("op", interned.setdefault(facts, len(interned)), batch.get(v), latency_share(v, gradients))
            )
    return out


def _node_strategies(
    graph: Graph, v: int, config: PlanConfig, batch: dict[int, frozenset[int]], remarks: list[str]
) -> strat.Strategies:
    node = graph.nodes[v]
    mesh = config.mesh
    if node.kind == "arg":
        s = strat.argument_strategies(
            node.result_shapes[0], node.result_itemsizes[0], mesh, config.active_axes
        )
        return _constrain_argument(graph, v, s, config)
    if node.rule is None or node.kind == "stablehlo.constant":
        if node.kind == "stablehlo.while":
            remarks.append(
                f"stablehlo.while at {where(node)}: the loop runs whole on every device (autopar-unroll-"
                "loops writes out only loops of a known trip count within its max-unrolled-ops; "
                "AutoShardingOption(max_unrolled_ops=...) raises it)"
            )
        elif node.kind == "stablehlo.case":
            remarks.append(
                f"stablehlo.case at {where(node)}: the conditional runs whole on every device (autopar-"
                "flatten-conditionals runs only light, pure branches side by side)"
            )
        elif node.rule is None and node.kind not in MADE_ON_EVERY_DEVICE and any(node.result_shapes):
            remarks.append(f"{node.kind} at {where(node)} has no Shardy sharding rule: kept replicated")
        facts = _facts(node)
        time = strat.op_time(facts, mesh) if facts.rule is not None else _unruled_time(node, config)
        time += _region_time(node, config)
        return strat.replicated_strategy(
            len(node.operands), tuple(node.result_shapes), tuple(node.result_itemsizes), len(mesh.shape), time
        )
    facts = _facts(node)
    if facts.grouped_features:
        remarks.append(convolutions.grouped_features_remark(node, where(node)))
        return strat.replicated_strategy(
            len(node.operands),
            tuple(node.result_shapes),
            tuple(node.result_itemsizes),
            len(mesh.shape),
            strat.op_time(facts, mesh),
        )
    share = latency_share(v, derived(graph, "gradients", gradient_reductions))
    wide = mesh.device.widened_collectives
    total = functools.partial(merged_gradient_bytes, wide=wide)
    merged = derived(graph, f"gradient_bytes{wide}", total) if share < 1.0 else 0.0
    reduce_scatter = config.prefer_reduce_scatter
    s = strat.op_strategies(facts, mesh, config.active_axes, reduce_scatter, share, merged)
    if v in batch:
        s = _constrain_batch(node, s, batch[v], config, remarks)
    if not config.allow_recompute_heavy_op and node.kind in strat.HEAVY_OPS:
        s = _split_heavy(s, config)
    return s


def _split_heavy(s: strat.Strategies, config: PlanConfig) -> strat.Strategies:
    """allow-recompute-heavy-op=false (Alpa's default): a dot or convolution is split over every active mesh
    axis that can split it, never computed whole by the devices along that axis. Without this a cheap
    model (a small hidden size) may price replication as the best plan, and a user scaling it up meets a
    different plan; with it every model gets a parallel plan, data or tensor parallel by the cost model."""
    keep = np.ones(s.size, dtype=bool)
    for axis in config.active_axes:
        split = s.assignment[:, axis] >= 0
        if (keep & split).any():
            keep &= split
    return s.take(keep) if not keep.all() else s


def _facts(node: Node) -> strat.OpFacts:
    from autopar.passes.intra_op.graph import Rule

    rule = node.rule or Rule(
        (), tuple(() for _ in node.operands), tuple(() for _ in node.result_shapes), frozenset(), frozenset()
    )
    return strat.OpFacts(
        name=node.kind,
        rule=rule,
        operand_shapes=tuple(node.operand_shapes),
        operand_itemsizes=tuple(node.operand_itemsizes),
        result_shapes=tuple(node.result_shapes),
        result_itemsizes=tuple(node.result_itemsizes),
        result_wide_itemsizes=tuple(node.result_wide_itemsizes),
        batch_groups=convolutions.batch_groups(node),
        grouped_features=convolutions.grouped_features(node),
        whole_factors=convolutions.window_factors(node, rule) | scatters.indexed_factors(node, rule),
        flops=convolutions.flops(node),
    )


def _remark_again(
    node: Node, s: strat.Strategies, factors: frozenset[int] | None, config: PlanConfig, remarks: list[str]
) -> None:
    """The remark a node whose strategies were shared with an earlier one made, for this node's location."""
    if convolutions.grouped_features(node):
        remarks.append(convolutions.grouped_features_remark(node, where(node)))
    elif factors is not None:
        _constrain_batch(node, s, factors, config, remarks)


def _unruled_time(node: Node, config: PlanConfig) -> float:
    moved = sum(i * int(np.prod(s)) for s, i in zip(node.operand_shapes, node.operand_itemsizes, strict=True))
    moved += sum(i * int(np.prod(s)) for s, i in zip(node.result_shapes, node.result_itemsizes, strict=True))
    return config.mesh.device.op_time(0.0, moved)


def _region_time(node: Node, config: PlanConfig) -> float:
    """The arithmetic of the ops in the regions of an op kept whole (Node.region_flops): every device runs
    all of it."""
    return config.mesh.device.op_time(node.region_flops, 0.0) if node.region_flops else 0.0


def where(node: Node) -> str:
    from autopar.errors import format_location

    return format_location(node.location) or "unknown location"


def _batch_forced_by(config: PlanConfig) -> str:
    if config.force_data_parallel:
        return "force-data-parallel"
    if config.zero_stage in (2, 3):
        return f"zero-stage={config.zero_stage}"
    return f"force-batch-dim-to-mesh-dim={config.force_batch_dim_to_mesh_dim}"


def _required_batch_axes(config: PlanConfig) -> tuple[int, ...]:
    if config.force_data_parallel or config.zero_stage in (2, 3):
        return config.active_axes
    if config.force_batch_dim_to_mesh_dim >= 0 and config.mesh.shape[config.force_batch_dim_to_mesh_dim] > 1:
        return (config.force_batch_dim_to_mesh_dim,)
    return ()


def _constrain_batch(
    node: Node, s: strat.Strategies, factors: frozenset[int], config: PlanConfig, remarks: list[str]
) -> strat.Strategies:
    axes = _required_batch_axes(config)
    if not axes:
        return s
    keep = np.ones(s.size, dtype=bool)
    for axis in axes:
        keep &= np.isin(s.assignment[:, axis], list(factors))
    if not keep.any():
        remarks.append(
            f"{node.kind} at {where(node)}: its batch dim cannot be split over mesh axes "
            f"{list(axes)}; left to the solver"
        )
        return s
    return s.take(keep)


def _constrain_argument(graph: Graph, v: int, s: strat.Strategies, config: PlanConfig) -> strat.Strategies:
    node = graph.nodes[v]
    layouts = s.result_layouts[0]
    keep = np.ones(s.size, dtype=bool)
    named = f"{node.path or f'argument {v}'} ({'x'.join(map(str, node.result_shapes[0])) or 'scalar'})"
    if node.is_batch:
        for axis in _required_batch_axes(config):
            keep &= layouts[:, axis] == 0
        if not keep.any():
            total = int(np.prod([config.mesh.shape[a] for a in _required_batch_axes(config)]))
            dim0 = node.result_shapes[0][0] if node.result_shapes[0] else 1
            raise PassError(
                f"{named}: batch dim 0 of size {dim0} does not divide over the {total} devices "
                f"{_batch_forced_by(config)} splits it over; use a batch size that is a multiple of {total}"
            )
    if node.is_parameter:
        want = _parameter_filter(graph, v, layouts, config)
        if want is not None and (keep & want).any():  # a tensor too small to split stays replicated
            keep &= want
    if node.kept is not None and config.keep_input_shardings:
        keep = _kept_layout(node.kept, layouts, config, named)
    return s.take(keep) if not keep.all() else s


def _kept_layout(kept, layouts: np.ndarray, config: PlanConfig, named: str) -> np.ndarray:
    """The strategies whose layout is the argument's kept sharding (--input-shardings=keep): the same mesh
    axes (names and sizes) split the same dims; a kept layout never gives way to other filters."""
    mesh = config.mesh
    sizes = dict(zip(kept.mesh, kept.sizes, strict=True))
    if sizes != {a: sizes.get(a) for a in mesh.axis_names} or set(sizes) != set(mesh.axis_names):
        given = ", ".join(f"{a}={n}" for a, n in sizes.items())
        planned = ", ".join(f"{a}={n}" for a, n in zip(mesh.axis_names, mesh.shape, strict=True))
        raise PassError(
            f"{named}: its kept sharding is on a mesh [{given}], not the planned [{planned}]: plan on the "
            "input's mesh or drop its shardings (--input-shardings=drop)"
        )
    want = np.full(len(mesh.axis_names), -1)
    for dim, axes in enumerate(kept.dims):
        for axis in axes:
            want[mesh.axis_names.index(axis)] = dim
    keep = (layouts == want[None, :]).all(axis=1)
    if not keep.any():
        raise PassError(f"{named}: its kept sharding is none of the layouts this planner can give it")
    return keep


def _parameter_filter(graph: Graph, v: int, layouts: np.ndarray, config: PlanConfig) -> np.ndarray | None:
    """Layouts a parameter argument may take under zero-stage / allow-replicated-parameters, None = any."""
    want = None
    if config.zero_stage == 3 or (config.zero_stage == 2 and is_optimizer_state(graph, v)):
        want = np.ones(layouts.shape[0], dtype=bool)
        for axis in config.active_axes:
            want &= layouts[:, axis] >= 0
    if not config.allow_replicated_parameters and config.active_axes:
        sharded = (layouts >= 0).any(axis=1)
        want = sharded if want is None else want & sharded
    return want


def _add_state_edges(
    graph: Graph,
    node_strategies: list[strat.Strategies],
    config: PlanConfig,
    edges: np.ndarray,
    edge_costs: list[np.ndarray],
):
    """Edges from each updated parameter's producer back to its argument: the next step's reshard."""
    index = {(int(u), int(v)): e for e, (u, v) in enumerate(edges)}
    edge_costs = list(edge_costs)
    extra_keys = []
    for v, j in parameter_results(graph).items():
        u, r = graph.returns[j]
        produced = node_strategies[u].result_layouts[r]
        required = node_strategies[v].result_layouts[0]
        cost = _reshard_cached(
            produced.tobytes(),
            produced.shape,
            required.tobytes(),
            required.shape,
            graph.nodes[v].result_shapes[0],
            collective_itemsizes(graph.nodes[v], config.mesh)[0],
            config,
        )
        if cost is None:
            continue
        # One edge per node pair: fold into an existing edge (either direction) when there is one.
        if (u, v) in index:
            e = index[(u, v)]
            edge_costs[e] = np.minimum(edge_costs[e] + cost.ravel(), strat.FORBIDDEN)
        elif (v, u) in index:
            e = index[(v, u)]
            edge_costs[e] = np.minimum(edge_costs[e] + cost.T.ravel(), strat.FORBIDDEN)
        else:
            index[(u, v)] = len(edge_costs)
            extra_keys.append((u, v))
            edge_costs.append(cost.ravel())
    if extra_keys:
        edges = np.concatenate([edges.reshape(-1, 2), np.asarray(extra_keys, dtype=np.int64)])
    return edges, edge_costs


def _edges(graph: Graph, node_strategies: list[strat.Strategies], config: PlanConfig):
    pairs: dict[tuple[int, int], np.ndarray] = {}
    # Layout arrays are shared between nodes of one signature: key the tables by identity first.
    memo: dict[tuple, np.ndarray | None] = {}
    for v, node in enumerate(graph.nodes):
        for k, (u, r) in enumerate(node.operands):
            produced = node_strategies[u].result_layouts[r]
            required = node_strategies[v].operand_layouts[k]
            shape = graph.nodes[u].result_shapes[r]
            itemsize = collective_itemsizes(graph.nodes[u], config.mesh)[r]
            gathered = node_strategies[u].gathered
            key = (id(produced), id(required), shape, itemsize, id(gathered))
            if key not in memo:
                cost = _reshard_cached(
                    produced.tobytes(),
                    produced.shape,
                    required.tobytes(),
                    required.shape,
                    shape,
                    itemsize,
                    config,
                )
                memo[key] = None if cost is None else gathers.shared(cost, gathered, required)
            cost = memo[key]
            if cost is None:
                continue
            key = (u, v)
            pairs[key] = pairs[key] + cost if key in pairs else cost
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64), []
    keys = list(pairs)
    return np.asarray(keys, dtype=np.int64), [np.minimum(pairs[k], strat.FORBIDDEN).ravel() for k in keys]


@functools.lru_cache(maxsize=65536)
def _reshard_cached(
    produced: bytes, produced_shape, required: bytes, required_shape, shape, itemsize, config: PlanConfig
) -> np.ndarray | None:
    p = np.frombuffer(produced, dtype=np.int8).reshape(produced_shape)
    c = np.frombuffer(required, dtype=np.int8).reshape(required_shape)
    cost = resharding.reshard_cost(
        p, c, shape, itemsize, config.mesh, config.allow_all_gather, config.allow_all_to_all
    )
    if not cost.any():
        return None  # scalars, size-1 meshes: no edge needed
    cost.setflags(write=False)
    return cost


def to_solver_problem(
    problem: Problem, usage_limit: int | None, name: str = ""
) -> solver_lib.StrategyProblem:
    """The problem in the solver's form (`autopar.solver.StrategyProblem`)."""
    intervals = problem.intervals.copy()
    intervals[:, 1] += 1  # ours are inclusive [first, last]; the solver's are half-open
    return solver_lib.StrategyProblem.from_arrays(
        intervals,
        problem.node_costs,
        problem.node_usages,
        problem.edges.reshape(-1, 2),
        problem.edge_costs,
        usage_limit=usage_limit,
        name=name,
    )
