"""autopar-intra-op: Alpa's intra-op auto-sharding (an ILP over per-op strategies) with Shardy output.

`estimate(module_or_func, mesh_shape, **options)` builds and solves the same problem without writing IR;
`estimate_many` / `PlanningGraph` read the function once and solve it for many meshes (the inter-op planner
costs every layer on every logical mesh of the cluster).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxlib.mlir import ir, passmanager
from jaxlib.mlir.dialects import sdy

from autopar import cost
from autopar.errors import PassError
from autopar.ir.shapes import check_static_shapes, check_unsharded
from autopar.ir.stages import find_function
from autopar.passes.intra_op import config as config_lib
from autopar.passes.intra_op import conflicts, emit, graph, problem, solve
from autopar.passes.registry import Option, register_pass
from autopar.solver import StrategyProblem

log = logging.getLogger("autopar")

DESCRIPTION = """
Chooses how every tensor of `@main` is sharded over a logical device mesh of 1 to 3 axes, minimising
compute + communication time under an alpha-beta cost model and an optional per-device memory budget
(Alpa's intra-op pass). Strategies come from Shardy's per-op sharding rules: a strategy assigns each mesh
axis to one factor of the op; a sharded reduction factor costs an all-reduce (or reduce-scatter), an operand
whose producer's layout differs costs a reshard. Arguments marked `autopar.batch` have their dim 0 as batch
dim, arguments marked `autopar.parameter` are parameters or optimizer state (for zero-stage and
allow-replicated-parameters). Ops Shardy has no rule for stay replicated (listed in `autopar.remarks`).

Writes `sdy.mesh @mesh`, `sdy.sharding` on @main's arguments and results, `sdy.sharding_constraint` on op
results whose layout the plan decides, `mhlo.num_partitions`, and the module attributes
`autopar.mesh_shape`, `autopar.objective` (seconds), `autopar.lower_bound`, `autopar.solver_status`,
`autopar.peak_memory` (bytes per device).

Planning stops on counted work (`planning-budget`), so the same module and options give the same plan on
any machine and under any load. `time-limit` only caps the wall clock: when it stops a phase first, the
module gets `autopar.clock_cut` and a one-line warning is logged (the plan may then differ between runs).

Before (mesh=1x8):
  func.func public @main(%arg0: tensor<64x256xf32> {autopar.batch}, %arg1: tensor<256x256xf32>)
      -> tensor<64x256xf32> {
    %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0]
        : (tensor<64x256xf32>, tensor<256x256xf32>) -> tensor<64x256xf32>
    return %0 : tensor<64x256xf32>
  }

After:
  sdy.mesh @mesh = <["x"=1, "y"=8]>
  func.func public @main(%arg0: tensor<64x256xf32> {autopar.batch, sdy.sharding = #sdy.sharding<@mesh,
      [{"y"}, {}]>}, %arg1: tensor<256x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>})
      -> (tensor<64x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"y"}, {}]>}) {
    %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] ...
    %1 = sdy.sharding_constraint %0 <@mesh, [{"y"}, {}]> : tensor<64x256xf32>
    return %1 : tensor<64x256xf32>
  }
"""

OPTIONS = [
    Option("mesh", str, "1x8", "logical mesh shape, outermost axis first: 8, 2x4 or 2x2x2"),
    Option("axis-names", str, "x,y,z", "comma list of mesh axis names (the first len(mesh) are used)"),
    Option("mesh-alpha", str, "", "per-axis collective latency in seconds: one value or a comma list"),
    Option(
        "mesh-beta", str, "", "per-axis seconds per byte: one value or a comma list (default: last axis fast)"
    ),
    Option("device-flops", float, cost.DEFAULT_DEVICE_FLOPS, "peak FLOP/s of one device"),
    Option(
        "device-memory-bandwidth",
        float,
        cost.DEFAULT_DEVICE_MEMORY_BANDWIDTH,
        "bytes/s between a device and its memory",
    ),
    Option("cluster-profile", str, "", "JSON file overriding device and mesh costs (see docs/intra_op.md)"),
    Option(
        "widen-collectives",
        bool,
        False,
        "price collectives of bf16 as f32 and of 8- and 4-bit floats as f16, as XLA's CPU compiler runs "
        "them (parallelize sets it on CPU devices)",
    ),
    Option("memory-budget", int, 0, "bytes per device the plan may keep live at once; 0 = no limit"),
    Option("solver", str, "auto", "auto, ilp or heuristic", choices=config_lib.SOLVERS),
    Option(
        "planning-budget",
        float,
        config_lib.DEFAULT_PLANNING_BUDGET,
        "planning work in seconds of a 2-core machine, counted (not timed): the plan depends only on it",
    ),
    Option(
        "time-limit",
        float,
        config_lib.DEFAULT_TIME_LIMIT,
        "wall-clock safety cap on planning; when it cuts, the module gets autopar.clock_cut",
    ),
    Option("force-data-parallel", bool, False, "shard every batch dim over all mesh axes"),
    Option("force-batch-dim-to-mesh-dim", int, -1, "shard every batch dim over this mesh axis (-1 = off)"),
    Option("allow-all-gather", bool, True, "allow reshards that all-gather"),
    Option("allow-all-to-all", bool, True, "allow all-to-all reshards (else costed as all-gather + slice)"),
    Option("prefer-reduce-scatter", bool, False, "also consider reduce-scattering partial sums"),
    Option(
        "zero-stage", int, 0, "0, 2 (shard optimizer state) or 3 (shard parameters too)", choices=(0, 2, 3)
    ),
    Option("allow-replicated-parameters", bool, True, "allow autopar.parameter arguments to be replicated"),
    Option(
        "allow-recompute-heavy-op",
        bool,
        False,
        "allow dots and convolutions to run replicated over a mesh axis that could split them",
    ),
    Option(
        "plan-family",
        str,
        "",
        "no search: plan this family, one role per mesh axis of size > 1 (data, model, zero2, zero3; "
        "e.g. data,model); empty = solve",
    ),
]


@register_pass(
    argument="autopar-intra-op",
    summary="Shard @main over a device mesh by solving Alpa's intra-op strategy ILP; write Shardy shardings",
    description=DESCRIPTION,
    options=OPTIONS,
    check=config_lib.from_options,
)
def intra_op(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
    start = time.perf_counter()
    config = config_lib.from_options(options)
    func_op = _main_func(module_op)
    drop_empty_meshes(module_op)
    _check_unannotated(module_op, config)
    added_rules = _populate_rules(module_op)
    try:
        g = graph.read_function(func_op)
        prob = problem.build(g, config)
        solution = _solve_or_explain(g, prob, _with_solve_time_left(config, start))
        remarks = prob.remarks + _unused_axes(prob, solution, config)
        emit.write_plan(module_op, g, prob, solution, config.mesh, remarks)
        if solution.clock_cut:
            log.warning(
                "autopar-intra-op: time-limit=%g s stopped planning before planning-budget=%g s of work "
                "was done (a slow or loaded machine); this plan may differ between runs",
                config.time_limit,
                config.planning_budget,
            )
    finally:
        if added_rules:
            _drop_rules(module_op)


class PlanningGraph:
    """The mesh-independent half of planning one function, done once: Shardy's rules read into the op
    graph (`graph.read_function`: values, producers, users, factor maps, shapes), then `estimate(mesh)` for
    as many logical meshes as wanted (the inter-op planner costs every layer on ~50 of them). The IR keeps
    its meaning (rules this object attached are dropped again; CHLO ops are rewritten as StableHLO). The
    object holds the module it reads: its nodes keep their ops for the locations in remarks, and a module
    freed under them made reading one a segfault.
    """

    def __init__(self, module_or_func: Any):
        module_op, func_op = _module_and_func(module_or_func)
        self.module = module_or_func  # the graph's nodes point into it: it must outlive them
        added_rules = _populate_rules(module_op)
        try:
            self.graph = graph.read_function(func_op)
        finally:
            if added_rules:
                _drop_rules(module_op)

    def estimate(self, mesh_shape: tuple[int, ...] | str, **options: Any) -> tuple[float, int, str]:
        """As the module-level `estimate`; `time-limit` bounds this mesh's build + solve."""
        return self._estimate(mesh_shape, time.perf_counter(), options)

    def strategy_problem(
        self, mesh_shape: tuple[int, ...] | str, name: str = "", **options: Any
    ) -> StrategyProblem:
        """As the module-level `strategy_problem`."""
        config = config_lib.from_options({**options, "mesh": mesh_shape})
        prob = problem.build(self.graph, config)
        return problem.to_solver_problem(prob, config.memory_budget or None, name=name)

    def _estimate(
        self, mesh_shape: tuple[int, ...] | str, start: float, options: dict
    ) -> tuple[float, int, str]:
        config = config_lib.from_options({**options, "mesh": mesh_shape})
        prob = problem.build(self.graph, config)
        config = _with_solve_time_left(config, start)
        solution = solve.solve_as_configured(prob, self.graph, config)
        if not solution.feasible:  # "infeasible" (proven) or "unknown" (nothing found in time)
            return float("inf"), prob.min_peak_memory(), solution.status
        return solution.cost, solution.peak_memory, solution.status


def estimate(
    module_or_func: Any, mesh_shape: tuple[int, ...] | str, **options: Any
) -> tuple[float, int, str]:
    """(objective seconds, peak memory bytes per device, solver status) of the best plan; nothing is written
    into the IR (CHLO ops are rewritten as StableHLO, as `PlanningGraph` does).

    `options` are the pass options with underscores (`memory_budget=2**30`, `zero_stage=2`). An infeasible
    problem (memory budget too small) returns (inf, minimum achievable peak memory, 'infeasible').
    To cost one function on several meshes, `estimate_many` (or a `PlanningGraph`) reads it only once.
    """
    start = time.perf_counter()
    # The read counts against this call's time limit, as the pass's does.
    return PlanningGraph(module_or_func)._estimate(mesh_shape, start, options)


def strategy_problem(
    module_or_func: Any, mesh_shape: tuple[int, ...] | str, name: str = "", **options: Any
) -> StrategyProblem:
    """The strategy problem autopar-intra-op hands `autopar.solver` for this function, mesh and options (the
    pass options with underscores; `memory_budget` becomes its usage limit, 0 none), in the contest's form:
    `strategy_problem(module, "2x4").to_json("gpt.json.gz")`. The function must be what the pass sees: an
    @main whose arguments are marked `autopar.batch` / `autopar.parameter`, after autopar-inline. `name`
    names the problem. The pass solves exactly this problem (warm-started from its plan families,
    passes/intra_op/solve.py)."""
    return PlanningGraph(module_or_func).strategy_problem(mesh_shape, name=name, **options)


def estimate_many(
    module_or_func: Any, meshes: Sequence[tuple[int, ...] | str], **options: Any
) -> list[tuple[float, int, str]]:
    """`estimate` on every mesh of `meshes` (same options), reading the function once."""
    planning = PlanningGraph(module_or_func)
    return [planning.estimate(mesh, **options) for mesh in meshes]


def _with_solve_time_left(config: config_lib.PlanConfig, start: float) -> config_lib.PlanConfig:
    """`time-limit` caps the whole plan's wall time: the solver's cap is what building the problem left,
    but never less than a tenth of the limit."""
    left = max(config.time_limit - (time.perf_counter() - start), 0.1 * config.time_limit)
    return dataclasses.replace(config, time_limit=left)


def _solve_or_explain(g: graph.Graph, prob: problem.Problem, config: config_lib.PlanConfig) -> solve.Solution:
    budget = config.memory_budget
    if budget and prob.min_peak_memory() > budget:
        raise PassError(
            f"memory-budget={budget} bytes per device is below the {prob.min_peak_memory()} bytes "
            f"per device that every plan needs on mesh {'x'.join(map(str, config.mesh.shape))}; "
            "raise the budget or use a bigger mesh"
        )
    solution = solve.solve_as_configured(prob, g, config)
    if config.plan_family:
        if not solution.feasible:
            raise PassError(
                f"plan-family={','.join(config.plan_family)}: the family's plan needs more than "
                f"memory-budget={budget} bytes per device"
            )
        return solution
    if solution.status == "unknown":
        raise PassError(
            "no sharding plan found within the time limit (none was proven impossible); raise time-limit"
        )
    if not solution.feasible:
        raise PassError(conflicts.explain(g, prob, config))
    return solution


def _main_func(module_op: ir.Operation) -> ir.Operation:
    main = find_function(module_op)
    if main is not None:
        return main.operation
    raise PassError("autopar-intra-op needs a func.func @main (the entry point JAX lowers to)")


def _module_and_func(module_or_func: Any) -> tuple[ir.Operation, ir.Operation]:
    if isinstance(module_or_func, ir.Module):
        module_op = module_or_func.operation
        return module_op, _main_func(module_op)
    op = module_or_func.operation if hasattr(module_or_func, "operation") else module_or_func
    if op.name == "builtin.module":
        return op, _main_func(op)
    if op.name == "func.func":
        return op.parent, op
    raise TypeError(f"estimate() takes an ir.Module, a builtin.module or a func.func, not '{op.name}'")


def _check_unannotated(module_op: ir.Operation, config: config_lib.PlanConfig) -> None:
    check_unsharded(module_op, "autopar-intra-op")
    if "mhlo.num_partitions" in module_op.attributes:
        partitions = ir.IntegerAttr(module_op.attributes["mhlo.num_partitions"]).value
        if partitions not in (1, config.mesh.num_devices):
            raise PassError(
                f"the module was lowered for {partitions} partitions but mesh "
                f"{'x'.join(map(str, config.mesh.shape))} has {config.mesh.num_devices} devices"
            )


def _unused_axes(prob: problem.Problem, solution: solve.Solution, config: config_lib.PlanConfig) -> list[str]:
    """A remark per mesh axis of size > 1 that the plan splits nothing over, saying why."""
    used: set[int] = set()
    for s, choice in zip(prob.strategies, solution.strategies, strict=True):
        used.update(int(a) for a in np.flatnonzero(s.assignment[choice] >= 0))
    remarks = []
    kept_whole = any("kept replicated" in r for r in prob.remarks)
    for axis in config.active_axes:
        if axis in used:
            continue
        name, size = config.mesh.axis_names[axis], config.mesh.shape[axis]
        why = (
            "running its work replicated is cheaper under the cost model (allow-recompute-heavy-op=true)"
            if config.allow_recompute_heavy_op
            else f"no dot or convolution has a dimension that {size} divides"
            + (", or those that do are kept replicated (see the remarks above)" if kept_whole else "")
        )
        remarks.append(f"mesh axis '{name}' ({size} devices) splits nothing: {why}")
    return remarks


def drop_empty_meshes(module_op: ir.Operation) -> None:
    """JAX writes `sdy.mesh @empty_mesh = <[]>` and constraints on it into modules that shard nothing (a
    `jax.random.key` argument, say): they say "unsharded", which is what planning starts from, so they go.
    Maximal meshes (`<[], device_ids=[0]>`, where `jax.debug.print` runs its callback) have no axes either
    and stay: they place a side effect, not a layout."""
    body = module_op.regions[0].blocks[0]
    empty = set()
    for op in body.operations:
        if op.operation.name == "sdy.mesh":
            mesh = sdy.MeshAttr(op.attributes["mesh"])
            if not list(mesh.axes) and not list(mesh.device_ids):
                empty.add(ir.StringAttr(op.attributes["sym_name"]).value)
    if not empty:
        return
    doomed = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "sdy.sharding_constraint":
            sharding = sdy.TensorShardingAttr(op.attributes["sharding"])
            if isinstance(sharding.mesh_or_ref, ir.FlatSymbolRefAttr) and sharding.mesh_or_ref.value in empty:
                doomed.append(op)
        return ir.WalkResult.ADVANCE

    module_op.walk(visit, walk_order=ir.WalkOrder.PRE_ORDER)
    for op in doomed:
        op.results[0].replace_all_uses_with(op.operands[0])
    for op in reversed(doomed):  # every use is rewired before anything is erased
        op.erase()
    if _mentions(module_op, empty):
        return  # still named somewhere (an argument's sharding): leave the symbol
    for op in list(body.operations):
        if op.operation.name == "sdy.mesh" and ir.StringAttr(op.attributes["sym_name"]).value in empty:
            op.operation.erase()


def _mentions(module_op: ir.Operation, names: set[str]) -> bool:
    text = module_op.get_asm(enable_debug_info=False)
    return any(f"<@{name}," in text for name in names)


def _has_rules(module_op: ir.Operation) -> bool:
    found = False

    def visit(op: ir.Operation) -> ir.WalkResult:
        nonlocal found
        if graph.RULE_ATTR in op.attributes:
            found = True
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module_op.walk(visit, walk_order=ir.WalkOrder.PRE_ORDER)
    return found


def _populate_rules(module_op: ir.Operation) -> bool:
    """Attaches Shardy's sharding rules to every op; True when this call added them (so they get dropped).

    CHLO ops (`chlo.square`, `chlo.erf_inv`, `chlo.top_k`: LayerNorm, random normals) are first rewritten as
    the StableHLO they stand for, as XLA would rewrite them anyway: Shardy has rules for StableHLO only (for
    a CHLO op it warns "unknown to SDY sharding rule registry" and nothing could be planned across it)."""
    if _has_rules(module_op):
        return False
    check_static_shapes(module_op)
    _legalize_chlo(module_op)
    _run(module_op, "builtin.module(func.func(sdy-populate-op-sharding-rules))")
    return True


def _legalize_chlo(module_op: ir.Operation) -> None:
    found = False

    def visit(op: ir.Operation) -> ir.WalkResult:
        nonlocal found
        if op.name.startswith("chlo."):
            found = True
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module_op.walk(visit, walk_order=ir.WalkOrder.PRE_ORDER)
    if found:
        _run(module_op, "builtin.module(func.func(chlo-legalize-to-stablehlo))")


def _drop_rules(module_op: ir.Operation) -> None:
    _run(module_op, "builtin.module(func.func(sdy-drop-sharding-rules))")


def _run(module_op: ir.Operation, pipeline: str) -> None:
    pm = passmanager.PassManager.parse(pipeline, context=module_op.context)
    pm.run(module_op)


__all__ = ["PlanningGraph", "estimate", "estimate_many", "intra_op", "strategy_problem"]
