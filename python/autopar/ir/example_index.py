"""Random bits per example drawn as the whole batch draws them: dropout, noise, random masks.

JAX draws an array's random bits from counters, one per element: its index in the array, the sum of one
uint64 iota per dim times that dim's row-major stride (jax's `iota_2x32_shape`, what every
`jax.random` sampler lowers through). Along the batch dim that iota counts the examples of ONE
micro-batch, so every micro-batch would draw the bits of the batch's first examples: dropout masks other
than jax.jit's, and ir/micro_batch.py refuses the step ("an iota over the batch dim").

`index_examples(small, large)` replaces each such counter by the example's index in the whole batch,
read from a new batch argument (`autopar.path` "index of each example in the batch") that the runtime
fills with `arange(B * m)` (runtime/statistics.py) and cuts into micro-batches like any batch argument.
Micro-batch k then counts k*m, ..., k*m + m - 1 and draws exactly the bits the whole batch draws for its
examples. Only counters are replaced: a uint64 iota (jnp's own indices are int32, and stay refused or
are read by ir/micro_batch_indices.py) along the one batch dim of its shape, m long, with only unit dims
before it (the strides of the dims after it do not involve the batch size), read only by the stride
multiplications. Counters inside loops are replaced too (dropout in layers scanned with `nn.scan` draws
its bits in the loop's body): the body reads the new argument from @main by implicit capture, as
`stablehlo.case` branches read values in every program JAX lowers (XLA passes such values into the loop,
and autopar's stage slicing counts what regions read). Bits drawn time-major ([T, B, ...]) are taken from
the whole batch instead (ir/whole_batch.py).

    before: %8 = stablehlo.iota dim = 0 : tensor<4x3xui64>
    after:  %8 = stablehlo.convert %arg2 : (tensor<4xui32>) -> tensor<4xui64>
            %9 = stablehlo.broadcast_in_dim %8, dims = [0] : (tensor<4xui64>) -> tensor<4x3xui64>
"""

from __future__ import annotations

import dataclasses

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from autopar.ir.batch_statistics import append_argument
from autopar.ir.micro_batch import main_function, shape_batch_dims

PATH = "index of each example in the batch"


@dataclasses.dataclass(frozen=True)
class Indexing:
    """Where index_examples replaced counters: the new argument's position, and each counter's position
    among @main's ops (`nested_ops` order, before the replacement) with the batch dim it counted."""

    argument: int
    counters: tuple[tuple[int, int], ...]


def index_examples(small: ir.Module, large: ir.Module, micro_batch_size: int) -> Indexing | None:
    """Replaces the random-bit counters along the batch dim of `small` and `large` (the step at m and 2m
    examples per micro-batch, both inlined) in place; returns where, or None when there was none."""
    mains = [main_function(m) for m in (small, large)]
    blocks = [main.regions[0].blocks[0] for main in mains]
    small_ops, large_ops = (nested_ops(b) for b in blocks)
    if len(small_ops) != len(large_ops):
        return None  # the lowerings do not pair up: ir/micro_batch.py says so
    pairs = enumerate(zip(small_ops, large_ops, strict=True))
    counters = [(i, d) for i, (a, b) in pairs if (d := _counter_dim(a, b, micro_batch_size)) is not None]
    if not counters:
        return None
    indexing = Indexing(len(blocks[0].arguments), tuple(counters))
    for module, size in ((small, micro_batch_size), (large, 2 * micro_batch_size)):
        apply(module, indexing, size)
    return indexing


def apply(module: ir.Module, indexing: Indexing, size: int) -> bool:
    """Replaces the counters `indexing` names in `module` (the same step, inlined, at `size` examples),
    reading a new batch argument of `size` example indices; False, with nothing changed, when `module`'s
    ops at those places are not iotas (it does not pair up with the step `indexing` was found in)."""
    main = main_function(module)
    ops = nested_ops(main.regions[0].blocks[0])
    if any(p >= len(ops) or ops[p].name != "stablehlo.iota" for p, _ in indexing.counters):
        return False
    with main.context, ir.Location.unknown():  # a type's verifier asks for one
        indices = ir.RankedTensorType.get([size], ir.IntegerType.get_unsigned(32))
    index = append_argument(main, indices, PATH, batch=True)
    for position, dim in indexing.counters:
        _replace(ops[position], index, dim)
    return True


def nested_ops(block: ir.Block) -> list[ir.Operation]:
    """The ops of `block` and of every region nested in them, each op before the ops of its regions."""
    out = []
    for op in block.operations:
        out.append(op.operation)
        for region in op.operation.regions:
            for inner in region.blocks:
                out += nested_ops(inner)
    return out


def _counter_dim(a: ir.Operation, b: ir.Operation, m: int) -> int | None:
    """The batch dim a random-bit counter `a` (twin `b` at 2m examples) counts along, or None when `a` is
    none such (module docstring)."""
    if a.name != "stablehlo.iota" or b.name != "stablehlo.iota":
        return None
    t = ir.RankedTensorType(a.results[0].type)
    element = t.element_type
    if not (isinstance(element, ir.IntegerType) and element.width == 64 and element.is_unsigned):
        return None
    small, large = tuple(t.shape), tuple(ir.RankedTensorType(b.results[0].type).shape)
    dim = ir.IntegerAttr(a.attributes["iota_dimension"]).value
    if shape_batch_dims(small, large) != [dim] or (small[dim], large[dim]) != (m, 2 * m):
        return None
    if any(n != 1 for n in small[:dim]):
        return None
    return dim if all(use.owner.name == "stablehlo.multiply" for use in a.results[0].uses) else None


def _replace(iota: ir.Operation, index: ir.Value, dim: int) -> None:
    """`iota` (a counter along `dim`) as the broadcast example indices."""
    t = ir.RankedTensorType(iota.results[0].type)
    with iota.context, iota.location, ir.InsertionPoint(iota):
        wide = stablehlo.ConvertOp(ir.RankedTensorType.get([t.shape[dim]], t.element_type), index).result
        counter = stablehlo.BroadcastInDimOp(t, wide, ir.DenseI64ArrayAttr.get([dim])).result
    iota.results[0].replace_all_uses_with(counter)
    iota.erase()
