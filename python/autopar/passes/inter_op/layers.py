"""Assigning every op of a training step to a layer and a part (forward, backward, apply).

Forward ops are cut into layers by the C++ layer-construction DP (or at hand-placed markers). Backward
ops are paired with forward layers by JAX's name stack (`transpose(jvp(Block_3))` pairs with
`jvp(Block_3)`), then by data flow (the activations and parameters they read), then by the cotangents
they read. Apply (optimizer) ops follow the parameter they update. Ops that need no input (constants,
iota, broadcasts of constants) follow their first user: outlining clones them where they are used.
"""

from __future__ import annotations

import dataclasses
import math
import re

from jaxlib.mlir import ir

from autopar import _core
from autopar.errors import PassError
from autopar.ir import attrs
from autopar.passes.inter_op.graph import HEAVY_OPS, Graph, Node

FORWARD, BACKWARD, APPLY = "forward", "backward", "apply"


@dataclasses.dataclass(frozen=True)
class LayeredGraph:
    """@main's op graph with the layer and part of every op, as autopar-cluster-layers left them: what
    every phase of autopar-inter-op reads.

    Attributes:
      graph: the op graph of @main.
      layer: the layer of each node.
      part: FORWARD, BACKWARD or APPLY, per node.
      free: per node, whether it needs no input (constants and what only they feed): such ops are cloned
        where they are used, never counted as a layer's.
      num_layers: the number of layers (trailing empty layers included).
    """

    graph: Graph
    layer: list[int]
    part: list[str]
    free: list[bool]
    num_layers: int


@dataclasses.dataclass
class Assignment:
    layer: list[int]
    part: list[str]
    num_layers: int


def classify_parts(graph: Graph) -> tuple[list[str], list[bool]]:
    """(part per node, whether it is free). Backward = under `transpose(` in the name stack or a backward
    marker; apply = anything else computed from backward values; forward = the rest."""
    nodes = graph.nodes
    free = [False] * len(nodes)
    for i, node in enumerate(nodes):
        free[i] = not node.args and all(free[p] for p in node.operands) and not node.boundary
        # An op with a side effect on constants (a print in an unrolled loop) is read by nobody: free, no
        # part would clone it, and outlining would drop it. It runs where its layer is.
        free[i] = free[i] and not _has_side_effect(node.op)
    part = [FORWARD] * len(nodes)
    for i, node in enumerate(nodes):
        if node.boundary == "backward" or "transpose(" in node.scope:
            part[i] = BACKWARD
    if BACKWARD not in part:
        return part, free
    depends_on_backward = [False] * len(nodes)
    per_example = [_per_example(node.op) for node in nodes]
    # A constant that changes with the micro-batch's size (the m of a mean) divides correctly only per
    # micro-batch: read in the apply part, which runs once per step, it would be one micro-batch's.
    # Read by its own label and its operands': a label that only repeats an enclosing branch's reason
    # (ir/micro_batch.annotate) says nothing of a size. optax.apply_if_finite's cond, written out as selects,
    # left such labels on its constants, and counting them sent the whole update to the backward part.
    sized = [False] * len(nodes)
    for i, node in enumerate(nodes):
        labels = attrs.get_micro_batch_labels(node.op) or ()
        sized_label = any(label != "same" and not label.startswith("unknown:") for label in labels)
        sized[i] = free[i] and (sized_label or any(sized[p] for p in node.operands))
    on_examples = [
        per_example[i] or _reads_per_example(node.op) or any(sized[p] for p in node.operands)
        for i, node in enumerate(nodes)
    ]
    for i, node in enumerate(nodes):
        depends_on_backward[i] = part[i] == BACKWARD or any(depends_on_backward[p] for p in node.operands)
        if depends_on_backward[i] and part[i] != BACKWARD and not free[i]:
            # Work on per-example values (DP-SGD's clipping of per-example gradients, and the mean that
            # ends it) runs once per micro-batch, with the backward pass: the apply part runs once per
            # step and would see one micro-batch of them.
            if on_examples[i]:
                part[i] = BACKWARD
            else:
                part[i] = APPLY
    for i in reversed(range(len(nodes))):  # what such work reads after the backward pass runs with it
        if part[i] == APPLY and any(part[u] == BACKWARD for u in nodes[i].users):
            part[i] = BACKWARD
    # Optimizer arithmetic on state alone (Adam's b1 * mu, the step count) is apply work too: an op that
    # only apply ops use runs with them, on the stage that owns the state, not in the last forward layer.
    # Dead ops (no user, not returned) do not hold an op back, and follow their producers. Work on examples
    # stays, as above: a loss that only the apply part reads besides being returned (`jnp.where(
    # jnp.isfinite(loss), new, old)`) is computed per micro-batch and combined, and only what follows the
    # combined loss moves (before, its per-example terms were pulled into the apply part too).
    # A returned value that does not combine over micro-batches, computed from values that do (the best
    # loss so far, `jnp.where(loss < best, loss, best)`; optax.contrib.reduce_on_plateau's test of the loss)
    # runs in the apply part too, once per step from the combined loss, as the full batch computes it: per
    # micro-batch, its micro-batches' results have no exact combination and the step was refused.
    returned = set(graph.returns)
    dead = [not node.users and i not in returned for i, node in enumerate(nodes)]
    inexact = _made_from_inexact_values(nodes)
    for i in reversed(range(len(nodes))):
        node = nodes[i]
        if part[i] != FORWARD or free[i] or node.boundary or on_examples[i]:
            continue
        live_users = [u for u in node.users if not dead[u]]
        if (live_users or (i in returned and inexact[i])) and all(part[u] == APPLY for u in live_users):
            part[i] = APPLY
    for i, node in enumerate(nodes):
        if dead[i] and part[i] == FORWARD and any(part[p] == APPLY for p in node.operands):
            part[i] = APPLY
    return part, free


def _made_from_inexact_values(nodes: list[Node]) -> list[bool]:
    """Per node, whether it is computed from a value without an exact combination over micro-batches: one
    labelled "unknown:<why>", or an op on example data added after labelling (flattened conditionals'
    selects) that does not just carry its operand's label, as the runtime reads them (runtime/step.py)."""
    data, inexact = [False] * len(nodes), [False] * len(nodes)
    for i, node in enumerate(nodes):
        labels = attrs.get_micro_batch_labels(node.op)
        live = [p for p in node.operands if data[p]]
        if labels is not None:
            data[i] = any(label != "same" for label in labels)
            unknown = any(label.startswith("unknown:") for label in labels)
        else:
            data[i] = bool(live)
            unknown = bool(live) and not (node.op.name in attrs.LABEL_CARRYING_OPS and len(live) == 1)
        inexact[i] = unknown or any(inexact[p] for p in node.operands)
    return inexact


def _per_example(op: ir.Operation) -> bool:
    """Whether a result holds a value per example (parallelize's micro-batch label "batch" or "concat")."""
    return any(_is_per_example(label) for label in attrs.get_micro_batch_labels(op) or ())


def _has_side_effect(op: ir.Operation) -> bool:
    """Whether the op or an op in its regions has an effect besides its results (a host callback, I/O)."""
    found = []

    def visit(inner: ir.Operation) -> ir.WalkResult:
        effect = inner.name in _EFFECT_OPS or (
            inner.name == "stablehlo.custom_call"
            and "has_side_effect" in inner.attributes
            and ir.BoolAttr(inner.attributes["has_side_effect"]).value
        )
        if effect:
            found.append(inner)
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    op.walk(visit)
    return bool(found)


_EFFECT_OPS = frozenset({"stablehlo.infeed", "stablehlo.outfeed", "stablehlo.send", "stablehlo.recv"})


def _reads_per_example(op: ir.Operation) -> bool:
    """Whether an operand is a per-example value. Read per value, not per producer: a loop over time left
    whole returns per-example states beside the gradients it sums, and Adam's update of such a gradient is
    apply work."""
    for value in op.operands:
        owner = value.owner
        labels = None if isinstance(owner, ir.Block) else attrs.get_micro_batch_labels(owner)
        if labels and _is_per_example(labels[value.result_number]):
            return True
    return False


def _is_per_example(label: str) -> bool:
    return label == "batch" or label.startswith("concat:")


def assign_layers(graph: Graph, num_layers: int, eps: float) -> Assignment:
    nodes = graph.nodes
    part, free = classify_parts(graph)
    forward = [i for i in range(len(nodes)) if part[i] == FORWARD and not free[i]]
    if not forward:
        raise PassError("@main has no forward computation to cluster into layers", graph.fn.location)
    markers = [i for i in forward if nodes[i].boundary == "forward"]
    layer = [-1] * len(nodes)
    if markers:
        count = _layers_from_markers(graph, forward, markers, num_layers, layer)
    else:
        count = _layers_from_dp(graph, forward, num_layers, eps, layer)
    backward = [i for i in range(len(nodes)) if part[i] == BACKWARD and not free[i]]
    backward_markers = [i for i in backward if nodes[i].boundary == "backward"]
    if markers and backward:
        _check_markers_pair(graph, markers, backward_markers)
        _backward_from_markers(backward, backward_markers, count, layer)
    else:
        _backward_from_pairing(graph, backward, part, layer, count)
    _make_backward_monotone(graph, backward, part, layer)
    _assign_apply(graph, part, free, layer)
    _assign_free(graph, part, free, layer)
    return Assignment(layer, part, count)


def _layers_from_markers(
    graph: Graph, forward: list[int], markers: list[int], num_layers: int, layer: list[int]
) -> int:
    count = len(markers) + 1
    if num_layers not in (0, count):
        raise PassError(
            f"num-layers={num_layers} disagrees with the {len(markers)} pipeline boundaries marked by hand "
            f"({count} layers): drop num-layers or set it to {count}",
            graph.nodes[markers[0]].op.location,
        )
    current = 0
    for i in forward:
        layer[i] = current
        if graph.nodes[i].boundary == "forward":
            current += 1  # the marker belongs to the layer that produced its operands
    return count


def _layers_from_dp(graph: Graph, forward: list[int], num_layers: int, eps: float, layer: list[int]) -> int:
    if num_layers <= 0:
        raise PassError(
            "autopar-cluster-layers needs num-layers >= 1 (or pipeline boundaries marked by hand)"
        )
    nodes = graph.nodes
    # Blocks end at each dot/convolution so that cuts fall between the expensive ops; ops after the last
    # one join the last block. Without enough heavy ops, every op is a block.
    heavy = [i for i in forward if nodes[i].name in HEAVY_OPS]
    block_of: dict[int, int] = {}
    if len(heavy) >= num_layers:
        b = 0
        for i in forward:
            block_of[i] = b
            if nodes[i].name in HEAVY_OPS and b < len(heavy) - 1:
                b += 1
        num_blocks = len(heavy)
    else:
        block_of = {i: k for k, i in enumerate(forward)}
        num_blocks = len(forward)
    if num_layers > num_blocks:
        raise PassError(
            f"cannot cluster into {num_layers} layers: the forward pass has only {num_blocks} "
            f"{'dot/convolution ops' if len(heavy) >= num_blocks else 'ops'}; use num-layers <= {num_blocks}",
            graph.fn.location,
        )
    flops = [0.0] * num_blocks
    for i in forward:
        flops[block_of[i]] += nodes[i].flops
    values = []
    for i in forward:
        consumers = sorted(
            {block_of[u] for u in nodes[i].users if u in block_of and block_of[u] != block_of[i]}
        )
        if consumers:
            values.append((block_of[i], nodes[i].out_bytes, consumers))
    try:
        result = _core.cluster_layers(flops, values, num_layers, _effective_eps(flops, num_layers, eps))
    except ValueError as err:
        # The core reports the raised eps; the user asked for theirs.
        message = re.sub(r"within eps=\S+", f"within eps={eps:g}", str(err))
        if "most balanced cut needs" in message:
            message += " (AutoLayerOption(eps=...), or the pass option eps), or cut fewer layers"
        raise PassError(message, graph.fn.location) from None
    layer_of_block = result.layer_of_block
    for i in forward:
        layer[i] = layer_of_block[block_of[i]]
    return num_layers


def _effective_eps(flops: list[float], num_layers: int, eps: float) -> float:
    """eps, raised so that the heaviest block fits in a layer of its own: a block is indivisible (it ends
    at one dot or convolution), so no cut can beat it. Without this, one op bigger than (1 + eps) x the
    mean layer (MoE-380M's 16x1024x32000 LM-head matmul is 2.15x the mean of 16 layers) made clustering
    fail although cutting around it is the best balance there is."""
    mean = sum(flops) / num_layers
    if mean <= 0:
        return eps
    return max(eps, max(flops) / mean - 1.0)


def _check_markers_pair(graph: Graph, forward_markers: list[int], backward_markers: list[int]) -> None:
    nodes = graph.nodes
    if len(forward_markers) != len(backward_markers):
        raise PassError(
            f"pipeline markers do not pair: {len(forward_markers)} forward boundaries but "
            f"{len(backward_markers)} backward boundaries (every marked value must reach the loss, and "
            "backward markers come only from jax.grad of a forward marker)",
            nodes[(forward_markers or backward_markers)[0]].op.location,
        )
    # JAX transposes in reverse order: the k-th backward marker is the transpose of the (n-1-k)-th forward.
    for k, b in enumerate(backward_markers):
        f = forward_markers[len(forward_markers) - 1 - k]
        ftypes = [str(r.type) for r in nodes[f].op.results]
        btypes = [str(r.type) for r in nodes[b].op.results]
        if ftypes != btypes:
            raise PassError(
                f"pipeline markers do not pair: forward boundary {len(forward_markers) - 1 - k} carries "
                f"({', '.join(ftypes)}) but its backward boundary carries ({', '.join(btypes)})",
                nodes[b].op.location,
            )


def _backward_from_markers(
    backward: list[int], backward_markers: list[int], count: int, layer: list[int]
) -> None:
    current = count - 1
    markers = set(backward_markers)
    for i in backward:
        layer[i] = current
        if i in markers:
            current -= 1


def _scope_key(scope: str) -> str:
    """`jit(f)/transpose(jvp(Block_3))/mlp` and `jit(f)/jvp(Block_3)/mlp` -> `jit(f)/Block_3/mlp`."""
    key = scope.replace("transpose(", "").replace("jvp(", "")
    out, depth = [], 0
    for ch in key:
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                continue  # closing paren of a removed wrapper
            depth -= 1
        out.append(ch)
    return "".join(out).rstrip("/")


def _backward_from_pairing(
    graph: Graph, backward: list[int], part: list[str], layer: list[int], count: int
) -> None:
    nodes = graph.nodes
    layers_of_key: dict[str, set[int]] = {}
    arg_layers: dict[int, set[int]] = {}
    for i, node in enumerate(nodes):
        if part[i] == FORWARD and layer[i] >= 0:
            layers_of_key.setdefault(_scope_key(node.scope), set()).add(layer[i])
            for a in node.args:
                arg_layers.setdefault(a, set()).add(layer[i])
    # A forward value read by forward ops of its own layer only is interior to that layer: a backward op
    # reading it surely belongs to that layer. A boundary value may belong to either side.
    interior = [
        part[i] == FORWARD
        and layer[i] >= 0
        and all(layer[u] in (layer[i], -1) for u in nodes[i].users if part[u] == FORWARD)
        for i in range(len(nodes))
    ]
    for i in backward:
        node = nodes[i]
        by_name = layers_of_key.get(_scope_key(node.scope), set())
        if len(by_name) == 1:
            layer[i] = next(iter(by_name))
            continue
        strong = [layer[p] for p in node.operands if interior[p]]
        strong += [next(iter(arg_layers[a])) for a in node.args if len(arg_layers.get(a, ())) == 1]
        if strong:
            layer[i] = max(strong)
            continue
        cotangents = [layer[p] for p in node.operands if part[p] == BACKWARD and layer[p] >= 0]
        weak = [layer[p] for p in node.operands if part[p] == FORWARD and layer[p] >= 0]
        if cotangents:
            layer[i] = min(cotangents)
        elif weak:
            layer[i] = max(weak)
        else:
            layer[i] = count - 1  # the loss seed: backward starts at the last layer


def _make_backward_monotone(graph: Graph, backward: list[int], part: list[str], layer: list[int]) -> None:
    # Backward stages run from the last layer down: a backward value may only flow to an equal or lower
    # layer. Raise producers that feed a higher layer (users come later in program order).
    nodes = graph.nodes
    for i in reversed(backward):
        for u in nodes[i].users:
            if part[u] == BACKWARD and layer[u] > layer[i]:
                layer[i] = layer[u]


# Results of at most this many elements count as tiny: a step count, Adam's bias corrections.
_TINY_ELEMENTS = 16
# Ops whose copies might not agree or that talk to the host: never recomputed.
_NOT_REPLICABLE = frozenset({"stablehlo.custom_call", "stablehlo.rng", "stablehlo.rng_bit_generator"})


def replicable_apply_ops(graph: Graph, part: list[str], free: list[bool]) -> list[bool]:
    """Per node, whether every apply part that reads it recomputes it instead of receiving it: an apply op
    computed from state alone (its inputs are @main arguments, constants or other such ops, never a
    gradient) whose results are tiny (at most 16 elements each: optax's step count and the bias
    corrections Adam derives from it). Received, such a value made each stage's apply wait for the apply of
    the stage owning the state, which under 1F1B runs last; recomputed, every apply part starts as soon
    as its own gradients are in. The op still belongs to its own stage, which returns what @main returns."""
    nodes = graph.nodes
    out = [False] * len(nodes)
    for i, node in enumerate(nodes):  # program order: operands come first
        out[i] = (
            part[i] == APPLY
            and not free[i]
            and not node.boundary
            and node.name not in _NOT_REPLICABLE
            and all(free[p] or out[p] for p in node.operands)
            and all(_elements(r.type) <= _TINY_ELEMENTS for r in node.op.results)
        )
    return out


def _elements(t: ir.Type) -> float:
    return float(math.prod(t.shape)) if isinstance(t, ir.RankedTensorType) else float("inf")


def _assign_apply(graph: Graph, part: list[str], free: list[bool], layer: list[int]) -> None:
    """Each apply op runs in the layer that owns what it updates: the first forward layer reading the
    parameter, else the layer of the gradient it reads; optimizer state no forward op reads (Adam's
    moments, the step count) follows the apply ops that use it. An op needing an apply value of a later
    layer (a global gradient norm) moves to that layer: apply parts run in layer order."""
    nodes = graph.nodes
    owner: dict[int, int] = {}
    for i, node in enumerate(nodes):
        if part[i] == FORWARD and layer[i] >= 0:
            for a in node.args:
                owner[a] = min(owner.get(a, layer[i]), layer[i])
    applies = [i for i in range(len(nodes)) if part[i] == APPLY and not free[i]]
    undetermined: set[int] = set()
    for i in applies:
        node = nodes[i]
        owned = [owner[a] for a in node.args if a in owner]
        inputs = [layer[p] for p in node.operands if layer[p] >= 0 and not free[p] and part[p] != APPLY]
        earlier = [layer[p] for p in node.operands if part[p] == APPLY and p not in undetermined]
        if owned or inputs or earlier:
            layer[i] = max([min(owned) if owned else max(inputs, default=0), *earlier])
        else:
            undetermined.add(i)
    for i in reversed(applies):  # state-only ops: the first layer among the apply ops they feed
        if i in undetermined:
            users = [layer[u] for u in nodes[i].users if layer[u] >= 0]
            layer[i] = min(users) if users else 0
    for i in applies:  # apply values of a later layer pull their users along
        later = [layer[p] for p in nodes[i].operands if part[p] == APPLY and not free[p]]
        layer[i] = max([layer[i], *later])


def _assign_free(graph: Graph, part: list[str], free: list[bool], layer: list[int]) -> None:
    nodes = graph.nodes
    for i in reversed(range(len(nodes))):
        if not free[i]:
            continue
        users = nodes[i].users
        if users:
            first = users[0]
            layer[i], part[i] = layer[first], part[first]
        else:
            layer[i], part[i] = 0, FORWARD
