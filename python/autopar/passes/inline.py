"""autopar-inline: inlines every `func.call`, drops the private funcs nothing calls any more and the ops
whose results nothing reads."""

from __future__ import annotations

import re
import types

from jaxlib.mlir import ir
from jaxlib.mlir._mlir_libs import _jax_mlir_ext
from jaxlib.mlir.dialects import func

from autopar.errors import PassError
from autopar.ir.effects import EFFECTFUL_OPS
from autopar.passes.registry import Option, register_pass

DESCRIPTION = """
JAX lowers `jax.nn.relu`, nested `jax.jit`s and custom_jvp rules to `func.call @relu(...)` of private
functions; MLIR's `inline` pass does not inline StableHLO funcs. This pass inlines every call, innermost
callees first, so that every later pass sees one body per public function. Inlined ops keep their
name-stack locations. Private funcs left without callers are erased unless `keep-dead-funcs` is set.
Ops whose results nothing reads and that have no side effect are erased too unless `keep-dead-ops` is
set: a callee's results the caller drops (flax's `nn.RNN` computes its last carry inside the call even
when only its outputs are used) are dead once inlined, XLA drops them, and planned they were priced
with collectives XLA never runs.

Before:
  func.func public @main(%arg0: tensor<4xf32>) -> tensor<4xf32> {
    %0 = call @relu(%arg0) : (tensor<4xf32>) -> tensor<4xf32>
    return %0 : tensor<4xf32>
  }
  func.func private @relu(%arg0: tensor<4xf32>) -> tensor<4xf32> {
    %0 = stablehlo.maximum %arg0, %cst : tensor<4xf32>
    return %0 : tensor<4xf32>
  }

After:
  func.func public @main(%arg0: tensor<4xf32>) -> tensor<4xf32> {
    %0 = stablehlo.maximum %arg0, %cst : tensor<4xf32>
    return %0 : tensor<4xf32>
  }
"""


@register_pass(
    argument="autopar-inline",
    summary="Inline every func.call and erase private funcs left without callers",
    description=DESCRIPTION,
    options=[
        Option("keep-dead-funcs", bool, False, "keep private funcs that no call refers to after inlining"),
        Option("keep-dead-ops", bool, False, "keep side-effect-free ops whose results nothing reads"),
    ],
)
def inline_calls(module_op: ir.Operation, options: types.SimpleNamespace) -> None:
    funcs = _funcs_by_name(module_op)
    if any(_calls_in(fn) for fn in funcs.values()):
        # Callees first: each body is inlined once and its inlined copy already holds no call.
        for name in _callees_first(funcs):
            _inline_calls_in(funcs[name], funcs)
        if not options.keep_dead_funcs:
            _erase_uncalled_private_funcs(module_op, funcs)
    if not options.keep_dead_ops:
        for fn in _funcs_by_name(module_op).values():
            _erase_dead_ops(fn)


def _funcs_by_name(module_op: ir.Operation) -> dict[str, func.FuncOp]:
    funcs = {}
    for op in module_op.regions[0].blocks[0].operations:
        if op.operation.name == "func.func":
            funcs[ir.StringAttr(op.attributes["sym_name"]).value] = op
    return funcs


def _calls_in(fn: func.FuncOp) -> list[ir.Operation]:
    calls: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "func.call":
            calls.append(op)
        return ir.WalkResult.ADVANCE

    fn.operation.walk(visit, walk_order=ir.WalkOrder.PRE_ORDER)
    return calls


def _callee_name(call: ir.Operation) -> str:
    return ir.FlatSymbolRefAttr(call.attributes["callee"]).value


def _callees_first(funcs: dict[str, func.FuncOp]) -> list[str]:
    """Functions in post-order of the call graph; raises PassError on recursion (not inlinable)."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on stack, 2 = done

    def visit(name: str, call_site: ir.Operation | None) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise PassError(
                f"recursive call to @{name} cannot be inlined", call_site.location if call_site else None
            )
        if name not in funcs:
            raise PassError(f"call to unknown function @{name}", call_site.location if call_site else None)
        state[name] = 1
        for call in _calls_in(funcs[name]):
            visit(_callee_name(call), call)
        state[name] = 2
        order.append(name)

    for name in funcs:
        visit(name, None)
    return order


def _inline_calls_in(fn: func.FuncOp, funcs: dict[str, func.FuncOp]) -> None:
    # Calls inside inlined bodies appear after each splice, so repeat until no call is left.
    while calls := _calls_in(fn):
        for call in calls:
            callee = funcs[_callee_name(call)]
            with ir.InsertionPoint(call), call.location:
                results = _jax_mlir_ext.inlined_func_call(
                    callee.operation, list(call.operands), call.location
                )
            for old, new in zip(call.results, results, strict=True):
                old.replace_all_uses_with(new)
            call.erase()


_DIALECTS = ("stablehlo.", "chlo.")  # the dialects whose ops outside EFFECTFUL_OPS act only through results


def _erase_dead_ops(fn: func.FuncOp) -> None:
    """Erases, last first (so that whole dead chains go), the ops of `fn`'s body that have results,
    none of them read, and no side effect: StableHLO and CHLO ops outside EFFECTFUL_OPS (loops and branches
    are kept: their bodies may hold effects)."""
    block = fn.regions[0].blocks[0]
    for op in reversed(list(block.operations)):
        operation = op.operation
        name = operation.name
        if not name.startswith(_DIALECTS) or name in EFFECTFUL_OPS or not len(operation.results):
            continue
        if all(not list(result.uses) for result in operation.results):
            operation.erase()


def _erase_uncalled_private_funcs(module_op: ir.Operation, funcs: dict[str, func.FuncOp]) -> None:
    # After inlining no call is left, but other ops may still name a func (custom_call's
    # called_computations, composite decompositions): keep every func whose symbol appears anywhere else.
    asm = module_op.get_asm(enable_debug_info=False)
    for name, fn in funcs.items():
        visibility = fn.attributes["sym_visibility"] if "sym_visibility" in fn.attributes else None
        is_private = visibility is not None and ir.StringAttr(visibility).value == "private"
        if is_private and len(re.findall(rf"@{re.escape(name)}\b", asm)) <= 1:
            fn.operation.erase()
