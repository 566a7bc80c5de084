"""Facts about the function graph the strategy problem is built from: when each value is live, which op
factors carry the batch dim, which reductions are the parameter gradients, which arguments are optimizer
state and which results update which parameters. Each is computed once per graph (`derived`) and read by
problem.py (the strategy lists and edges), emit.py and expected.py."""

from __future__ import annotations

import re

import numpy as np

from autopar.passes.intra_op.graph import Graph, Node
from autopar.passes.intra_op.strategies import tensor_bytes


def derived(graph: Graph, name: str, compute):
    if name not in graph.derived:
        graph.derived[name] = compute(graph)
    return graph.derived[name]


def gradient_reductions(graph: Graph) -> set[int]:
    """Ops with a reduction whose results reach the step's results only through ops without one: the
    parameter gradients on their way into the optimizer's update (and the loss). XLA's all-reduce combiner
    merges their partial-sum collectives into one (DataParallel on a 6-layer MLP: 6 gradient all-reduces
    compile to 1), so each pays an equal share of one latency (`latency_share`). Without this, a small
    model's gradient all-reduces, each priced a full latency, made tensor parallelism look cheaper than
    data parallelism for an MLP of hidden size 32 and batch 256."""
    tail = [False] * len(graph.nodes)
    for v in range(len(graph.nodes) - 1, -1, -1):  # users come after their producers
        node = graph.nodes[v]
        if not node.users:
            tail[v] = bool(node.returned)
            continue
        tail[v] = all(tail[w] and not _reduces(graph.nodes[w]) for w in node.users)
    return {v for v in range(graph.num_args, len(graph.nodes)) if tail[v] and _reduces(graph.nodes[v])}


def latency_share(v: int, gradients: set[int]) -> float:
    """The share of a collective's latency node v's partial sums pay (1 unless XLA merges several)."""
    return 1.0 / len(gradients) if v in gradients and len(gradients) > 1 else 1.0


def merged_gradient_bytes(graph: Graph, wide: bool = False) -> float:
    """About how large XLA's merged gradient all-reduce is: every gradient reduction's results, whole (what
    data parallelism all-reduces on each device), at their element sizes in collectives when `wide`
    (widened_collectives). A measured collective table prices each gradient's part at that size's rate
    (autopar.cost.MeshModel.all_reduce)."""
    gradients = derived(graph, "gradients", gradient_reductions)
    nodes = [graph.nodes[v] for v in gradients]
    return float(
        sum(
            tensor_bytes(shape, size)
            for n in nodes
            for shape, size in zip(
                n.result_shapes, n.result_wide_itemsizes if wide else n.result_itemsizes, strict=True
            )
        )
    )


def _reduces(node: Node) -> bool:
    """Sums over a factor of size > 1. JAX's transpose of a broadcast writes a bias gradient as a reduce
    over the batch, a reshape and a reduce over a size-1 dim: that last one sums nothing, and counting it
    kept the bias gradients out of the combined all-reduce (30 priced, 1 compiled, on a 2-layer GPT)."""
    rule = node.rule
    return rule is not None and any(rule.factor_sizes[f] > 1 for f in rule.reduction)


def live_intervals(graph: Graph) -> np.ndarray:
    """Args live over the whole call (the caller holds them), results until the end, others until last use."""
    end = len(graph.nodes)
    out = np.zeros((len(graph.nodes), 2), dtype=np.int64)
    for v, node in enumerate(graph.nodes):
        start = 0 if node.kind == "arg" else v
        last = max(node.users, default=start)
        if node.kind == "arg" or node.returned:
            last = end
        out[v] = (start, last)
    return out


def batch_factors(graph: Graph) -> dict[int, frozenset[int]]:
    """Per op, the factors of its sharding rule that carry the batch dim of an `autopar.batch` argument.

    Batch dims flow forward: an op's operand dim that is a batch dim makes that dim's major factor a batch
    factor, and every result dim whose major factor is a batch factor is a batch dim of the result.
    """
    batch_dims: dict[tuple[int, int], set[int]] = {}
    for v, node in enumerate(graph.nodes[: graph.num_args]):
        if node.is_batch and node.result_shapes[0]:
            batch_dims[(v, 0)] = {0}
    factors: dict[int, frozenset[int]] = {}
    for v in range(graph.num_args, len(graph.nodes)):
        node = graph.nodes[v]
        if node.rule is None:
            continue
        found = set()
        for k, src in enumerate(node.operands):
            for dim in batch_dims.get(src, ()):
                maps = node.rule.operand_maps[k]
                if dim < len(maps) and maps[dim]:
                    found.add(maps[dim][0])
        if not found:
            continue
        factors[v] = frozenset(found)
        for r, maps in enumerate(node.rule.result_maps):
            dims = {d for d, dim in enumerate(maps) if dim and dim[0] in found}
            if dims:
                batch_dims[(v, r)] = dims
    return factors


def is_optimizer_state(graph: Graph, v: int) -> bool:
    """A parameter read only by elementwise ops of its own shape (Adam moments, not weights fed to a dot)."""
    node = graph.nodes[v]
    shape = node.result_shapes[0]
    for u in node.users:
        user = graph.nodes[u]
        rule = user.rule
        if (
            rule is None
            or rule.reduction
            or any(s != shape for s in user.operand_shapes + user.result_shapes)
        ):
            return False
    return True


def parameter_results(graph: Graph) -> dict[int, int]:
    """Pairs parameter arguments with the results that update them: {arg node: result index}.

    The pair must share a layout from one step to the next; a mismatch costs a reshard per step. A state
    argument returned as it came (a PRNG key, a frozen table) is its own pair and is left out: nothing
    reshards it, and no other argument may take its result. The others pair by pytree path when
    parallelize named the arguments and JAX the results (`params['w']` with `result[0]['w']`, `model.out`
    with `result[1].out`), so arguments the step does not return and results in another order pair
    right. Without paths (a module from the command line), a training step returns its new parameters
    and optimizer state in the order it took them (JAX flattens both pytrees alike), so the k-th
    `autopar.parameter` argument pairs with the next unpaired result of the same type; without any
    `autopar.parameter` mark, with the next result of its type that it flows into through elementwise
    ops only (`p - lr * g`, Adam's update).
    """
    return derived(graph, "parameter_results", _parameter_results)


def _parameter_results(graph: Graph) -> dict[int, int]:
    if not graph.updates_parameters:  # autopar.no_updates
        return {}
    marked = any(graph.nodes[v].is_parameter for v in range(graph.num_args))
    state = [v for v in range(graph.num_args) if graph.nodes[v].is_parameter or not marked]
    as_is = {u for u, _ in graph.returns if u < graph.num_args}
    taken = {j for j, (u, _) in enumerate(graph.returns) if u < graph.num_args}
    state = [v for v in state if v not in as_is]
    arg_keys = [_argument_key(graph.nodes[v].path) for v in state]
    result_keys = [_result_keys(p) for p in graph.result_paths]
    if marked and all(k is not None for k in arg_keys) and all(k is not None for k in result_keys):
        return _pair_by_path(graph, state, arg_keys, result_keys, taken)
    return _pair_in_order(graph, state, marked, taken)


def _same_type(graph: Graph, v: int, j: int) -> bool:
    u, r = graph.returns[j]
    node = graph.nodes[v]
    return (graph.nodes[u].result_shapes[r], graph.nodes[u].result_itemsizes[r]) == (
        node.result_shapes[0],
        node.result_itemsizes[0],
    )


def _pair_by_path(graph: Graph, state, arg_keys, result_keys, taken: set[int]) -> dict[int, int]:
    pairs: dict[int, int] = {}
    for v, key in zip(state, arg_keys, strict=True):
        for j, keys in enumerate(result_keys):
            if j not in taken and key in keys and _same_type(graph, v, j):
                pairs[v] = j
                taken.add(j)
                break
    return pairs


def _pair_in_order(graph: Graph, state, marked: bool, taken: set[int]) -> dict[int, int]:
    pairs: dict[int, int] = {}
    next_result = 0
    for v in state:
        for j in range(next_result, len(graph.returns)):
            if j in taken or not _same_type(graph, v, j):
                continue
            if marked or v in _elementwise_sources(graph, graph.returns[j][0]):
                pairs[v] = j
                next_result = j + 1
                break
    return pairs


# parallelize names an argument `params['w']`, `model.out.kernel` or `args[2][0]` (graph.argument_paths:
# `argument 3` when it wrote no path); JAX names a result `result`, `result['w']` or `result[1].out`.
_ARGUMENT_HEAD = re.compile(r"(args\[\d+\]|[A-Za-z_]\w*)")
_RESULT_HEAD = re.compile(r"result")
_POSITION = re.compile(r"\[\d+\]")


def _argument_key(path: str) -> str | None:
    """The path below the argument's own name, or None when the argument has no pytree path."""
    head = _ARGUMENT_HEAD.match(path)
    return path[head.end() :] if head and not path.startswith("argument ") else None


def _result_keys(path: str | None) -> tuple[str, ...] | None:
    """The path below the function's result, read as a single value and as a tuple's k-th element."""
    head = _RESULT_HEAD.match(path or "")
    if head is None:
        return None
    rest = path[head.end() :]
    position = _POSITION.match(rest)
    return (rest, rest[position.end() :]) if position else (rest,)


def _elementwise_sources(graph: Graph, v: int) -> set[int]:
    """Arguments that reach node v through same-shape elementwise ops only."""
    found: set[int] = set()
    stack, seen = [v], {v}
    while stack:
        w = stack.pop()
        node = graph.nodes[w]
        if node.kind == "arg":
            found.add(w)
            continue
        rule = node.rule
        if rule is None or rule.reduction or len(node.result_shapes) != 1:
            continue
        for (u, _), shape in zip(node.operands, node.operand_shapes, strict=True):
            if shape == node.result_shapes[0] and u not in seen:
                seen.add(u)
                stack.append(u)
    return found
