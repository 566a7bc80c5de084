"""Why a plan chose what it chose: `ExecutionPlan.explain(path_or_op)` (and, per stage,
`PipeshardExecutionPlan.explain(path)`).

The problem is rebuilt from the planned module and solved again (api/explain_problem.py); the explanation
says so when the re-solved objective does not match the module's (`Explanation.note`). The dataclasses
returned are in api/explanation.py.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from jaxlib.mlir import ir

from autopar.api.explain_problem import (
    Rebuilt,
    _spec,
    _spec_of,
    alternatives,
    check_query,
    cost_split,
    describe,
    node_name,
    ops_matching,
    rebuild,
)
from autopar.api.explanation import (  # noqa: F401  (the names api users import from here)
    Alternative,
    CostSplit,
    ExplainError,
    Explanation,
    PlanSource,
    Reshard,
)
from autopar.api.nnx_modules import variable_path

if TYPE_CHECKING:
    from autopar.api.plan import ExecutionPlan


def find_node(plan: ExecutionPlan, rebuilt: Rebuilt, what: str | int) -> tuple[int, str, str]:
    """(node, target text, note) for an input path, an output path, an op index, an SSA name or an op's
    name/location."""
    graph = rebuilt.graph
    ops = len(graph.nodes) - graph.num_args
    if isinstance(what, int | np.integer):
        if not 0 <= what < ops:
            raise ExplainError(f"op index {what} is out of range: @main has {ops} ops (0..{ops - 1})")
        return graph.num_args + int(what), f"op #{what}", ""
    if isinstance(what, str):
        what = variable_path(what, {t.path for t in (*plan.inputs, *plan.outputs)})
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
    if text.startswith("%"):
        return ssa_node(plan.source.module, rebuilt, text)
    found = ops_matching(graph, text)
    if len(found) == 1:
        return found[0], text, ""
    if not found:
        names = ", ".join(t.path for t in (*plan.inputs, *plan.outputs))
        raise ExplainError(
            f"'{what}' is no argument or result path ({names}), op name or source location of the plan; "
            f"or give an op index 0..{ops - 1} or an SSA name of @main as the plan's module prints it "
            "(%5, %arg0)"
        )
    listed = "; ".join(node_name(graph, v) for v in found[:5]) + ("; ..." if len(found) > 5 else "")
    raise ExplainError(f"'{what}' matches {len(found)} ops ({listed}): pass one's index (op #i -> i)")


def explain(plan: ExecutionPlan, what: str | int, top: int = 3) -> Explanation:
    check_query(what, top)
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


def ssa_node(planned: ir.Module, rebuilt: Rebuilt, name: str) -> tuple[int, str, str]:
    """The node of @main's value `name` (`%5`, `%5#1`, `%arg0`) as the planned module prints it. The
    planned @main is the rebuilt one with sharding constraints added: its n-th other top-level op is op
    #n; a constraint is explained by the value it constrains."""
    from autopar.ir.stages import find_function

    graph = rebuilt.graph
    main = find_function(planned.operation)
    with planned.context:
        state = ir.AsmState(planned.operation)
        block = main.regions[0].blocks[0]
        for i, arg in enumerate(block.arguments):
            if arg.get_name(state) == name:
                return i, name, ""
        ops = [op.operation for op in block.operations if op.operation.name != "func.return"]
        position = {}
        for op in ops:
            if op.name != "sdy.sharding_constraint":
                position[op] = graph.num_args + len(position)
        if len(position) != len(graph.nodes) - graph.num_args:
            raise ExplainError(f"the plan's @main does not match its rebuilt problem: cannot find '{name}'")
        for op in ops:
            names = [r.get_name(state) for r in op.results]
            if name not in names and not (len(names) > 1 and name == names[0].split("#")[0]):
                continue
            if op.name != "sdy.sharding_constraint":
                return position[op], f"{name} (op #{position[op] - graph.num_args})", ""
            value = op.operands[0]
            source = value.get_name(state)
            if isinstance(value.owner, ir.Block):
                index = ir.BlockArgument(value).arg_number
                return index, name, f"{name} is the sharding constraint on {source}: explained is {source}"
            owner = value.owner.operation
            note = f"{name} is the sharding constraint on {source}: explained is {source}"
            return position[owner], f"{name} (op #{position[owner] - graph.num_args})", note
    raise ExplainError(
        f"'{name}' names no value of @main as the plan's module prints it (%0 .. and %arg0 ..; "
        "print it with f.lower(...).as_text())"
    )
