"""The functions of a module: finding @main, the stage functions @main calls, and stage functions as
modules of their own (what `autopar-shard-stages` plans and the runtime compiles)."""

from __future__ import annotations

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import sdy

from autopar.ir import attrs


def find_function(module_op: ir.Operation | ir.OpView, name: str = "main") -> ir.OpView | None:
    """The top-level func.func named `name` (None when there is none; each caller says what it needs)."""
    for op in module_op.regions[0].blocks[0].operations:
        if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == name:
            return op
    return None


def stage_calls(module: ir.Module | ir.Operation) -> list[tuple[ir.Operation, ir.OpView]]:
    """(call op, callee) for every `func.call` of @main whose callee is a stage function
    (`autopar.stage`), in call order."""
    module_op = module.operation
    main = find_function(module_op)
    functions = {
        ir.StringAttr(op.attributes["sym_name"]).value: op
        for op in module_op.regions[0].blocks[0].operations
        if op.operation.name == "func.func"
    }
    calls = []
    for op in main.regions[0].blocks[0].operations if main is not None else ():
        op = op.operation
        if op.name == "func.call":
            callee = functions[ir.FlatSymbolRefAttr(op.attributes["callee"]).value]
            if attrs.get_stage(callee) is not None:
                calls.append((op, callee))
    return calls


def stage_call(module: ir.Module | ir.Operation, fn: ir.Operation) -> tuple[ir.Operation, dict]:
    """@main's call of stage function `fn`, and which call produced each stage result of @main
    ({result: (call, stage function)}, what `holds_examples` follows)."""
    calls = stage_calls(module)
    producer = {result: (op, callee) for op, callee in calls for result in op.results}
    name = fn.attributes["sym_name"]
    return next(op for op, callee in calls if callee.attributes["sym_name"] == name), producer


def mark_as_main(
    target: ir.Operation | ir.OpView,
    values: list[ir.Value],
    main: ir.Operation | ir.OpView,
    producer: dict | None = None,
    *,
    examples: bool,
    parameters: bool,
) -> None:
    """Marks the arguments of `target`, a function planned alone whose arguments stand for `values` of
    `main`, as `main`'s are marked, where options read the marks (a pipeline stage's part, or a stage-cost
    layer): `examples`, `autopar.batch` on those that hold one row per example (`holds_examples`);
    `parameters`, `autopar.parameter` on those `main` passes from its own parameter arguments, and then
    `autopar.no_updates` on `target`, which updates none of them (the intra-op pass would otherwise pair
    its activations or gradients with them as their updates)."""
    if not (examples or parameters):
        return
    marks = attrs.get_argument_marks(main)
    batch = {i for i, m in enumerate(marks) if m.is_batch}
    params = {i for i, m in enumerate(marks) if m.is_parameter}
    batch_marks = [examples and holds_examples(v, batch, producer) for v in values]
    param_marks = [parameters and isinstance(v.owner, ir.Block) and v.arg_number in params for v in values]
    if any(batch_marks) or any(param_marks):
        attrs.set_argument_marks(
            target, [attrs.ArgumentMarks(b, q, None) for b, q in zip(batch_marks, param_marks, strict=True)]
        )
    if any(param_marks):
        target.attributes[attrs.NO_UPDATES] = ir.UnitAttr.get(target.context)


def holds_examples(
    value: ir.Value,
    batch_args: set[int],
    producer: dict[ir.Value, tuple[ir.Operation, ir.OpView]] | None = None,
    depth: int = 0,
) -> bool:
    """Whether `value` of @main holds one row per example along dim 0: a batch argument of @main
    (`autopar.batch`, dim 0), or a value whose `autopar.micro_batch` label is "concat:0" (concatenated over
    micro-batches along dim 0: ir/micro_batch.py). A result of a stage call (`producer`: result -> (call,
    stage function)) is read inside the stage function, through pass-through arguments and the ops that
    only carry their operand's label."""
    owner = value.owner
    if isinstance(owner, ir.Block):
        return value.arg_number in batch_args
    if producer is not None and value in producer and depth <= 64:
        call, callee = producer[value]
        inner = list(callee.regions[0].blocks[0].operations)[-1].operation.operands[value.result_number]
        while not isinstance(inner.owner, ir.Block) and attrs.get_micro_batch_labels(inner.owner) is None:
            carrier = inner.owner
            if carrier.name not in ("stablehlo.convert", "stablehlo.copy", "sdy.sharding_constraint"):
                return False
            inner = carrier.operands[0]
        if isinstance(inner.owner, ir.Block):  # passed through: the caller's operand
            return holds_examples(call.operands[inner.arg_number], batch_args, producer, depth + 1)
        return attrs.get_micro_batch_labels(inner.owner)[inner.result_number] == "concat:0"
    labels = attrs.get_micro_batch_labels(owner)
    return labels is not None and labels[value.result_number] == "concat:0"


def referenced_meshes(fn: ir.Operation) -> list[tuple[str, ir.Attribute]]:
    """(name, `#sdy.mesh`) of every `sdy.mesh` of `fn`'s module that `fn` names in a sharding."""
    module_op = fn.operation.parent
    text = fn.operation.get_asm(enable_debug_info=False)
    found = []
    for op in module_op.regions[0].blocks[0].operations:
        if op.operation.name == "sdy.mesh":
            name = ir.StringAttr(op.attributes["sym_name"]).value
            if f"<@{name}," in text or f"<@{name}>" in text:
                found.append((name, op.attributes["mesh"]))
    return found


def stage_module(fn: ir.Operation) -> ir.Module:
    """A new module whose public @main is a copy of the stage function `fn`, with the `sdy.mesh`es it
    names (none before autopar-shard-stages); its stage attributes are dropped."""
    with fn.context, ir.Location.unknown():
        module = ir.Module.create()
        with ir.InsertionPoint(module.body):
            # Built in place: moving a freshly created MeshOp crashes jaxlib.
            for name, mesh in referenced_meshes(fn):
                sdy.MeshOp(name, mesh)
            clone = fn.clone()
        clone.attributes["sym_name"] = ir.StringAttr.get("main")
        clone.attributes["sym_visibility"] = ir.StringAttr.get("public")
        attrs.clear_stage(clone)
    return module
