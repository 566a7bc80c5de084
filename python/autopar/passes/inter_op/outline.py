"""Outlining groups of @main's ops into private stage functions called in order from @main.

docs/platform.md: erase replaced ops in reverse order and only once every use is rewired (erasing an op
whose results still have uses segfaults). Ops that need no input (free: constants, iota, broadcasts of
constants) are cloned into every group that reads them rather than passed between stages; so are
replicable ops (tiny values computed from @main's arguments alone, layers.py `replicable_apply_ops`), which
stay in their own group as well.
"""

from __future__ import annotations

import dataclasses

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import func

from autopar.errors import PassError
from autopar.ir import attrs
from autopar.ir.cloning import clone_ops, outer_operands
from autopar.passes.inter_op.graph import Graph
from autopar.passes.inter_op.layers import replicable_apply_ops


@dataclasses.dataclass
class Group:
    """Ops outlined into one function (node indices in program order) and its attributes."""

    name: str
    nodes: list[int]
    attributes: dict[str, ir.Attribute]


def outline(
    graph: Graph, groups: list[Group], free: list[bool], part: list[str] | None = None
) -> list[func.FuncOp]:
    """Outlines `groups` (in call order) out of graph.fn; returns the new functions. Free ops, and with
    each node's `part` the replicable apply ops, that a group reads from outside are cloned into it."""
    nodes = graph.nodes
    replicable = replicable_apply_ops(graph, part, free) if part is not None else [False] * len(nodes)
    clonable = [f or r for f, r in zip(free, replicable, strict=True)]
    _adopt_returned_free_ops(graph, groups, free)
    group_of = [-1] * len(nodes)
    for g, group in enumerate(groups):
        for i in group.nodes:
            group_of[i] = g
    missing = [i for i in range(len(nodes)) if group_of[i] < 0 and not free[i]]
    if missing:
        raise PassError(
            "an op belongs to no stage (internal: run autopar-cluster-layers first)",
            nodes[missing[0]].op.location,
        )
    _check_call_order(graph, groups, group_of, clonable)
    block = graph.fn.regions[0].blocks[0]
    ret = block.operations[len(block.operations) - 1]
    returned = set(ret.operands)
    main_values: dict[ir.Value, ir.Value] = {}  # original value -> value in @main after outlining
    functions = []
    module_block = graph.fn.operation.parent.regions[0].blocks[0]
    for group in groups:
        inputs, outputs = _interface(graph, group, clonable, returned)
        fn = _build_function(graph, group, inputs, outputs, clonable, module_block)
        functions.append(fn)
        with ir.InsertionPoint(ret), ret.location:
            call = func.CallOp(fn, [main_values.get(v, v) for v in inputs])
        results = [call.results[k] for k in range(len(outputs))] if outputs else []
        for old, new in zip(outputs, results, strict=True):
            main_values[old] = new
    for k, v in enumerate(list(ret.operands)):
        if v in main_values:
            ret.operands[k] = main_values[v]
        elif isinstance(v, ir.OpResult):
            raise PassError("a returned value comes from an op that is not outlined", ret.location)
    for node in reversed(nodes):
        node.op.erase()
    return functions


def _adopt_returned_free_ops(graph: Graph, groups: list[Group], free: list[bool]) -> None:
    """A returned value that needs no input (a constant metric, `x.shape[0]` as an array) is in no group,
    and would have nothing to compute it: the first group (the first stage's forward part) computes it,
    once per micro-batch as the step it stands for did, so it combines over them as labelled."""
    if not groups:
        return
    grouped = {i for group in groups for i in group.nodes}
    block = graph.fn.regions[0].blocks[0]
    ret = block.operations[len(block.operations) - 1]
    adopted = []
    for v in ret.operands:
        if isinstance(v, ir.OpResult):
            i = _index_of(graph, v.owner)
            if free[i] and i not in grouped and i not in adopted:
                adopted.append(i)
    groups[0].nodes = sorted(groups[0].nodes + adopted)


def _check_call_order(graph: Graph, groups: list[Group], group_of: list[int], free: list[bool]) -> None:
    for i, node in enumerate(graph.nodes):
        if free[i]:
            continue
        for p in node.operands:
            if not free[p] and group_of[p] > group_of[i]:
                raise PassError(
                    f"{groups[group_of[i]].name} reads a value computed later, by "
                    f"{groups[group_of[p]].name}: the layer assignment breaks the stage order (check the "
                    f"{attrs.LAYER} attributes, or place boundaries by hand)",
                    node.op.location,
                )


def _interface(
    graph: Graph, group: Group, clonable: list[bool], returned: set
) -> tuple[list[ir.Value], list[ir.Value]]:
    """Values the group reads from outside (args and other groups' results; what the clonable ops it
    copies read) and those it must return (a clonable op's results only to @main: other groups copy it)."""
    members = set(group.nodes)
    copied = set(_clone_closure(graph, group, clonable))
    inputs: list[ir.Value] = []
    seen: set = set()
    for i in sorted(members | copied):
        for v in outer_operands(graph.nodes[i].op):
            if v in seen:
                continue
            source = v.owner if isinstance(v, ir.OpResult) else None
            if source is not None:
                index = _index_of(graph, source)
                if index in members or index in copied:
                    continue
            seen.add(v)
            inputs.append(v)
    outputs: list[ir.Value] = []
    for i in group.nodes:
        node = graph.nodes[i]
        if not (set(node.users) - members) and not any(r in returned for r in node.op.results):
            continue
        for r in node.op.results:
            outside = not clonable[i] and any(_user_outside(graph, u, members) for u in r.uses)
            if r in returned or outside:
                outputs.append(r)
    return inputs, outputs


def _user_outside(graph: Graph, use: ir.OpOperand, members: set[int]) -> bool:
    owner = use.owner
    top = owner
    while top.parent is not None and top.parent.operation.name != "func.func":
        top = top.parent
    if top.name == "func.return":
        return False
    return _index_of(graph, top) not in members


def _index_of(graph: Graph, op: ir.Operation) -> int:
    return graph.index[op.operation if hasattr(op, "operation") else op]


def _clone_closure(graph: Graph, group: Group, clonable: list[bool]) -> list[int]:
    """The clonable ops outside the group that it reads, directly or through each other."""
    members = set(group.nodes)
    needed: set[int] = set()
    stack = [p for i in group.nodes for p in graph.nodes[i].operands if clonable[p] and p not in members]
    while stack:
        p = stack.pop()
        if p not in needed:
            needed.add(p)
            stack.extend(q for q in graph.nodes[p].operands if clonable[q] and q not in members)
    return sorted(needed)


def _build_function(
    graph: Graph,
    group: Group,
    inputs: list[ir.Value],
    outputs: list[ir.Value],
    clonable: list[bool],
    module_block: ir.Block,
) -> func.FuncOp:
    with ir.InsertionPoint(module_block), graph.fn.location:
        fn = func.FuncOp(group.name, ([v.type for v in inputs], [v.type for v in outputs]))
    fn.attributes["sym_visibility"] = ir.StringAttr.get("private")
    for key, value in group.attributes.items():
        fn.attributes[key] = value
    with graph.fn.location:
        entry = fn.add_entry_block()
    mapping: dict[ir.Value, ir.Value] = dict(zip(inputs, entry.arguments, strict=True))
    order = sorted(set(_clone_closure(graph, group, clonable)) | set(group.nodes))
    with ir.InsertionPoint(entry), graph.fn.location:
        clone_ops((graph.nodes[i].op for i in order), mapping)
        func.ReturnOp([mapping[v] for v in outputs])
    return fn
