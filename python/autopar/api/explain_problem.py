"""The strategy problem behind a plan, rebuilt from the planned module and solved again; its nodes named
and described as layouts, and each strategy's cost split and alternatives (for api/explain.py).

The planned module keeps the plan (layouts, constraints, plan attributes), not the strategy problem. To
explain it, the problem is rebuilt: the plan's annotations are stripped from a copy of the module (every
`sdy.sharding_constraint`, the `sdy.sharding`s of @main, the `sdy.mesh`), which leaves the function the
pass planned, and the strategy problem is built and solved again with the pass's own options. Planning
stops on counted work, so the solve gives the plan the pass wrote.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
from jaxlib.mlir import ir

from autopar.api.explanation import Alternative, CostSplit, ExplainError, PlanSource, Reshard
from autopar.errors import format_location
from autopar.passes.intra_op.graph import argument_name

# Problems up to this many nodes get their alternatives re-solved exactly (the solver with the node's
# strategy forced), larger ones only the local delta; each re-solve gets this much counted work.
EXACT_NODE_LIMIT = 4000
RESOLVE_BUDGET = 0.5


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


def pass_options(pipeline: str, name: str):
    """The parsed options `pipeline` runs the pass `name` with: its own element, or the step of a named
    pipeline element (`autopar-shard`, `autopar-pipeshard`) that runs it; None when it runs none."""
    from autopar.passes import pipeline as pipeline_lib
    from autopar.passes import pipelines, registry

    for element in pipeline_lib.parse_pipeline(pipeline):
        if element.name == name:
            return pipeline_lib.parsed_options(element)
        if element.name in pipelines.PIPELINES:
            for step, assignments in pipelines.steps(element.name, pipeline_lib.parsed_options(element)):
                if step == name:
                    return registry.lookup(name).parse_options(assignments)
    return None


def intra_op_options(pipeline: str):
    """The autopar-intra-op options (a PlanConfig) a pipeline plans with: its `autopar-intra-op` element,
    or the one its `autopar-shard` element runs."""
    from autopar.passes.intra_op import config as config_lib

    options = pass_options(pipeline, "autopar-intra-op")
    if options is None:
        raise ExplainError("the plan was not made by autopar-intra-op (a manual layout): nothing to explain")
    return config_lib.from_options(options)


def strip_plan(module: ir.Module) -> ir.Module:
    """A copy of a planned module without the plan: constraints, @main's shardings and the mesh removed."""
    from autopar.ir.host_callbacks import maximal_meshes
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
    placing = maximal_meshes(copy.operation)  # where a jax.debug.print runs: not the plan, and still named
    for op in list(copy.body.operations):
        if op.operation.name == "sdy.mesh" and op.operation not in placing:
            op.operation.erase()
    return copy


def rebuild(source: PlanSource) -> Rebuilt:
    """The strategy problem of the plan and its chosen strategies (cached on the source)."""
    if "rebuilt" not in source.cache:
        config = intra_op_options(source.pipeline)
        source.cache["rebuilt"] = solve_module(strip_plan(source.module), config)
    return source.cache["rebuilt"]


def solve_module(stripped: ir.Module, config) -> Rebuilt:
    """Builds the strategy problem of `stripped`'s @main (a module without a plan) with the intra-op
    options `config` and solves it as the pass does."""
    from autopar.passes.intra_op import PlanningGraph, problem, solve

    graph = PlanningGraph(stripped).graph
    prob = problem.build(graph, config)
    # As the pass solves it: a plan-family plan is that family's (no search), explained as such.
    solution = solve.solve_as_configured(prob, graph, config)
    if not solution.feasible:
        raise ExplainError(f"re-solving the plan's problem gave no plan ({solution.status})")
    adjacency: dict[int, list[int]] = {}
    for e, (u, w) in enumerate(prob.edges.reshape(-1, 2)):
        adjacency.setdefault(int(u), []).append(e)
        adjacency.setdefault(int(w), []).append(e)
    chosen = list(solution.strategies)
    return Rebuilt(stripped, graph, prob, config, chosen, prob.objective(chosen), adjacency)


# ---- naming nodes ------------------------------------------------------------------------------------


def op_matches(kind: str, location, text: str) -> bool:
    """Whether an op's name (`dot_general`, `stablehlo.dot_general`) is `text`, its user source line is
    `text` (`model.py:12`, `model.py:12:8`, or with a longer path: not line 120) or its location's text
    contains it (`transpose(jvp())`)."""
    if text in (kind, kind.removeprefix("stablehlo.")):
        return True
    line = re.compile(r"(?:^|/)" + re.escape(text) + r"(?::|$)")
    return bool(text) and (bool(line.search(format_location(location))) or text in str(location))


def ops_matching(graph, text: str) -> list[int]:
    """The op nodes `op_matches` finds."""
    ops = range(graph.num_args, len(graph.nodes))
    return [v for v in ops if op_matches(graph.nodes[v].kind, graph.nodes[v].location, text)]


def node_name(graph, v: int) -> str:
    node = graph.nodes[v]
    if node.kind == "arg":
        return argument_name(graph, v)
    where = format_location(node.location)
    return f"op #{v - graph.num_args} {node.kind}" + (f" at {where}" if where else "")


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
        gathered = None if s.gathered is None else s.gathered[k]
        if gathered is None or np.array_equal(gathered, s.result_layouts[0][k]):
            return results[0]
        rank = len(node.result_shapes[0])
        return f"{results[0]}, gathered once to {layout_spec(gathered, rank, names)} for its readers"
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
        compute = min(strat.compute_time(_facts(node), mesh, s.assignment[k]), cost)
        kinds = [kind for kind, _, _ in expected._reductions(node, s, k, mesh)]
        if kinds and cost - compute > 0:
            communication[kinds[0]] = cost - compute
        else:
            compute = cost
    elif s.gathered is not None and not np.array_equal(s.gathered[k], s.result_layouts[0][k]):
        # An argument gathered once for its readers (passes/intra_op/gathers.py) pays that on the node.
        compute = float(s.memory[k]) / mesh.device.memory_bandwidth
        produced, gathered = s.result_layouts[0][k], s.gathered[k]
        shape, size = node.result_shapes[0], node.result_itemsizes[0]
        kinds = [kind for kind, _, _ in expected._reshard(produced, gathered, shape, size, mesh)]
        communication[kinds[0] if len(kinds) == 1 else "reshard"] = max(cost - compute, 0.0)
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
    allowed = np.array([k])
    s = prob.strategies[v]
    if s.gathered is not None:  # an argument's layout is forced; where it is gathered stays free
        allowed = np.flatnonzero((s.result_layouts[0] == s.result_layouts[0][k]).all(axis=1))
    costs[v], usages[v] = costs[v][allowed], usages[v][allowed]
    edges = prob.edges.reshape(-1, 2)
    for e in rebuilt.adjacency.get(v, ()):
        u, w = (int(x) for x in edges[e])
        table = np.asarray(edge_costs[e]).reshape(prob.strategies[u].size, prob.strategies[w].size)
        edge_costs[e] = (table[allowed, :] if u == v else table[:, allowed]).ravel()
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
    strategies = rebuilt.problem.strategies[v]
    if strategies.gathered is not None:  # an argument: other layouts, each with its cheapest gather
        layouts = strategies.result_layouts[0]
        seen = {layouts[chosen].tobytes()}
        kept = []
        for d, k in local:
            if layouts[k].tobytes() not in seen:
                seen.add(layouts[k].tobytes())
                kept.append((d, k))
        local = kept
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


def check_query(what: object, top: object, kinds: tuple[type, ...] = (str, int)) -> None:
    """What plan.explain accepts: a path, op name or source location (str), or an op index (int, mesh plans
    only); `top` alternatives, an int >= 0. A TypeError or ValueError saying so, not one from inside."""
    if isinstance(what, bool) or not isinstance(what, kinds):
        index = " or an op index (an int)" if int in kinds else ""
        raise TypeError(
            f"plan.explain takes a path, an op name or a source location (a str){index}, got "
            f"{type(what).__name__}"
        )
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValueError(f"plan.explain: top must be an int >= 0 (how many alternatives), got {top!r}")
