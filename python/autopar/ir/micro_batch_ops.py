"""The per-op rules of ir/micro_batch.py: how each StableHLO op maps its operands' kinds (zero, const(p),
batch(p), sum(p), unknown) to its results' kinds. Each rule reads the op at m examples (`a`) and, where
shapes or constants matter, its twin at 2m (`b`); `it` is the interpreter (batch dims, nested blocks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxlib.mlir import ir

from autopar.errors import format_location
from autopar.ir.cloning import body_ops
from autopar.ir.micro_batch import SAME, SHAPE_OPS, ZERO, Kind, join, terminator, unknown
from autopar.ir.micro_batch_indices import crosses_examples
from autopar.ir.micro_batch_scalars import decided_select

if TYPE_CHECKING:
    from autopar.ir.micro_batch import Interpreter

# ---- rules ------------------------------------------------------------------------------------------


def _multiply(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    x, y = ins
    if x.tag == "zero" or y.tag == "zero":
        return [ZERO]
    return [_product(a.name, x, y, sign=1)]


def _divide(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    x, y = ins
    if x.tag == "zero":
        return [ZERO]
    if y.tag == "sum":
        return [
            unknown(
                "a division by a sum over the examples that is computed from more than the batch (a ratio "
                "of sums does not combine exactly; a denominator read from the batch alone, a token count, "
                "is taken over the whole batch first)"
            )
        ]
    return [_product(a.name, x, y, sign=-1)]


def _product(name: str, x: Kind, y: Kind, sign: int) -> Kind:
    if x.degree is None or y.degree is None:
        return unknown(f"{name} by a value that is not a power of the micro-batch size")
    degree = x.degree + sign * y.degree
    tags = {x.tag, y.tag}
    if "sum" in tags:
        if tags == {"sum"}:
            return unknown(f"{name} of two sums over the examples")
        s, c = (x, y) if x.tag == "sum" else (y, x)
        if c.tag != "const":
            return unknown(f"{name} of a sum and a per-example value")
        if s.affine and c.degree != 0:
            return unknown(f"{name} of a mean with a constant term by a power of the batch size")
        return Kind("sum", degree, s.affine)
    if "batch" in tags:
        return Kind("batch", degree)
    return Kind("const", degree)


def _broadcast(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    k = ins[0]
    if k.tag == "sum" and it.batch_dims(a.results[0]):
        return [unknown("a sum over the examples fed back into each example (a batch statistic)")]
    if k.tag == "batch":
        return [it.reshaped(a, k)]
    return [k]


def _reduce_body(a: ir.Operation) -> str:
    """The combining op of a reduce-like op's body ("stablehlo.add", ...)."""
    names = body_ops(a)
    return names[0] if len(names) == 1 else "?"


# Reductions over the batch dim that combine over micro-batches: as a sum, or as the largest or smallest.
_COMBINING = {
    "stablehlo.add": "sum",
    "stablehlo.maximum": "max",
    "stablehlo.or": "max",
    "stablehlo.minimum": "min",
    "stablehlo.and": "min",
}


def _reduce(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    n = len(a.results)
    data = ins[:n]
    dims = list(ir.DenseI64ArrayAttr(a.attributes["dimensions"]))
    reduced_batch = any(d in it.batch_dims(a.operands[0]) for d in dims)
    body = _reduce_body(a)
    if n != 1:
        if reduced_batch or any(k.tag == "sum" or (k.tag == "batch" and k.degree != 0) for k in data):
            return [unknown("a multi-operand reduction (argmax, ...) over example data")] * n
        return [Kind("batch", 0) if it.batch_dims(r) else SAME for r in a.results]
    k = data[0]
    if not reduced_batch:
        if k.tag == "sum" and body != "stablehlo.add":
            return [unknown(f"a {body} reduction of a sum over the examples")]
        return [k]
    if body not in _COMBINING:
        return [unknown(f"a {body} reduction over the batch dim (sums, means, maxima and minima combine)")]
    if it.batch_dims(a.results[0]):
        return [unknown("a reduction over part of the batch dims")]
    if _COMBINING[body] != "sum":  # the largest or smallest example's own value (degree 0: not scaled by m)
        if k.tag == "zero":
            return [ZERO]
        ok = k.tag == "batch" and k.degree == 0
        return [
            Kind(_COMBINING[body]) if ok else unknown(f"a {body} reduction of a {k.tag} value over the batch")
        ]
    if k.tag != "batch":
        return [unknown(f"a sum over the batch dim of a {k.tag} value")]
    return [Kind("sum", k.degree)]


def _dot_general(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    x, y = ins[:2]
    if x.tag == "zero" or y.tag == "zero":
        return [ZERO]
    if x.degree is None or y.degree is None:
        return [unknown("a dot of a value that is not a power of the micro-batch size")]
    result_batch = it.batch_dims(a.results[0])
    lhs_batch, rhs_batch = it.batch_dims(a.operands[0]), it.batch_dims(a.operands[1])
    degree = x.degree + y.degree
    if "sum" in (x.tag, y.tag):
        other = y if x.tag == "sum" else x
        if other.tag != "const" or result_batch:
            return [unknown("a dot of a sum over the examples and a per-example value")]
        return [Kind("sum", degree, False)]
    if lhs_batch and rhs_batch:
        contracted = _dot_dims(a)
        paired = _paired_batch_dims(lhs_batch, rhs_batch, contracted)
        if paired is None:
            return [unknown("a dot that pairs different examples")]
        if paired == "contracting":
            return [Kind("sum", degree) if not result_batch else unknown("a dot over part of the batch dims")]
        return [Kind("batch", degree)]
    if not result_batch:
        return [unknown("a dot whose result drops the batch dim of one operand")]
    return [Kind("batch", degree)]


def _dot_dims(a: ir.Operation) -> dict[str, list[int]]:
    text = str(a.attributes["dot_dimension_numbers"])
    out: dict[str, list[int]] = {}
    for key in (
        "lhs_batching_dimensions",
        "rhs_batching_dimensions",
        "lhs_contracting_dimensions",
        "rhs_contracting_dimensions",
    ):
        out[key] = []
        if key in text:
            part = text.split(key, 1)[1].split("[", 1)[1].split("]", 1)[0]
            out[key] = [int(t) for t in part.split(",") if t.strip()]
    return out


def _paired_batch_dims(lhs: list[int], rhs: list[int], dims: dict[str, list[int]]) -> str | None:
    """ "contracting" when every batch dim of both operands is contracted, "batching" when every one is a
    batching dim (attention's per-example dots), None when examples would be paired across."""
    for kind in ("contracting", "batching"):
        lhs_dims, rhs_dims = dims[f"lhs_{kind}_dimensions"], dims[f"rhs_{kind}_dimensions"]
        if set(lhs) <= set(lhs_dims) and set(rhs) <= set(rhs_dims):
            pairs = {(lhs_dims.index(d), rhs_dims.index(e)) for d in lhs for e in rhs}
            if (
                all(i == j for i, j in pairs)
                or len(lhs) == len(rhs) == 1
                and lhs_dims.index(lhs[0]) == rhs_dims.index(rhs[0])
            ):
                return kind
    return None


def _select(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    pred, x, y = ins
    if (picked := decided_select(it, a, ins)) is not None:
        return [picked]
    if pred.tag == "sum" or pred.degree != 0 and pred.tag != "zero":
        return [unknown("a select on a predicate that depends on a sum over the examples")]
    out = it.added(a, x, y) if x.tag != "zero" and y.tag != "zero" else (y if x.tag == "zero" else x)
    if out.tag == "const" and pred.tag == "batch":
        out = Kind("batch", out.degree)
    if out.tag == "sum" and pred.tag == "batch":
        return [unknown("a select between sums on a per-example predicate")]
    return [it.reshaped(a, out) if out.tag == "batch" else out]


def _iota(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    dim = ir.IntegerAttr(a.attributes["iota_dimension"]).value
    batch = it.batch_dims(a.results[0])
    if dim in batch:
        # Random bits drawn in a loop come from such an index, so name where it was made: the
        # output that cannot combine is often far from it (the loss).
        where = format_location(a.location)
        return [
            unknown(
                f"an iota over the batch dim{f' at {where}' if where else ''} (an index of the example "
                "within its micro-batch: jnp.arange over the batch used as data with the parameters' "
                "work, or random bits drawn inside a loop; draw them before it)"
            )
        ]
    return [Kind("batch", 0) if batch else SAME]


def _gather(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    data, index = ins[0], ins[1]
    if "sum" in (data.tag, index.tag) or index.degree != 0 and index.tag != "zero":
        return [unknown(f"{a.name} with a sum over the examples")]
    if (data.tag == "batch" or index.tag == "batch") and not it.batch_dims(a.results[0]):
        return [unknown(f"{a.name} picks single examples out of the batch")]
    if data.tag == "zero":
        return [ZERO]
    crossing = crosses_examples(it, a, b)
    if crossing:
        return [unknown(crossing)]
    if data.tag == "batch" or index.tag == "batch":
        return [Kind("batch", data.degree if data.tag != "zero" else 0)]
    return [data]


def _scatter(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    if len(a.results) != 1:
        return [unknown("a multi-operand scatter")] * len(a.results)
    target, index, update = ins
    body = _reduce_body(a)
    if index.tag == "sum" or (index.tag != "zero" and index.degree != 0):
        return [unknown("a scatter with indices that scale with the batch")]
    if it.batch_dims(a.results[0]):
        crossing = crosses_examples(it, a, b)
        if crossing:
            out = unknown(crossing)
        elif body == "stablehlo.add":
            out = it.added(a, target, update)
        else:  # each example's rows written from its own update (`m.at[:, 0].set(v)`): of one degree
            degrees = {k.degree for k in (target, update) if k.tag != "zero"}
            out = join(target, update) if len(degrees) <= 1 else unknown(f"a {body} scatter mixing scales")
        return [Kind("batch", out.degree) if out.tag == "const" else out]
    if update.tag == "batch":
        if body != "stablehlo.add":
            return [unknown(f"a {body} scatter of example data")]
        return [it.added(a, target, Kind("sum", update.degree))]
    return [it.added(a, target, update) if body == "stablehlo.add" else unknown(f"a {body} scatter")]


def _convolution(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    x, y = ins[:2]
    if x.tag == "zero" or y.tag == "zero":
        return [ZERO]
    if "sum" in (x.tag, y.tag) or x.degree is None or y.degree is None:
        return [unknown("a convolution of a sum over the examples")]
    degree = x.degree + y.degree
    if x.tag == y.tag == "batch":  # the kernel gradient: examples contracted
        if it.batch_dims(a.results[0]):
            return [unknown("a convolution that pairs examples")]
        return [Kind("sum", degree)]
    if not it.batch_dims(a.results[0]):
        return [unknown("a convolution whose result drops the batch dim")]
    if x.tag == "batch" and _kernel_spans_examples(it, a):
        return [unknown("a convolution whose window spans examples (the batch dim as a spatial dim)")]
    return [Kind("batch", degree)]


def _kernel_spans_examples(it: Interpreter, a: ir.Operation) -> bool:
    """Whether a batch dim of the input is one of its spatial dims with a window wider than one example
    (a kernel size, stride, dilation or padding other than 1, 1, 1 and none)."""
    from jaxlib.mlir.dialects import stablehlo

    attrs = a.attributes
    numbers = stablehlo.ConvDimensionNumbers(attrs["dimension_numbers"])
    spatial = list(numbers.input_spatial_dimensions)
    kernel_shape = ir.RankedTensorType(a.operands[1].type).shape
    kernel = [kernel_shape[d] for d in numbers.kernel_spatial_dimensions]

    def per_dim(name: str) -> list[int]:
        return list(ir.DenseI64ArrayAttr(attrs[name])) if name in attrs else [1] * len(spatial)

    strides, lhs, rhs = per_dim("window_strides"), per_dim("lhs_dilation"), per_dim("rhs_dilation")
    padding = [int(v) for v in ir.DenseIntElementsAttr(attrs["padding"])] if "padding" in attrs else []
    for d in it.batch_dims(a.operands[0]):
        if d in spatial:
            j = spatial.index(d)
            if (kernel[j], strides[j], lhs[j], rhs[j]) != (1, 1, 1, 1) or any(padding[2 * j : 2 * j + 2]):
                return True
    return False


def _window_spans_examples(it: Interpreter, a: ir.Operation, operand: ir.Value) -> bool:
    """Whether a window of `a` (reduce_window, select_and_scatter) covers more than one example: on a
    batch dim of `operand`, a window or stride other than 1, a dilation, or padding."""
    attrs = a.attributes

    def per_dim(name: str, default: int) -> list[int]:
        if name not in attrs:
            return [default] * ir.RankedTensorType(operand.type).rank
        return list(ir.DenseI64ArrayAttr(attrs[name]))

    window, strides = per_dim("window_dimensions", 1), per_dim("window_strides", 1)
    base, dilation = per_dim("base_dilations", 1), per_dim("window_dilations", 1)
    padding = [int(v) for v in ir.DenseIntElementsAttr(attrs["padding"])] if "padding" in attrs else []
    for d in it.batch_dims(operand):
        if (window[d], strides[d], base[d], dilation[d]) != (1, 1, 1, 1) or any(padding[2 * d : 2 * d + 2]):
            return True
    return False


def _reduce_window(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    """Pooling: per example when no window crosses the batch dims, of the operand's degree when the window
    is homogeneous: a sum or a max/min window (positively homogeneous) with a 0 init value, or any of them
    over a degree-0 operand (activations) with a degree-0 init value (-inf for a max pool)."""
    if len(a.results) != 1:
        return [unknown("a multi-operand reduce_window")] * len(a.results)
    x, init = ins
    body = _reduce_body(a)
    if x.tag != "batch" or x.degree is None or init.tag not in ("zero", "const"):
        return [unknown(f"a reduce_window of a {x.tag} value")]
    if _window_spans_examples(it, a, a.operands[0]):
        return [unknown("a reduce_window whose windows span examples")]
    homogeneous = init.tag == "zero" or x.degree == 0 and init.degree == 0
    if body in ("stablehlo.add", "stablehlo.maximum", "stablehlo.minimum") and homogeneous:
        return [Kind("batch", x.degree)]
    return [unknown(f"a {body} reduce_window of example data")]


def _select_and_scatter(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    """The gradient of a max pool: each window's cotangent (`source`) goes to the operand element its
    select picked, added. Per example when no window crosses the batch dims, of the source's degree."""
    operand, source, init = ins
    if operand.tag not in ("batch", "const", "zero") or operand.degree is None:
        return [unknown(f"a select_and_scatter over a {operand.tag} value")]
    if source.tag == "zero":
        return [init if init.tag == "zero" else unknown("a select_and_scatter onto a non-zero init")]
    if source.tag != "batch" or init.tag != "zero" or _reduce_body(a) != "stablehlo.add":
        return [unknown(f"a select_and_scatter of a {source.tag} value")]
    if _window_spans_examples(it, a, a.operands[0]):
        return [unknown("a select_and_scatter whose windows span examples")]
    return [Kind("batch", source.degree)]


def _custom_call(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    target = ir.StringAttr(a.attributes["call_target_name"]).value
    if target in ("Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape") and len(ins) == 1:
        return [ins[0]]
    return [unknown(f"custom_call @{target} on example data")] * len(a.results)


def _while(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    """Iterates the body's kinds to a fixpoint from the initial carried values (at most 8 rounds)."""
    cond_a, body_a = a.regions[0].blocks[0], a.regions[1].blocks[0]
    cond_b, body_b = b.regions[0].blocks[0], b.regions[1].blocks[0]
    carried = list(ins)
    for _ in range(8):
        for block_a, block_b in ((cond_a, cond_b), (body_a, body_b)):
            for arg_a, arg_b, k in zip(block_a.arguments, block_b.arguments, carried, strict=True):
                it.bind(arg_a, arg_b, k)
            it.run_block(block_a, block_b)
        cond_out = it.kind(terminator(cond_a).operands[0])
        if cond_out.tag == "sum" or cond_out.tag == "unknown" or cond_out.tag == "batch":
            return [unknown("a loop whose trip count depends on the examples")] * len(a.results)
        new = [join(k, it.kind(v)) for k, v in zip(carried, terminator(body_a).operands, strict=True)]
        if new == carried:
            return carried
        carried = new
    return [unknown("a loop whose carried values do not settle")] * len(a.results)


def _case(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    if ins[0].tag not in ("zero", "const"):
        return [unknown("a branch on example data")] * len(a.results)
    outs: list[Kind] | None = None
    for region_a, region_b in zip(a.regions, b.regions, strict=True):
        it.run_block(region_a.blocks[0], region_b.blocks[0])
        kinds = [it.kind(v) for v in terminator(region_a.blocks[0]).operands]
        outs = kinds if outs is None else [join(x, y) for x, y in zip(outs, kinds, strict=True)]
    return outs or []


def _sort(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    """Sorting within each example (lax.top_k over a token's experts, an argsort of a row) keeps the
    examples apart; sorting along the batch dim orders them against each other."""
    n = len(a.results)
    dim = ir.IntegerAttr(a.attributes["dimension"]).value
    if dim in it.batch_dims(a.operands[0]):
        return [unknown("a sort along the batch dim (examples ordered against each other)")] * n
    if any(k.tag not in ("zero", "const", "batch") or k.degree != 0 for k in ins):
        return [unknown("a sort of a value that scales with the micro-batch size")] * n
    return [Kind("batch", 0) if it.batch_dims(r) else SAME for r in a.results]


def _fft(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    """A Fourier transform over its operand's trailing dims (FNet's token mixing, a Fourier neural
    operator): linear, and per example when none of them is a batch dim."""
    k = ins[0]
    rank = ir.RankedTensorType(a.operands[0].type).rank
    transformed = set(range(rank - len(ir.DenseI64ArrayAttr(a.attributes["fft_length"])), rank))
    if transformed & set(it.batch_dims(a.operands[0])):
        return [unknown("an FFT along the batch dim (each example mixed with the others)")]
    return [k]  # linear: a per-example value, a sum over the examples or a constant keeps its kind


def _shape_op(it: Interpreter, a: ir.Operation, b: ir.Operation, ins: list[Kind]) -> list[Kind]:
    """Slices, pads, reverses, concatenations and updates: each example's elements stay its own unless
    the op cuts into, reorders or extends the batch dim."""
    return [_shape_kind(it, a, ins)]


def _shape_kind(it: Interpreter, a: ir.Operation, ins: list[Kind]) -> Kind:
    data = ins[0]
    if a.name == "stablehlo.concatenate":
        dim = ir.IntegerAttr(a.attributes["dimension"]).value
        if dim in it.batch_dims(a.results[0]):
            return unknown("concatenate along the batch dim")
        live = [k for k in ins if k.tag != "zero"]
        out = live[0] if live else ZERO
        for k in live[1:]:
            out = it.added(a, out, k)
        return it.reshaped(a, out) if out.tag != "unknown" else out
    if a.name == "stablehlo.pad" and data.tag != "zero" and _pads_batch(it, a):
        return unknown("a pad along the batch dim (each micro-batch padded on its own)")
    if a.name == "stablehlo.reverse" and data.tag != "zero":
        reversed_dims = set(ir.DenseI64ArrayAttr(a.attributes["dimensions"]))
        if reversed_dims & set(it.batch_dims(a.operands[0])):
            return unknown("a reverse along the batch dim (each example paired with another)")
    indices = ins[1:]  # dynamic_slice's start indices, pad's padding value
    if a.name == "stablehlo.dynamic_update_slice":
        data, indices = it.added(a, ins[0], ins[1]), ins[2:]
        if data.tag == "unknown":
            return data
    if any(k.tag not in ("zero", "const") or k.degree != 0 for k in indices):
        return unknown(f"{a.name} with indices or padding that depend on the examples")
    operand_dims = len(it.batch_dims(a.operands[0]))
    if data.tag == "batch" and len(it.batch_dims(a.results[0])) != operand_dims:
        return unknown(f"{a.name} cuts into the batch dim")
    return it.reshaped(a, data) if data.tag == "batch" else data


def _pads_batch(it: Interpreter, a: ir.Operation) -> bool:
    """Whether a pad adds rows along a batch dim of its operand other than spreading each row over k
    (interior k - 1, low + high k - 1: the gradient of `h[s::k]`), which puts every row where the whole
    batch's pad puts it."""
    keys = ("edge_padding_low", "edge_padding_high", "interior_padding")
    widths = zip(*(ir.DenseI64ArrayAttr(a.attributes[k]) for k in keys), strict=True)
    batch = it.batch_dims(a.operands[0])
    return any(low + high != interior for d, (low, high, interior) in enumerate(widths) if d in batch)


HANDLERS = {
    "stablehlo.multiply": _multiply,
    "stablehlo.divide": _divide,
    "stablehlo.broadcast_in_dim": _broadcast,
    "stablehlo.reduce": _reduce,
    "stablehlo.dot_general": _dot_general,
    "stablehlo.select": _select,
    "stablehlo.iota": _iota,
    "stablehlo.gather": _gather,
    "stablehlo.scatter": _scatter,
    "stablehlo.convolution": _convolution,
    "stablehlo.reduce_window": _reduce_window,
    "stablehlo.select_and_scatter": _select_and_scatter,
    "stablehlo.custom_call": _custom_call,
    "stablehlo.sort": _sort,
    "stablehlo.fft": _fft,
    "stablehlo.while": _while,
    "stablehlo.case": _case,
    "stablehlo.if": _case,
    **{name: _shape_op for name in SHAPE_OPS},
}
