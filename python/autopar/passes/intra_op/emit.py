"""Writes a solved plan as Shardy: the mesh, argument/result shardings, constraints, plan attributes.

XLA honours `sdy.sharding` only on function arguments and results and honours `sdy.sharding_constraint`
ops; it drops `sdy.sharding` on ordinary ops and rejects `sdy.reshard` (docs/platform.md). So every layout
the plan decides inside the body becomes a `sdy.sharding_constraint` on the op's result, except where
Shardy's own propagation cannot get it wrong: an elementwise op whose operands all arrive in the result's
layout without a reshard and whose users all read it in that layout. (Users matter: Shardy propagates
backwards too, so an unconstrained value read by a user in another layout takes that user's layout. That
is how a replicated layer-norm input read sliced by one backward op became sequence-sharded in XLA, with
four all-gathers the plan never had.)
"""

from __future__ import annotations

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import sdy

from autopar.cost import MeshModel
from autopar.ir import attrs
from autopar.passes.intra_op import expected
from autopar.passes.intra_op.graph import Graph, Node
from autopar.passes.intra_op.graph_facts import parameter_results
from autopar.passes.intra_op.problem import Problem
from autopar.passes.intra_op.resharding import reshard_waypoints
from autopar.passes.intra_op.solve import Solution

MESH_NAME = "mesh"
SHARDING_ATTR = "sdy.sharding"


def sharding_attr(layout: np.ndarray, rank: int, mesh: MeshModel) -> ir.Attribute:
    dims = []
    for dim in range(rank):
        axes = [sdy.AxisRefAttr.get(mesh.axis_names[a]) for a in range(len(layout)) if layout[a] == dim]
        dims.append(sdy.DimensionShardingAttr.get(axes, is_closed=True))
    return sdy.TensorShardingAttr.get(MESH_NAME, dims)


def write_plan(
    module_op: ir.Operation,
    graph: Graph,
    problem: Problem,
    solution: Solution,
    mesh: MeshModel,
    remarks: list[str],
) -> None:
    with module_op.context, ir.Location.unknown():
        _write(module_op, graph, problem, solution, mesh, remarks)


def _write(
    module_op: ir.Operation,
    graph: Graph,
    problem: Problem,
    solution: Solution,
    mesh: MeshModel,
    remarks: list[str],
) -> None:
    chosen = solution.strategies
    _insert_mesh(module_op, mesh)
    layouts = [problem.strategies[v].result_layouts for v in range(len(graph.nodes))]

    def result_layout(v: int, r: int) -> np.ndarray:
        return layouts[v][r][chosen[v]]

    func_op = graph.func
    arg_shardings = [
        sharding_attr(result_layout(v, 0), len(graph.nodes[v].result_shapes[0]), mesh)
        for v in range(graph.num_args)
    ]
    _set_func_attrs(func_op, "arg_attrs", arg_shardings)
    # An updated parameter (or optimizer state) leaves in the layout its argument came in: the reshard
    # from its update's layout (priced by the problem's state edge) happens inside the program, never
    # between steps.
    state_arg = {j: v for v, j in parameter_results(graph).items()}
    returned_layouts = [
        result_layout(state_arg[j], 0) if j in state_arg else result_layout(u, r)
        for j, (u, r) in enumerate(graph.returns)
    ]
    result_shardings = [
        sharding_attr(layout, len(graph.nodes[u].result_shapes[r]), mesh)
        for layout, (u, r) in zip(returned_layouts, graph.returns, strict=True)
    ]
    # A value returned in another layout than its own (an updated state going back to its argument's)
    # is constrained to its own: Shardy would otherwise carry the result's layout backwards into it and
    # through every unconstrained op before it (ZeRO-2's optimizer loop: split moments over 8 steps).
    returned_resharded = {
        u
        for layout, (u, r) in zip(returned_layouts, graph.returns, strict=True)
        if not np.array_equal(layout, result_layout(u, r))
    }
    _set_func_attrs(func_op, "res_attrs", result_shardings)
    if any(mesh.shape[a] > 1 for a in range(len(mesh.shape))):
        _constrain_barrier_results(graph, result_layout, mesh)
        for v in range(graph.num_args, len(graph.nodes)):
            node = graph.nodes[v]
            if v in returned_resharded or _needs_constraint(graph, v, problem, chosen, result_layout):
                _constrain_results(node, [result_layout(v, r) for r in range(len(node.result_shapes))], mesh)
        _constrain_reshards(graph, problem, chosen, result_layout, mesh)
        _constrain_state_returns(graph, state_arg, result_layout, mesh)
    _set_module_attrs(module_op, mesh, solution, remarks)
    attrs.set_expected_collectives(
        module_op, expected.expected_collectives(graph, problem, solution.strategies, mesh)
    )


def _needs_constraint(graph: Graph, v: int, problem: Problem, chosen: list[int], result_layout) -> bool:
    node = graph.nodes[v]
    if node.kind == "stablehlo.constant" or not any(node.result_shapes):
        return False
    rule = node.rule
    elementwise = (
        rule is not None
        and not rule.reduction
        and len(node.result_shapes) == 1
        and all(s == node.result_shapes[0] for s in node.operand_shapes)
    )
    if not elementwise:
        return True
    mine = result_layout(v, 0)
    required = problem.strategies[v].operand_layouts
    for k, (u, r) in enumerate(node.operands):
        if not np.array_equal(result_layout(u, r), required[k][chosen[v]]) or not np.array_equal(
            required[k][chosen[v]], mine
        ):
            return True
    for w in node.users:
        user = graph.nodes[w]
        for k, (u, _) in enumerate(user.operands):
            if u == v and not np.array_equal(problem.strategies[w].operand_layouts[k][chosen[w]], mine):
                return True
    return False


def _constrain_reshards(
    graph: Graph, problem: Problem, chosen: list[int], result_layout, mesh: MeshModel
) -> None:
    """Where an op needs an operand in another layout than its producer's, the operand gets a constraint
    to that layout, placed right after the value (one per value and layout, shared by every op that needs
    it, as XLA would share it anyway). XLA then reshards exactly there, and the op itself sees all its
    operands and results in the layouts of its planned strategy: the partitioner has nothing left to
    choose, so the program runs the communication the plan priced."""
    made: dict[tuple, ir.Value] = {}
    block = graph.func.regions[0].blocks[0]
    for v in range(graph.num_args, len(graph.nodes)):
        node = graph.nodes[v]
        op = node.op
        if op is None:
            continue
        for k, (u, r) in enumerate(node.operands):
            required = problem.strategies[v].operand_layouts[k][chosen[v]]
            if np.array_equal(required, result_layout(u, r)) or not node.operand_shapes[k]:
                continue
            value = op.operands[k]
            if not isinstance(value.type, ir.RankedTensorType):
                continue
            # A value read before and after an optimization barrier is resharded on each side, so that
            # no reader skips the barrier (Node.operand_copies; expected.py counts them so).
            key = (u, r, node.operand_copies[k], required.tobytes())
            if key not in made:
                rank = len(node.operand_shapes[k])
                # An argument's reshard is named after it, at the line of the first op that reads it so:
                # the compiled collective then names the tensor and the line that cause it.
                arg = graph.nodes[u]
                where = ir.Location.name(arg.path, op.location) if arg.kind == "arg" and arg.path else None
                # One kind of step per constraint: XLA rematerializes many mixed ones.
                for waypoint in reshard_waypoints(result_layout(u, r), required, mesh.shape):
                    value = _constraint_after(value, waypoint, rank, mesh, block, where)
                made[key] = _constraint_after(value, required, rank, mesh, block, where)
            op.operands[k] = made[key]


def _constrain_barrier_results(graph: Graph, result_layout, mesh: MeshModel) -> None:
    """Each result of an optimization barrier (`Graph.barriers`) is constrained to the layout of the
    value it carries, right after the barrier. Unconstrained, it took the layout of whichever reader
    Shardy propagated from: in a `jax.checkpoint` backward on 2x2x2, one reader's split over (x, y, z)
    made XLA slice the cotangent before the barrier and gather it again after it for two dots, 4
    all-gathers (24 MiB) the plan never had. Reads in other layouts reshard after this constraint
    (`_constrain_reshards`). Runs before the other constraints, on the program as planned."""
    for op, sources in graph.barriers:
        last = op  # the constraints follow the barrier in the order of its results
        for result, (u, r) in zip(op.results, sources, strict=True):
            shape = graph.nodes[u].result_shapes[r]
            if not shape or not isinstance(result.type, ir.RankedTensorType) or not list(result.uses):
                continue
            with ir.InsertionPoint.after(last), op.location:
                last = sdy.ShardingConstraintOp(result, sharding_attr(result_layout(u, r), len(shape), mesh))
            result.replace_all_uses_except(last.result, last.operation)


def _constrain_state_returns(graph: Graph, state_arg: dict[int, int], result_layout, mesh: MeshModel) -> None:
    """An updated parameter whose way back to its argument's layout needs intermediate layouts (see
    `reshard_waypoints`) is returned through constraints to them."""
    block = graph.func.regions[0].blocks[0]
    ret = block.operations[len(block.operations) - 1]
    for j, v in state_arg.items():
        u, r = graph.returns[j]
        value = ret.operands[j]
        rank = len(graph.nodes[u].result_shapes[r])
        for waypoint in reshard_waypoints(result_layout(u, r), result_layout(v, 0), mesh.shape):
            value = _constraint_after(value, waypoint, rank, mesh, block)
        ret.operands[j] = value


def _constraint_after(
    value: ir.Value, layout: np.ndarray, rank: int, mesh: MeshModel, block, where: ir.Location | None = None
) -> ir.Value:
    owner = value.owner
    if isinstance(owner, ir.Block):  # a function argument
        point, location = ir.InsertionPoint.at_block_begin(block), where or ir.Location.unknown()
    else:
        point, location = ir.InsertionPoint.after(owner), owner.location
    with point, location:
        return sdy.ShardingConstraintOp(value, sharding_attr(layout, rank, mesh)).result


def _constrain_results(node: Node, result_layouts: list[np.ndarray], mesh: MeshModel) -> None:
    op = node.op
    assert op is not None
    with ir.InsertionPoint.after(op), op.location:
        for result, layout, shape in zip(op.results, result_layouts, node.result_shapes, strict=True):
            if not shape or not isinstance(result.type, ir.RankedTensorType):
                continue
            constraint = sdy.ShardingConstraintOp(result, sharding_attr(layout, len(shape), mesh))
            result.replace_all_uses_except(constraint.result, constraint.operation)


def _insert_mesh(module_op: ir.Operation, mesh: MeshModel) -> None:
    body = module_op.regions[0].blocks[0]
    axes = [sdy.MeshAxisAttr.get(name, size) for name, size in zip(mesh.axis_names, mesh.shape, strict=True)]
    with ir.InsertionPoint.at_block_begin(body), ir.Location.unknown():
        sdy.MeshOp(MESH_NAME, sdy.MeshAttr.get(axes))


def _set_func_attrs(func_op: ir.Operation, key: str, shardings: list[ir.Attribute]) -> None:
    old = list(ir.ArrayAttr(func_op.attributes[key])) if key in func_op.attributes else []
    dicts = []
    for i, sharding in enumerate(shardings):
        entries = {named.name: named.attr for named in ir.DictAttr(old[i])} if i < len(old) else {}
        entries[SHARDING_ATTR] = sharding
        dicts.append(ir.DictAttr.get(entries))
    func_op.attributes[key] = ir.ArrayAttr.get(dicts)


def _set_module_attrs(
    module_op: ir.Operation, mesh: MeshModel, solution: Solution, remarks: list[str]
) -> None:
    i32 = ir.IntegerType.get_signless(32)
    module_op.attributes["mhlo.num_partitions"] = ir.IntegerAttr.get(i32, mesh.num_devices)
    module_op.attributes["mhlo.num_replicas"] = ir.IntegerAttr.get(i32, 1)
    result = attrs.IntraOpResult(
        mesh_shape=tuple(mesh.shape),
        objective=solution.cost,
        lower_bound=solution.lower_bound,
        solver_status=solution.status,
        peak_memory=int(solution.peak_memory),
        clock_cut=bool(solution.clock_cut),
        remarks=tuple(remarks),
    )
    attrs.set_intra_op_result(module_op, result)
