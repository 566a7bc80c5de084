"""autopar-shard-stages: shard every pipeline stage function on its own logical mesh (autopar-intra-op)."""

from __future__ import annotations

import types

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import sdy

from autopar.errors import AutoparError, PassError
from autopar.ir import attrs
from autopar.ir.stages import find_function, mark_as_main, referenced_meshes, stage_call, stage_module
from autopar.passes import registry
from autopar.passes.intra_op import OPTIONS as INTRA_OP_OPTIONS
from autopar.passes.intra_op import config as config_lib
from autopar.passes.registry import option_text, register_pass

INTRA_OP_PASS = "autopar-intra-op"

DESCRIPTION = """
Shards every stage function `autopar-inter-op` outlined (`autopar.stage`, `autopar.mesh`) over its
logical mesh (`autopar.mesh.logical_shape`, p data x q tensor parallel) with `autopar-intra-op` and the
options given here (every intra-op option but `mesh`, which each stage's plan sets), so that the module
says how every stage runs and the runtime only compiles. Each stage function is planned as a module of
its own whose @main is a copy of it; its shardings come back on a mesh named after the stage
(`@stage_<k>_mesh`, shared by the stage's forward, backward and apply parts). A stage on one device
gets the replicated layout on a one-device mesh. Of the intra-op result attributes of each stage's plan
only the remarks are kept, as `autopar.remarks` on the stage function (PipeshardExecutionPlan.remarks).
With options that split batches (force-data-parallel, zero-stage=2/3, force-batch-dim-to-mesh-dim), each
stage argument that holds one row per example (a batch argument of @main, or a stage's result labelled
"concat:0") is marked `autopar.batch` first: a stage function has no batch argument of its own, and those
options would otherwise leave the stage replicated.

Before (after autopar-inter-op{cluster=1x8 num-stages=2}):
  func.func private @stage_0_forward(%arg0: tensor<8x256xf32>, %arg1: tensor<256x256xf32>)
      -> tensor<8x256xf32> attributes {autopar.mesh = {device_ids = array<i64: 0, 1, 2, 3>,
      logical_shape = array<i64: 4, 1>, shape = array<i64: 1, 4>}, autopar.part = "forward",
      autopar.stage = 0 : i64} {...}

After:
  sdy.mesh @stage_0_mesh = <["x"=4, "y"=1]>
  func.func private @stage_0_forward(%arg0: tensor<8x256xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh,
      [{"x"}, {}]>}, %arg1: tensor<256x256xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, [{}, {}]>})
      -> (tensor<8x256xf32> {sdy.sharding = #sdy.sharding<@stage_0_mesh, [{"x"}, {}]>}) attributes
      {autopar.mesh = ..., autopar.part = "forward", autopar.stage = 0 : i64} {
    ... sdy.sharding_constraint %0 <@stage_0_mesh, [{"x"}, {}]> ...
  }
"""

_INTRA = tuple(o for o in INTRA_OP_OPTIONS if o.name != "mesh")
OPTIONS = (
    *_INTRA,
    registry.Option(
        "stage-options",
        str,
        "",
        "per-stage autopar-intra-op options over the ones above, 'k:name=value name=value;k:...' "
        "(ManualStageOption's submesh_autosharding_option_dicts)",
    ),
)


def stage_overrides(text: str) -> dict[int, list[tuple[str, str]]]:
    """'k:name=value name=value;...' -> {k: [(name, value)]}; names must be intra-op options (not mesh)."""
    out: dict[int, list[tuple[str, str]]] = {}
    names = {o.name for o in _INTRA}
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        stage, _, assignments = entry.partition(":")
        if not stage.strip().isdigit():
            raise PassError(f"stage-options entry '{entry}' is not k:name=value ... (k: a stage index)")
        pairs = []
        for assignment in assignments.split():
            name, eq, value = assignment.partition("=")
            if not eq or name not in names:
                raise PassError(
                    f"stage-options entry '{entry}': '{assignment}' is not name=value with one of "
                    f"autopar-intra-op's options ({', '.join(sorted(names))})"
                )
            pairs.append((name, value))
        out[int(stage)] = pairs
    return out


def _check_options(options: types.SimpleNamespace) -> None:
    # Stage meshes have two axes (p data x q tensor parallel): check per-axis lists against that.
    base = {k: v for k, v in vars(options).items() if k != "stage_options"}
    config_lib.from_options(types.SimpleNamespace(**base, mesh="1x2"))
    intra = registry.lookup(INTRA_OP_PASS)
    assert intra is not None
    for stage, pairs in stage_overrides(options.stage_options).items():
        try:
            intra.parse_options([("mesh", "1x2"), *pairs])
        except AutoparError as err:
            raise PassError(f"stage-options for stage {stage}: {err}") from None


@register_pass(
    argument="autopar-shard-stages",
    summary="Shard every pipeline stage function over its logical mesh with autopar-intra-op",
    description=DESCRIPTION,
    options=OPTIONS,
    check=_check_options,
)
def shard_stages(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
    body = module_op.regions[0].blocks[0]
    stages = [
        op.operation
        for op in body.operations
        if op.operation.name == "func.func" and attrs.get_stage_mesh(op) is not None
    ]
    if not stages:
        raise PassError(
            f"the module has no stage functions (no {attrs.MESH}): run autopar-inter-op before "
            "autopar-shard-stages"
        )
    for fn in stages:
        if referenced_meshes(fn):
            raise PassError(
                f"@{_name(fn)} is already sharded: autopar-shard-stages plans unsharded stage functions",
                fn.location,
            )
    for fn in stages:
        _shard(module_op, fn, options)


def _name(fn: ir.Operation) -> str:
    return ir.StringAttr(fn.attributes["sym_name"]).value


def _shard(module_op: ir.Operation, fn: ir.Operation, options: types.SimpleNamespace) -> None:
    name, index, part = _name(fn), attrs.get_stage(fn), attrs.get_part(fn)
    mesh = attrs.get_stage_mesh(fn)
    assert mesh is not None
    if index is None or part is None:
        raise PassError(f"@{name} has {attrs.MESH} but no {attrs.STAGE}/{attrs.PART}", fn.location)
    logical = mesh.logical_shape if mesh.logical_shape is not None else (len(mesh.device_ids),)
    stage = stage_module(fn)
    if len(mesh.device_ids) > 1:
        intra = registry.lookup(INTRA_OP_PASS)
        assert intra is not None
        stage_options = stage_intra_op_options(options, index, logical)
        _mark_arguments(module_op, fn, part, stage, stage_options)
        try:
            intra.run(stage.operation, stage_options)
        except PassError as err:
            mesh_text = "x".join(map(str, logical))
            raise PassError(f"@{name} on its {mesh_text} mesh: {err.args[0]}", err.location) from None
    else:
        _replicate(stage)
    stage_attributes = attrs.stage_attributes(index, part, mesh)
    # The stage module's remarks (ops left replicated, ...) would go with it: its function keeps them.
    if remarks := attrs.get_remarks(stage.operation):
        stage_attributes[attrs.REMARKS] = attrs.remarks_attr(remarks)
    _copy_back(module_op, fn, stage, f"stage_{index}_mesh", stage_attributes)


def _mark_arguments(
    module_op: ir.Operation, fn: ir.Operation, part: str, stage: ir.Module, options: types.SimpleNamespace
) -> None:
    """Marks the stage module's arguments as @main's are marked, where the options read the marks: a stage
    function has none of its own (ir/stages.py `mark_as_main`). Data-parallel options split `autopar.batch`
    arguments (without the marks the stage ran every example on every device); ZeRO and
    allow-replicated-parameters=false shard `autopar.parameter` ones, which a forward or backward part
    reads as they are (the apply part, which updates them, recognises its state without marks)."""
    forced = options.force_data_parallel, options.zero_stage, options.force_batch_dim_to_mesh_dim
    examples = config_lib.splits_batches(*forced)
    parameters = part != "apply" and config_lib.restricts_parameters(
        options.allow_replicated_parameters, options.zero_stage
    )
    if examples or parameters:
        call, producer = stage_call(module_op, fn)
        main, planned = find_function(module_op), find_function(stage.operation)
        mark_as_main(planned, list(call.operands), main, producer, examples=examples, parameters=parameters)


def stage_intra_op_options(
    options: types.SimpleNamespace, index: int, logical: tuple[int, ...]
) -> types.SimpleNamespace:
    """The autopar-intra-op options stage `index` is sharded with on its `logical` mesh: this pass's
    options with the stage's `stage-options` over them (also what `PipeshardExecutionPlan.explain` re-solves
    with)."""
    intra = registry.lookup(INTRA_OP_PASS)
    assert intra is not None
    given = dict(stage_overrides(options.stage_options).get(index, []))
    assignments = [("mesh", "x".join(map(str, logical)))]
    assignments += [(o.name, given.get(o.name, option_text(getattr(options, o.attr_name)))) for o in _INTRA]
    return intra.parse_options(assignments)


def _replicate(stage: ir.Module) -> None:
    """One device: every argument and result replicated on a one-device mesh (what the plan would say)."""
    from autopar.runtime import shardings as sh  # IR helpers only: loaded late, they import jax

    sh.replicate_main(stage, "mesh", 1)


def _copy_back(
    module_op: ir.Operation,
    fn: ir.Operation,
    stage: ir.Module,
    mesh_name: str,
    stage_attributes: dict[str, ir.Attribute],
) -> None:
    """Replaces `fn` by the planned @main of `stage`, its mesh renamed `mesh_name` in `module_op`."""
    stage_body = stage.body
    planned_mesh = None
    for op in stage_body.operations:
        if op.operation.name == "sdy.mesh":
            if ir.StringAttr(op.attributes["sym_name"]).value != "mesh":
                continue
            planned_mesh = op.attributes["mesh"]
        elif op.operation.name == "func.func":
            planned = op.operation
    if planned_mesh is None:
        raise PassError(f"the plan of @{_name(fn)} wrote no sdy.mesh @mesh")
    ir.SymbolTable.replace_all_symbol_uses("mesh", mesh_name, stage.operation)
    body = module_op.regions[0].blocks[0]
    existing = None
    first_func = None
    for op in body.operations:
        if op.operation.name == "sdy.mesh" and ir.StringAttr(op.attributes["sym_name"]).value == mesh_name:
            existing = op.attributes["mesh"]
        if first_func is None and op.operation.name == "func.func":
            first_func = op.operation
    if existing is None:
        with ir.InsertionPoint(first_func):  # after the module's other meshes, before its functions
            sdy.MeshOp(mesh_name, planned_mesh)
    elif str(existing) != str(planned_mesh):
        raise PassError(
            f"@{_name(fn)} was planned on {planned_mesh} but its stage's other parts on {existing}",
            fn.location,
        )
    with ir.InsertionPoint(fn):
        clone = planned.clone()
    clone.attributes["sym_name"] = fn.attributes["sym_name"]
    clone.attributes["sym_visibility"] = ir.StringAttr.get("private")
    for key, value in stage_attributes.items():
        clone.attributes[key] = value
    fn.erase()
