"""Why a plan chose what it chose: `ExecutionPlan.explain(path_or_op)`.

The planned module keeps the plan (layouts, constraints, plan attributes), not the strategy problem. To
explain it, the problem is rebuilt: the plan's annotations are stripped from a copy of the module (every
`sdy.sharding_constraint`, the `sdy.sharding`s of @main, the `sdy.mesh`), which leaves the function the
pass planned, and the strategy problem is built and solved again with the pass's own options (read from
the method's pipeline). Planning stops on counted work, so the solve gives the plan the pass wrote; the
explanation says so when its objective does not match the module's (`Explanation.note`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxlib.mlir import ir

from autopar.errors import AutoparError, format_location

if TYPE_CHECKING:
    from autopar.api.plan import ExecutionPlan

# Problems up to this many nodes get their alternatives re-solved exactly (the solver with the node's
# strategy forced), larger ones only the local delta; each re-solve gets this much counted work.
EXACT_NODE_LIMIT = 4000
RESOLVE_BUDGET = 0.5


class ExplainError(AutoparError, LookupError):
    """`plan.explain(...)` got a path or op the plan does not have, or a plan it cannot explain."""


class PlanSource:
    """What a plan keeps to be explained: the planned module and the pipeline that planned it. Not a
    dataclass, and copies are itself, so `dataclasses.asdict(plan)` / `copy.deepcopy(plan)` work."""

    def __init__(self, module: ir.Module, pipeline: str):
        self.module, self.pipeline, self.cache = module, pipeline, {}

    def __deepcopy__(self, memo: dict) -> PlanSource:
        return self

    def __repr__(self) -> str:
        return f"PlanSource(pipeline={self.pipeline!r})"


@dataclasses.dataclass(frozen=True)
class Reshard:
    """Resharding between the explained node and one neighbour, priced with the neighbour's chosen
    strategy: `seconds`, and the collective kinds it takes ('all-gather', 'all-to-all', ...)."""

    neighbour: str
    seconds: float
    kinds: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class CostSplit:
    """One strategy's share of the objective, in seconds: `compute` (roofline; an argument's read of its
    shard), `communication` ({kind: seconds} of the op's own partial-sum collectives), `reshard_in` /
    `reshard_out` (edges to the producers it reads / the users that read it, the neighbours' strategies
    as planned); `memory` is bytes per device of its results. `total` is the sum of the seconds."""

    compute: float
    communication: dict[str, float]
    reshard_in: tuple[Reshard, ...]
    reshard_out: tuple[Reshard, ...]
    memory: int

    @property
    def total(self) -> float:
        return (
            self.compute
            + sum(self.communication.values())
            + sum(r.seconds for r in self.reshard_in)
            + sum(r.seconds for r in self.reshard_out)
        )


@dataclasses.dataclass(frozen=True)
class Alternative:
    """A strategy the plan did not choose for the node. `local_delta`: how much more the objective costs
    with only this node changed (neighbours as planned); `delta`: the objective's increase when the whole
    problem is re-solved with this strategy forced (`exact`: the solver proved that re-solve optimal),
    None when the problem was too large to re-solve or (`feasible` False) no plan with it fits the memory
    budget."""

    strategy: str
    local_delta: float
    delta: float | None
    exact: bool
    feasible: bool = True


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Why one tensor or op got its layout (`ExecutionPlan.explain`).

    Attributes:
      target: what was asked for, resolved (`params['w1']`, `op #12`).
      node: the node of the strategy problem explained (`argument params['w1']`, `stablehlo.dot_general
        at model.py:9:24`).
      strategy: the chosen strategy (layouts of operands and results, partial sums).
      cost: its CostSplit.
      objective: the plan's objective (seconds) the deltas are relative to.
      alternatives: the cheapest other strategies, best first.
      collectives: the compiled collectives traced back to this node (kind, shape, source line).
      note: a caveat (the rebuilt plan differs from the module's, an output returned in another layout).
    """

    target: str
    node: str
    strategy: str
    cost: CostSplit
    objective: float
    alternatives: tuple[Alternative, ...]
    collectives: tuple[str, ...] = ()
    note: str = ""

    def __str__(self) -> str:
        c = self.cost
        lines = [f"{self.target}: {self.node}", f"  chosen: {self.strategy}"]
        lines.append(f"  cost {c.total:.4g} s of the plan's {self.objective:.4g} s:")
        lines.append(f"    compute        {c.compute:.4g} s")
        for kind, seconds in c.communication.items():
            lines.append(f"    {kind:<14} {seconds:.4g} s")
        for title, links in (("reshard in", c.reshard_in), ("reshard out", c.reshard_out)):
            total = sum(r.seconds for r in links)
            lines.append(f"    {title:<14} {total:.4g} s")
            for r in links:
                if r.seconds:
                    kinds = f" ({', '.join(r.kinds)})" if r.kinds else ""
                    lines.append(f"      {r.neighbour}: {r.seconds:.4g} s{kinds}")
        from autopar.api.plan import _bytes_text

        lines.append(f"    memory         {_bytes_text(c.memory)} per device")
        if self.alternatives:
            lines.append("  alternatives (extra seconds over the plan):")
        for a in self.alternatives:
            if not a.feasible:
                how = f"no plan with it fits the memory budget (+{a.local_delta:.4g} s with neighbours fixed)"
            elif a.delta is None:
                how = f"+{a.local_delta:.4g} s (neighbours fixed)"
            else:
                how = f"+{a.delta:.4g} s re-solved{'' if a.exact else ' (best found)'}, "
                how += f"+{a.local_delta:.4g} s with neighbours fixed"
            lines.append(f"    {a.strategy}: {how}")
        if not self.alternatives:
            lines.append("  no alternative: this is the only strategy the options leave")
        lines.extend(f"  collective: {c}" for c in self.collectives)
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


# ---- rebuilding the problem ----------------------------------------------------------------------------


@dataclasses.dataclass
class Rebuilt:
    module: ir.Module  # the stripped copy the graph's ops live in
    graph: Any
    problem: Any
    config: Any
    chosen: list[int]
    objective: float
    adjacency: dict[int, list[int]]


def intra_op_options(pipeline: str):
    """The autopar-intra-op options (a PlanConfig) a pipeline plans with: its `autopar-intra-op` element,
    or the one its `autopar-shard` element runs."""
    from autopar.passes import pipeline as pipeline_lib
    from autopar.passes import pipelines, registry
    from autopar.passes.intra_op import config as config_lib

    for element in pipeline_lib.parse_pipeline(pipeline):
        if element.name == "autopar-intra-op":
            return config_lib.from_options(pipeline_lib.parsed_options(element))
        if element.name == "autopar-shard":
            for name, assignments in pipelines.steps("autopar-shard", pipeline_lib.parsed_options(element)):
                if name == "autopar-intra-op":
                    options = registry.lookup(name).parse_options(assignments)
                    return config_lib.from_options(options)
    raise ExplainError("the plan was not made by autopar-intra-op (a manual layout): nothing to explain")


def strip_plan(module: ir.Module) -> ir.Module:
    """A copy of a planned module without the plan: constraints, @main's shardings and the mesh removed."""
    from autopar.ir.stages import find_function

    copy = ir.Module.parse(module.operation.get_asm(enable_debug_info=True), context=module.context)
    doomed = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "sdy.sharding_constraint":
            doomed.append(op)
        return ir.WalkResult.ADVANCE

    copy.operation.walk(visit, walk_order=ir.WalkOrder.PRE_ORDER)
    for op in doomed:
        op.results[0].replace_all_uses_with(op.operands[0])
    for op in reversed(doomed):
        op.erase()
    main = find_function(copy.operation)
    with copy.context:
        for name in ("arg_attrs", "res_attrs"):
            if name in main.attributes:
                dicts = [ir.DictAttr(a) for a in ir.ArrayAttr(main.attributes[name])]
                kept = [
                    ir.DictAttr.get({n.name: n.attr for n in d if n.name != "sdy.sharding"}) for d in dicts
                ]
                main.attributes[name] = ir.ArrayAttr.get(kept)
    for op in list(copy.body.operations):
        if op.operation.name == "sdy.mesh":
            op.operation.erase()
    return copy


def rebuild(source: PlanSource) -> Rebuilt:
    """The strategy problem of the plan and its chosen strategies (cached on the source)."""
    if "rebuilt" in source.cache:
        return source.cache["rebuilt"]
    from autopar.passes.intra_op import PlanningGraph, problem, solve

    config = intra_op_options(source.pipeline)
    stripped = strip_plan(source.module)
    graph = PlanningGraph(stripped).graph
    prob = problem.build(graph, config)
    solution = solve.solve(
        prob,
        usage_limit=config.memory_budget or None,
        budget=config.planning_budget,
        time_limit=config.time_limit,
        solver=config.solver,
        graph=graph,
        config=config,
    )
    if not solution.feasible:
        raise ExplainError(f"re-solving the plan's problem gave no plan ({solution.status})")
    adjacency: dict[int, list[int]] = {}
    for e, (u, w) in enumerate(prob.edges.reshape(-1, 2)):
        adjacency.setdefault(int(u), []).append(e)
        adjacency.setdefault(int(w), []).append(e)
    chosen = list(solution.strategies)
    rebuilt = Rebuilt(stripped, graph, prob, config, chosen, prob.objective(chosen), adjacency)
    source.cache["rebuilt"] = rebuilt
    return rebuilt


# ---- naming nodes ------------------------------------------------------------------------------------


def node_name(graph, v: int) -> str:
    node = graph.nodes[v]
    if node.kind == "arg":
        return f"argument {node.path or v}"
    where = format_location(node.location)
    return f"op #{v - graph.num_args} {node.kind}" + (f" at {where}" if where else "")


def find_node(plan: ExecutionPlan, rebuilt: Rebuilt, what: str | int) -> tuple[int, str, str]:
    """(node, target text, note) for an input path, an output path, an op index or an op's name/location."""
    graph = rebuilt.graph
    ops = len(graph.nodes) - graph.num_args
    if isinstance(what, int | np.integer):
        if not 0 <= what < ops:
            raise ExplainError(f"op index {what} is out of range: @main has {ops} ops (0..{ops - 1})")
        return graph.num_args + int(what), f"op #{what}", ""
    for i, t in enumerate(plan.inputs):
        if t.path == what:
            return i, what, ""
    for j, t in enumerate(plan.outputs):
        if t.path == what:
            u, r = graph.returns[j]
            multi = graph.nodes[u].kind != "arg" and len(graph.nodes[u].result_shapes) > 1
            note = f"{what} is result {r} of this op" if multi else ""
            if _spec_of(rebuilt, u, r) != _spec(t.spec):
                note = (
                    f"{what} leaves in {_spec(t.spec)}, its argument's layout (the update is "
                    f"resharded to it: priced as a reshard out)"
                )
            return u, what, note
    text = what.strip()
    found = [
        v
        for v in range(graph.num_args, len(graph.nodes))
        if text in (graph.nodes[v].kind, graph.nodes[v].kind.removeprefix("stablehlo."))
        or (text and text in str(graph.nodes[v].location))
    ]
    if len(found) == 1:
        return found[0], text, ""
    if not found:
        names = ", ".join(t.path for t in (*plan.inputs, *plan.outputs))
        raise ExplainError(
            f"'{what}' is no argument or result path ({names}), op name or source location of the plan; "
            f"or give an op index 0..{ops - 1}"
        )
    listed = "; ".join(node_name(graph, v) for v in found[:5]) + ("; ..." if len(found) > 5 else "")
    raise ExplainError(f"'{what}' matches {len(found)} ops ({listed}): pass one's index (op #i -> i)")


def _spec(spec) -> str:
    from autopar.api.plan import _spec_text

    return _spec_text(spec)


def layout_spec(layout: np.ndarray, rank: int, axis_names: tuple[str, ...]) -> str:
    """A layout row (per mesh axis: the dim it splits, -1 none) as PartitionSpec text."""
    from jax.sharding import PartitionSpec

    entries = []
    for dim in range(rank):
        axes = tuple(axis_names[a] for a in range(len(layout)) if layout[a] == dim)
        entries.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    while entries and entries[-1] is None:  # as the plan prints specs: P('x',), not P('x', None)
        entries.pop()
    return _spec(PartitionSpec(*entries))


def _spec_of(rebuilt: Rebuilt, v: int, r: int, k: int | None = None) -> str:
    s = rebuilt.problem.strategies[v]
    rank = len(rebuilt.graph.nodes[v].result_shapes[r])
    choice = rebuilt.chosen[v] if k is None else k
    return layout_spec(s.result_layouts[r][choice], rank, rebuilt.config.mesh.axis_names)


def describe(rebuilt: Rebuilt, v: int, k: int) -> str:
    """Strategy k of node v as layouts: `P('x', None)` for an argument, `operands -> results` for an op,
    with the mesh axes whose partial sums are reduced."""
    graph, s, names = rebuilt.graph, rebuilt.problem.strategies[v], rebuilt.config.mesh.axis_names
    node = graph.nodes[v]
    results = [
        layout_spec(s.result_layouts[r][k], len(shape), names) for r, shape in enumerate(node.result_shapes)
    ]
    if node.kind == "arg":
        return results[0]
    operands = [
        layout_spec(s.operand_layouts[i][k], len(shape), names) for i, shape in enumerate(node.operand_shapes)
    ]
    text = f"({', '.join(operands)}) -> {', '.join(results) or '()'}"
    reduction = node.rule.reduction if node.rule else frozenset()
    reduced = [names[a] for a, f in enumerate(s.assignment[k]) if f >= 0 and f in reduction]
    if reduced:
        text += f", partial sums over {','.join(reduced)}"
    return text


# ---- costs -------------------------------------------------------------------------------------------


def _edge(rebuilt: Rebuilt, e: int, v: int, k: int) -> float:
    prob = rebuilt.problem
    u, w = (int(x) for x in prob.edges.reshape(-1, 2)[e])
    i = k if u == v else rebuilt.chosen[u]
    j = k if w == v else rebuilt.chosen[w]
    return float(prob.edge_costs[e][i * prob.strategies[w].size + j])


def local_cost(rebuilt: Rebuilt, v: int, k: int) -> float:
    """Node v's cost with strategy k, its edges priced against the neighbours' chosen strategies."""
    total = float(rebuilt.problem.node_costs[v][k])
    return total + sum(_edge(rebuilt, e, v, k) for e in rebuilt.adjacency.get(v, ()))


def cost_split(rebuilt: Rebuilt, v: int, k: int) -> CostSplit:
    from autopar.passes.intra_op import expected
    from autopar.passes.intra_op import strategies as strat
    from autopar.passes.intra_op.problem import _facts

    graph, prob, mesh = rebuilt.graph, rebuilt.problem, rebuilt.config.mesh
    node, s = graph.nodes[v], prob.strategies[v]
    cost = float(s.cost[k])
    compute, communication = cost, {}
    if node.kind != "arg" and node.rule is not None and node.kind != "stablehlo.constant":
        split = math.prod(mesh.shape[a] for a, f in enumerate(s.assignment[k]) if f >= 0)
        compute = min(strat.op_time(_facts(node), mesh) / split, cost)
        kinds = [kind for kind, _, _ in expected._reductions(node, s, k, mesh)]
        if kinds and cost - compute > 0:
            communication[kinds[0]] = cost - compute
        else:
            compute = cost
    links_in, links_out = [], []
    for e in rebuilt.adjacency.get(v, ()):
        u, w = (int(x) for x in prob.edges.reshape(-1, 2)[e])
        other = w if u == v else u
        seconds = _edge(rebuilt, e, v, k)
        kinds = _edge_kinds(rebuilt, u, w, v, k) if seconds else ()
        link = Reshard(node_name(graph, other), seconds, kinds)
        # A state edge runs from an update's producer to its argument: the argument "reads" it.
        (links_in if w == v else links_out).append(link)
    return CostSplit(compute, communication, tuple(links_in), tuple(links_out), int(s.memory[k]))


def _edge_kinds(rebuilt: Rebuilt, u: int, w: int, v: int, k: int) -> tuple[str, ...]:
    from autopar.passes.intra_op import expected
    from autopar.passes.intra_op.graph_facts import parameter_results

    graph, prob, mesh = rebuilt.graph, rebuilt.problem, rebuilt.config.mesh
    pick = lambda x: k if x == v else rebuilt.chosen[x]  # noqa: E731
    kinds: list[str] = []
    links = [(kk, r) for kk, (src, r) in enumerate(graph.nodes[w].operands) if src == u]
    for kk, r in links:
        produced = prob.strategies[u].result_layouts[r][pick(u)]
        required = prob.strategies[w].operand_layouts[kk][pick(w)]
        if not np.array_equal(produced, required):
            shape, size = graph.nodes[w].operand_shapes[kk], graph.nodes[w].operand_itemsizes[kk]
            kinds += [kind for kind, _, _ in expected._reshard(produced, required, shape, size, mesh)]
    state = parameter_results(graph)
    for arg, src in ((w, u), (u, w)):
        if arg in state and graph.returns[state[arg]][0] == src:
            r = graph.returns[state[arg]][1]
            produced = prob.strategies[src].result_layouts[r][pick(src)]
            required = prob.strategies[arg].result_layouts[0][pick(arg)]
            node = graph.nodes[arg]
            if not np.array_equal(produced, required):
                kinds += [
                    k2
                    for k2, _, _ in expected._reshard(
                        produced, required, node.result_shapes[0], node.result_itemsizes[0], mesh
                    )
                ]
    return tuple(dict.fromkeys(kinds))


def resolve_forced(rebuilt: Rebuilt, v: int, k: int):
    """The solver's best plan with node v's strategy forced to k: (objective, proven optimal)."""
    from autopar import solver as solver_lib

    prob = rebuilt.problem
    costs, usages, edge_costs = list(prob.node_costs), list(prob.node_usages), list(prob.edge_costs)
    costs[v], usages[v] = costs[v][k : k + 1], usages[v][k : k + 1]
    edges = prob.edges.reshape(-1, 2)
    for e in rebuilt.adjacency.get(v, ()):
        u, w = (int(x) for x in edges[e])
        table = np.asarray(edge_costs[e]).reshape(prob.strategies[u].size, prob.strategies[w].size)
        edge_costs[e] = (table[k : k + 1, :] if u == v else table[:, k : k + 1]).ravel()
    intervals = prob.intervals.copy()
    intervals[:, 1] += 1
    core = solver_lib.StrategyProblem.from_arrays(
        intervals, costs, usages, edges, edge_costs, usage_limit=rebuilt.config.memory_budget or None
    )
    initial = list(rebuilt.chosen)
    initial[v] = 0
    result = solver_lib.solve(core, time_limit=10.0, budget=RESOLVE_BUDGET, seed=0, initial=initial)
    if not result.feasible:
        return None, False
    return float(result.cost), result.status == "optimal"


def alternatives(rebuilt: Rebuilt, v: int, top: int) -> tuple[Alternative, ...]:
    from autopar.passes.intra_op.strategies import FORBIDDEN

    chosen = rebuilt.chosen[v]
    base = local_cost(rebuilt, v, chosen)
    size = rebuilt.problem.strategies[v].size
    local = sorted((local_cost(rebuilt, v, k) - base, k) for k in range(size) if k != chosen)
    local = [(d, k) for d, k in local if d < FORBIDDEN / 10]
    exact = len(rebuilt.graph.nodes) <= EXACT_NODE_LIMIT
    out = []
    for d, k in local[: 2 * top if exact else top]:
        delta, proven = resolve_forced(rebuilt, v, k) if exact else (None, False)
        if delta is not None:
            delta -= rebuilt.objective
        feasible = not exact or delta is not None
        out.append(Alternative(describe(rebuilt, v, k), d, delta, proven, feasible))
    out.sort(key=lambda a: (not a.feasible, a.local_delta if a.delta is None else a.delta, a.local_delta))
    return tuple(out[:top])


def explain(plan: ExecutionPlan, what: str | int, top: int = 3) -> Explanation:
    source = plan.source
    if source is None:
        raise ExplainError("this plan keeps no planned module to explain (build it with get_execution_plan)")
    rebuilt = rebuild(source)
    v, target, note = find_node(plan, rebuilt, what)
    if plan.estimated_cost is not None and not math.isclose(
        rebuilt.objective, plan.estimated_cost, rel_tol=1e-6, abs_tol=1e-15
    ):
        note = (note + "; " if note else "") + (
            f"the re-solved plan costs {rebuilt.objective:.4g} s, the module's {plan.estimated_cost:.4g} s: "
            "the explanation is of the re-solved one"
        )
    from autopar.api.plan_diff import collectives_of

    return Explanation(
        target=target,
        node=node_name(rebuilt.graph, v),
        strategy=describe(rebuilt, v, rebuilt.chosen[v]),
        cost=cost_split(rebuilt, v, rebuilt.chosen[v]),
        objective=rebuilt.objective,
        alternatives=alternatives(rebuilt, v, top),
        collectives=collectives_of(plan, rebuilt.graph.nodes[v]),
        note=note,
    )
