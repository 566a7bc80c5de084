"""How each value of a micro-batch step combines into the full-batch step's value.

A PipeshardParallel step is planned and run for ONE micro-batch of m examples; the runtime runs it on B
slices and must turn the B values of everything the apply parts read or the step returns into what the
full-batch step (B*m examples) computes. Which combination is right depends on the program: a mean loss
and its gradients are averaged, a sum loss and its gradients are summed, a per-example output is
concatenated, a parameter passed through is the same in every micro-batch, and a variance or a
normalised weight cannot be combined at all. Alpa averaged everything (exact for mean losses only).

`classify(small, large)` decides it from two lowerings of the same step, at m and at 2m examples per
micro-batch (both inlined, so their ops pair up one to one): a dim whose size doubles is a batch dim,
and a constant that changes scales as a power of m (the 1/m of a mean and of its gradient). An abstract
interpretation over the ops then tracks, for every value, one of:

  zero        the constant 0 (combines with anything)
  const(p)    independent of the examples, proportional to m**p (p None: not a power of m)
  batch(p)    per example along its batch dims, each element m**p times a function of its own example
  sum(p)      m**p times a sum over the examples (plus a batch-independent term when `affine`, p = -1)
  max, min    the largest or smallest over the examples (`jnp.max`, `jnp.any`, `jnp.all` over the batch)
  unknown     anything else (a nonlinear function of a sum, examples mixed, ...), with the op that did it

and `annotate(small, kinds)` writes, on every op of @main with a result that is not the same in every
micro-batch, `autopar.micro_batch` = one label per result (ir/attrs.py): "same", "concat:<dim>", "batch",
"sum", "mean", "sum:<p>", "const:irregular" or "unknown:<why>" (a const(p) value is labelled as the
sum(p - 1) it equals: B equal values sum to B times one). The runtime reads the label of each value it
must combine (runtime/sequential.py): the combination of sum(p) values is B**p times their sum, which
for a mean (p = -1) is the average. The rules are conservative: an op not listed below that touches
example data is unknown unless it is elementwise on degree-0 values.
"""

from __future__ import annotations

import dataclasses
import math

from jaxlib.mlir import ir

from autopar.errors import format_location
from autopar.ir import attrs
from autopar.ir.cloning import body_ops
from autopar.ir.constants import constant_value, splat_value
from autopar.ir.micro_batch_scalars import decided_select, same_outcome
from autopar.ir.micro_batch_static import keeps_order, written_with_batch_size


@dataclasses.dataclass(frozen=True)
class Kind:
    """The abstract value of one SSA value (see the module docstring)."""

    tag: str  # "zero" | "const" | "batch" | "sum" | "max" | "min" | "unknown"
    degree: int | None = 0
    affine: bool = False
    why: str = ""

    def label(self, shape_small: tuple[int, ...], shape_large: tuple[int, ...], m: int) -> str:
        """The combination label the runtime reads (module docstring)."""
        if self.tag == "zero" or (self.tag == "const" and self.degree == 0):
            return "same"
        if self.tag == "const":
            if self.degree is None:
                return "const:irregular"
            # Equal in every micro-batch and m**p times a constant (`x.shape[0]` as an array): the full
            # batch's is B**p times one of them, B**(p - 1) times their sum.
            return Kind("sum", self.degree - 1).label(shape_small, shape_large, m)
        if self.tag == "batch":
            dims = shape_batch_dims(shape_small, shape_large)
            if self.degree == 0 and len(dims) == 1 and shape_small[dims[0]] == m:
                return f"concat:{dims[0]}"
            return "batch"
        if self.tag in EXTREMES:
            return self.tag
        if self.tag == "sum":
            if self.degree == -1:
                return "mean"
            if self.degree == 0 and not self.affine:
                return "sum"
            return "unknown:a batch-independent term added to a sum" if self.affine else f"sum:{self.degree}"
        return f"unknown:{self.why}"


ZERO = Kind("zero")
SAME = Kind("const", 0)
# The largest or smallest value over the examples combines as the largest or smallest over the
# micro-batches; only ops that keep order (a reshape, a widening convert) keep that.
EXTREMES = ("max", "min")


def unknown(why: str) -> Kind:
    return Kind("unknown", None, why=why)


# What a user may declare for an output whose combination is not inferred -> the label it acts as.
DECLARABLE = {"mean": "mean", "sum": "sum", "concat": "concat:0", "max": "max", "min": "min", "last": "same"}


class MicroBatchError(Exception):
    """The two lowerings do not pair up (the step's code branches on the batch size)."""


# ---- ops by how they treat examples -----------------------------------------------------------------------

# Elementwise and degree-preserving in each operand.
_LINEAR_UNARY = {
    "stablehlo.negate",
    "stablehlo.convert",
    "stablehlo.reshape",
    "stablehlo.transpose",
    "stablehlo.copy",
    "stablehlo.real",
    "stablehlo.imag",
    "stablehlo.abs",
}
# Shape ops whose operand 0 is the data and whose other operands are indices / padding values.
SHAPE_OPS = {
    "stablehlo.slice",
    "stablehlo.dynamic_slice",
    "stablehlo.pad",
    "stablehlo.reverse",
    "stablehlo.concatenate",
    "stablehlo.dynamic_update_slice",
}
# complex(x, y) = x + i y combines like a sum (jnp.fft of real data builds its operand so).
_ADDITIVE = {"stablehlo.add", "stablehlo.subtract", "stablehlo.complex"}
# Functions of their operands' values with no scaling law: only degree-0 operands keep their kind.
_NONLINEAR_NAMES = """
    exponential exponential_minus_one log log_plus_one tanh logistic sqrt rsqrt cbrt sine cosine tan floor
    ceil round_nearest_afz round_nearest_even sign not is_finite power atan2 remainder maximum minimum
    compare and or xor shift_left shift_right_logical shift_right_arithmetic clamp erf popcnt
    count_leading_zeros bitcast_convert reduce_precision
"""
_NONLINEAR = frozenset([f"stablehlo.{name}" for name in _NONLINEAR_NAMES.split()] + ["chlo.erf"])


# Why two lowerings of one step may not pair op by op: the user's code, or a rule of JAX's (a triangular
# solve's gradient orders its products by the operands' shapes), chose its ops by the batch size.
PICKS_BY_SIZE = " (the step, or a JAX rule it calls, picks its ops by the batch size)"

# Never judged by their operands alone: an iota over the batch dim has none, and regions may read values
# from outside (implicit capture).
_NOT_BY_OPERANDS = {"stablehlo.iota", "stablehlo.while", "stablehlo.case", "stablehlo.if"}


def _shape(value: ir.Value) -> tuple[int, ...]:
    t = value.type
    return tuple(t.shape) if isinstance(t, ir.RankedTensorType) else ()


def shape_batch_dims(small: tuple[int, ...], large: tuple[int, ...]) -> list[int]:
    """The dims whose size differs between the step's two lowerings: its batch dims."""
    return [d for d, (a, b) in enumerate(zip(small, large, strict=True)) if a != b]


# ---- the interpretation -----------------------------------------------------------------------------------


class Interpreter:
    def __init__(self, micro_batch_size: int | None = None, num_micro_batches: int | None = None) -> None:
        self.kinds: dict[ir.Value, Kind] = {}
        self.twin: dict[ir.Value, ir.Value] = {}
        self.micro_batch_size, self.num_micro_batches = micro_batch_size, num_micro_batches

    def kind(self, value: ir.Value) -> Kind:
        return self.kinds.get(value, SAME)

    def bind(self, small: ir.Value, large: ir.Value, kind: Kind) -> None:
        self.kinds[small] = kind
        self.twin[small] = large

    def batch_dims(self, value: ir.Value) -> list[int]:
        small, large = _shape(value), _shape(self.twin[value]) if value in self.twin else _shape(value)
        if len(small) != len(large):
            raise MicroBatchError(
                f"{value.get_name()} has rank {len(small)} and {len(large)} at 2x the batch"
            )
        return shape_batch_dims(small, large)

    def scales_cleanly(self, value: ir.Value) -> bool:
        """Its batch dims double at twice the micro-batch (no m*m dims)."""
        small, large = _shape(value), _shape(self.twin[value])
        return all(b == 2 * a for a, b in zip(small, large, strict=True) if a != b)

    # -- blocks ------------------------------------------------------------------------------------------

    def run_block(self, small: ir.Block, large: ir.Block) -> None:
        small_ops, large_ops = list(small.operations), list(large.operations)
        if len(small_ops) != len(large_ops):
            raise MicroBatchError("the step lowers to different programs at two batch sizes" + PICKS_BY_SIZE)
        for a, b in zip(small_ops, large_ops, strict=True):
            a, b = a.operation, b.operation
            if a.name != b.name or len(a.results) != len(b.results):
                where = format_location(a.location)
                raise MicroBatchError(
                    f"the step lowers to {a.name} at one batch size and {b.name} at another"
                    + (f" at {where}" if where else "")
                    + PICKS_BY_SIZE
                )
            for r_small, r_large in zip(a.results, b.results, strict=True):
                self.twin[r_small] = r_large
            kinds = self.op(a, b)
            why = None if any(k.tag == "unknown" for k in kinds) else written_with_batch_size(self, a, b)
            kinds = [unknown(why)] * len(kinds) if why else kinds
            given = [self.kind(v) for v in a.operands]
            for r_small, r_large, k in zip(a.results, b.results, kinds, strict=True):
                self.bind(r_small, r_large, _located(k, a) if k.tag == "unknown" and k not in given else k)

    def op(self, a: ir.Operation, b: ir.Operation) -> list[Kind]:
        name = a.name
        ins = [self.kind(v) for v in a.operands]
        n = len(a.results)
        if name == "stablehlo.constant":
            return [self.constant(a, b)]
        if name in ("func.return", "stablehlo.return"):
            return []
        if name == "stablehlo.optimization_barrier":  # the identity on each of its values (jax.checkpoint's
            return ins  # carry many): each result is of its operand's kind
        if name in ("stablehlo.gather", "stablehlo.scatter") and ins[1].tag == "unknown":
            from autopar.ir.micro_batch_indices import own_example_index  # x[jnp.arange(B), i]

            ins[1] = own_example_index(self, a) or ins[1]
        if any(k.tag == "unknown" for k in ins):
            return [next(k for k in ins if k.tag == "unknown")] * n
        if any(k.tag in EXTREMES for k in ins) and not keeps_order(a):
            tag = next(k.tag for k in ins if k.tag in EXTREMES)
            return [unknown(f"{name} of a {tag} over the examples")] * n
        if all(k.tag in ("zero", "const") for k in ins) and name not in _NOT_BY_OPERANDS:
            if any(self.batch_dims(r) for r in a.results):
                return [self.per_example_constant(a)] * n
            if same_outcome(self, a):  # jnp.var's `N - ddof > 0` over the batch (ir/micro_batch_scalars.py)
                return [SAME]
            picked = decided_select(self, a, ins) if name == "stablehlo.select" else None  # jnp's index wrap
            return [picked] if picked is not None else [_const_of(ins, name)] * n
        from autopar.ir.micro_batch_ops import HANDLERS  # the per-op rules (imports this module)

        handler = HANDLERS.get(name)
        if handler is not None:
            return handler(self, a, b, ins)
        if name in _LINEAR_UNARY:
            return [self.reshaped(a, ins[0])]
        if name in _ADDITIVE:
            return [self.added(a, ins[0], ins[1])]
        if name in _NONLINEAR:
            return [self.nonlinear(a, ins)] * n
        if name.startswith("chlo.") and self.elementwise(a):  # chlo.erf_inv, ...: math functions
            return [self.nonlinear(a, ins)] * n
        return [unknown(f"{name} on example data is not understood")] * n

    def elementwise(self, a: ir.Operation) -> bool:
        shapes = {_shape(v) for v in [*a.operands, *a.results]}
        return len(shapes) == 1

    # -- rules -------------------------------------------------------------------------------------------

    def constant(self, a: ir.Operation, b: ir.Operation) -> Kind:
        result = a.results[0]
        value_a, value_b = constant_value(a), constant_value(b)
        dense_a = value_a if isinstance(value_a, ir.DenseElementsAttr) else None
        if self.batch_dims(result):
            if dense_a is not None and dense_a.is_splat:
                return ZERO if splat_value(dense_a) == 0 else Kind("batch", 0)
            return unknown("a constant with a batch dim that is not one value (an index over the batch?)")
        if dense_a is None or not dense_a.is_splat:
            return SAME if str(value_a) == str(value_b) else Kind("const", None)
        x, y = splat_value(dense_a), splat_value(value_b)
        if x == 0 and y == 0:
            return ZERO
        if x == y or str(value_a) == str(value_b):  # NaN splats are equal too
            return SAME
        if not (math.isfinite(x) and math.isfinite(y)) or x == 0 or y == 0 or (x > 0) != (y > 0):
            return Kind("const", None)
        p = math.log2(y / x)
        return Kind("const", round(p)) if abs(p - round(p)) < 1e-9 else Kind("const", None)

    def per_example_constant(self, a: ir.Operation) -> Kind:
        """A batch-dependent-in-shape value built from constants only (broadcasts of scalars)."""
        ins = [self.kind(v) for v in a.operands]
        if a.name == "stablehlo.dot_general" and any(k.tag == "zero" for k in ins):
            return ZERO  # a recurrent layer's first step: its zero initial state times a weight
        if a.name in SHAPE_OPS and all(k.tag == "zero" for k in _elements(a.name, ins)):
            return ZERO  # zeros sliced, padded or written into zeros (a scan's first residuals)
        if a.name == "stablehlo.broadcast_in_dim":
            k = self.kind(a.operands[0])
            return ZERO if k.tag == "zero" else Kind("batch", k.degree) if k.degree is not None else k
        if a.name in _LINEAR_UNARY or a.name in _ADDITIVE or a.name in _NONLINEAR:
            if all(k.tag == "zero" for k in ins):
                return ZERO
            c = _const_of(ins, a.name)
            return Kind("batch", c.degree) if c.degree is not None else unknown(f"{a.name}: irregular")
        if a.name == "stablehlo.reduce" and len(a.results) == 1 and not self.reduces_batch(a):
            # The same in every example: a reduction within each (the initial CTC scores, zeros summed).
            if all(k.tag == "zero" for k in ins) and set(body_ops(a)) <= _ZERO_PRESERVING:
                return ZERO
            if all(k.degree == 0 for k in ins):
                return Kind("batch", 0)
        return unknown(f"{a.name} makes a value with a batch dim from constants")

    def reduces_batch(self, a: ir.Operation) -> bool:
        dims = ir.DenseI64ArrayAttr(a.attributes["dimensions"])
        return any(d in self.batch_dims(a.operands[0]) for d in dims)

    def reshaped(self, a: ir.Operation, k: Kind) -> Kind:
        if k.tag == "batch" and not self.scales_cleanly(a.results[0]):
            return unknown(f"{a.name} mixes the batch dim with another")
        if k.tag == "batch" and not self.batch_dims(a.results[0]):
            return unknown(f"{a.name} drops the batch dim")
        if k.tag == "batch" and a.name == "stablehlo.reshape" and not self.keeps_examples_in_order(a):
            return unknown(
                "a reshape that regroups the examples (the batch dim is not the major one of its group)"
            )
        return k

    def keeps_examples_in_order(self, a: ir.Operation) -> bool:
        """Whether a reshape commutes with concatenating micro-batches along the batch dim: one batch dim on
        each side, with as many elements before it (x.reshape(-1, 2, d) keeps pairs of examples; splitting
        the examples into 4 fixed chunks, x.reshape(4, -1, d), regroups them with the micro-batch)."""
        source, result = a.operands[0], a.results[0]
        before, after = self.batch_dims(source), self.batch_dims(result)
        if len(before) != 1 or len(after) != 1:
            return False
        return math.prod(_shape(source)[: before[0]]) == math.prod(_shape(result)[: after[0]])

    def added(self, a: ir.Operation, x: Kind, y: Kind) -> Kind:
        if x.tag == "zero":
            return y
        if y.tag == "zero":
            return x
        if x.tag == y.tag and x.degree == y.degree and x.degree is not None:
            return Kind(x.tag, x.degree, x.affine or y.affine)
        kinds = {x.tag, y.tag}
        if kinds == {"sum", "const"}:
            s, c = (x, y) if x.tag == "sum" else (y, x)
            if s.degree == -1 and c.degree == 0:
                return Kind("sum", -1, affine=True)
        if kinds == {"const"}:
            return Kind("const", None)
        return unknown(f"{a.name} of a {x.tag}({x.degree}) and a {y.tag}({y.degree}) value")

    def nonlinear(self, a: ir.Operation, ins: list[Kind]) -> Kind:
        live = [k for k in ins if k.tag not in ("zero", "const")]
        if any(k.tag == "sum" for k in live):
            return unknown(f"{a.name} of a sum over the examples (only means and sums combine exactly)")
        if a.name in ("stablehlo.maximum", "stablehlo.minimum", "stablehlo.clamp") and live:
            # max(c x, c y) = c max(x, y) for c > 0: the degree survives when all agree.
            degrees = {k.degree for k in ins if k.tag != "zero"}
            if len(degrees) == 1 and None not in degrees:
                return Kind("batch", degrees.pop())
        if any(k.degree != 0 for k in ins if k.tag != "zero"):
            return unknown(f"{a.name} of a value that scales with the micro-batch size")
        return Kind("batch", 0)


_DATA = ("batch", "sum", *EXTREMES)  # kinds of values that hold example data


def _located(k: Kind, a: ir.Operation) -> Kind:
    """An op's own reason to give up, with where it was written: the output refused is often far from it."""
    where = format_location(a.location)
    return k if not where or where in k.why else dataclasses.replace(k, why=f"{k.why} at {where}")


# Reduction bodies that combine zeros into zero.
_ZERO_PRESERVING = {f"stablehlo.{name}" for name in ("add", "maximum", "minimum", "multiply", "or", "and")}


def _elements(name: str, ins: list[Kind]) -> list[Kind]:
    """The operands of a shape op whose values become elements of its result (not its indices)."""
    if name == "stablehlo.concatenate":
        return ins
    if name in ("stablehlo.pad", "stablehlo.dynamic_update_slice"):
        return ins[:2]
    return ins[:1]


def _const_of(ins: list[Kind], name: str) -> Kind:
    """Constants combined by `name`: their degree when the op is a product or a degree-preserving op."""
    if not ins:  # reads nothing (a host callback's result, pure_callback(lambda: 2.0)): not the constant 0
        return SAME
    live = [k for k in ins if k.tag != "zero"]
    if not live or (name == "stablehlo.multiply" and len(live) < len(ins)):
        return ZERO
    if any(k.degree is None for k in live):
        return Kind("const", None)
    if name == "stablehlo.multiply":
        return Kind("const", sum(k.degree for k in live))
    if name == "stablehlo.divide":
        if ins[1].tag == "zero":
            return Kind("const", None)
        return Kind("const", ins[0].degree - ins[1].degree if ins[0].tag != "zero" else 0)
    degrees = {k.degree for k in live}
    if len(degrees) == 1 and (
        name in _LINEAR_UNARY or name in _ADDITIVE or name == "stablehlo.broadcast_in_dim"
    ):
        return Kind("const", degrees.pop())
    if degrees == {0}:
        return SAME
    return Kind("const", None)


def terminator(block: ir.Block) -> ir.Operation:
    return list(block.operations)[-1].operation


def join(x: Kind, y: Kind) -> Kind:
    if x == y or y.tag == "zero":
        return x
    if x.tag == "zero":
        return y
    if x.tag == y.tag and x.degree == y.degree:
        return Kind(x.tag, x.degree, x.affine or y.affine)
    if x.tag == y.tag == "const":
        return Kind("const", None)
    if {x.tag, y.tag} == {"batch", "const"} and x.degree == y.degree:
        return Kind("batch", x.degree)
    return x if x.tag == "unknown" else y if y.tag == "unknown" else unknown("values of different kinds meet")


# ---- entry points ----------------------------------------------------------------------------------------


def main_function(module: ir.Module) -> ir.Operation:
    """The module's @main (MicroBatchError when it has none)."""
    from autopar.ir.stages import find_function

    main = find_function(module.operation)
    if main is None:
        raise MicroBatchError("the module has no @main")
    return main.operation


@dataclasses.dataclass
class Classification:
    """`kinds[v]` for the values of the small module's @main that are not SAME; `twin[v]` is v's value in
    the large module."""

    kinds: dict[ir.Value, Kind]
    twin: dict[ir.Value, ir.Value]

    def kind(self, value: ir.Value) -> Kind:
        return self.kinds.get(value, SAME)

    def seen(self, op: ir.Operation) -> bool:
        """Whether the interpretation reached `op` (not inside a loop or branch it gave up on)."""
        return all(r in self.twin for r in op.results)


def classify(
    small: ir.Module, large: ir.Module, m: int | None = None, B: int | None = None
) -> Classification:
    """The kind of every value of `small`'s @main (module docstring). Both modules are inlined lowerings
    of one step at m and 2m examples per micro-batch; given m and the micro-batches B, comparisons of
    constants are decided too. Raises MicroBatchError when they do not pair up."""
    main_a, main_b = main_function(small), main_function(large)
    block_a, block_b = main_a.regions[0].blocks[0], main_b.regions[0].blocks[0]
    it = Interpreter(m, B)
    if len(block_a.arguments) != len(block_b.arguments):
        raise MicroBatchError("the step has a different number of arguments at two batch sizes")
    for arg_a, arg_b in zip(block_a.arguments, block_b.arguments, strict=True):
        it.twin[arg_a] = arg_b
        batch = it.batch_dims(arg_a)
        it.kinds[arg_a] = Kind("batch", 0) if batch and it.scales_cleanly(arg_a) else SAME
    it.run_block(block_a, block_b)
    return Classification(it.kinds, it.twin)


def annotate(
    small: ir.Module, large: ir.Module, micro_batch_size: int, num_micro_batches: int | None = None
) -> None:
    """Classifies `small` against `large` and writes `autopar.micro_batch` labels on @main's ops (every op
    with a result that differs between micro-batches) and the module's `autopar.micro_batch_size`."""
    result = classify(small, large, micro_batch_size, num_micro_batches)
    main = main_function(small)

    def label(value: ir.Value, kind: Kind | None = None) -> str:
        twin = result.twin.get(value, value)
        return (kind or result.kind(value)).label(_shape(value), _shape(twin), micro_batch_size)

    def walk(block: ir.Block, twin_block: ir.Block | None, enclosing: str | None = None) -> None:
        ops = [op.operation for op in block.operations]
        twins = [op.operation for op in twin_block.operations] if twin_block is not None else []
        for op, twin in zip(ops, twins if len(twins) == len(ops) else [None] * len(ops), strict=True):
            labels = [label(r) for r in op.results]
            if enclosing is not None and not result.seen(op):
                # Not interpreted: the loop or branch around it was unknown from its operands on. Its ops
                # carry that reason (also unrolled); a constant is what it is anywhere (same, or a size).
                labels = [enclosing] * len(labels)
                if op.name == "stablehlo.constant" and twin is not None and twin.name == op.name:
                    alone = Interpreter(micro_batch_size)
                    alone.twin[op.results[0]] = twin.results[0]
                    labels = [label(op.results[0], alone.constant(op, twin))]
            # Written also where example data comes to the same in every micro-batch (0 / a count): the
            # runtime reads an op on example data without a label as one added after labelling.
            if any(x != "same" for x in labels) or any(result.kind(v).tag in _DATA for v in op.operands):
                attrs.set_micro_batch_labels(op, labels)
            unknown = next((x for x in labels if x.startswith("unknown:")), None)
            for i, region in enumerate(op.regions):
                twin_blocks = list(twin.regions[i].blocks) if twin is not None else []
                for j, inner in enumerate(region.blocks):
                    walk(inner, twin_blocks[j] if j < len(twin_blocks) else None, unknown or enclosing)

    walk(main.regions[0].blocks[0], main_function(large).regions[0].blocks[0])
    attrs.set_micro_batch_size(small.operation, micro_batch_size)
