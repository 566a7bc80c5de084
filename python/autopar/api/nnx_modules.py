"""flax NNX modules passed to a parallelized step keep the step's updates, as `nnx.jit` gives them.

NNX steps update their modules in place (`optimizer.update(model, grads)`) and often return only the loss.
Under `jax.jit` a module argument is a pytree: the step updates a copy made inside the trace, and the
caller's model silently never trains. `nnx.jit` writes the updates back; so does parallelize: the traced
step also returns every module among its arguments that it does not return itself and whose Variables it
assigned, and the call writes their new state into the caller's modules (`nnx.update`). Variables are
graph nodes of their own (bare, or inside an `nnx.State`) and are handled alike. A module is found at any
depth of the arguments
(`step((model, optimizer), batch)`, `step({"model": model}, batch)`, keyword arguments), as `nnx.jit` finds
it; flax is not imported unless the caller already did.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import jax

from autopar.api.arguments import positional_names
from autopar.errors import AutoparError


def _nnx() -> Any:
    return sys.modules.get("flax.nnx")


class SharedModuleError(AutoparError, ValueError):
    """Two module arguments share state (a model and the nnx.ModelAndOptimizer that holds it)."""


def _nodes(nnx: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    """(key path, node) of every NNX graph node in (args, kwargs), outermost only, in pytree order: the
    traced step sees its copies in the same order."""
    tree = (tuple(args), dict(kwargs))
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=nnx.graph.is_graph_node)
    return [(path, x) for path, x in leaves if nnx.graph.is_graph_node(x)]


def _name(path: Any, names: Sequence[str]) -> str:
    """The user's name for a node: `optimizer`, `state[0]`, `modules['model']`."""
    where, key, *rest = path
    if where.idx == 0:
        root = names[key.idx] if key.idx < len(names) else f"args[{key.idx}]"
    else:
        root = str(key.key)
    return root + jax.tree_util.keystr(tuple(rest))


def has_modules(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether fn's arguments hold NNX graph nodes (modules, optimizers, Rngs); raises SharedModuleError
    when two of them share a module or variable."""
    nnx = _nnx()
    if nnx is None:
        return False
    names = positional_names(fn, len(args))
    nodes = _nodes(nnx, args, kwargs)
    owner: dict[int, int] = {}  # id of a module or variable -> the first node holding it
    for i, (_, node) in enumerate(nodes):
        for v in _state_objects(nnx, node):
            j = owner.setdefault(id(v), i)
            if j == i:
                continue
            a, b = (_name(nodes[k][0], names) for k in (j, i))
            raise SharedModuleError(
                f"arguments {a} and {b} share NNX state (one holds the other, as nnx.ModelAndOptimizer holds "
                "its model): like jax.jit, parallelize passes each argument as a copy, so an update made "
                "through one would be lost on the other; pass only one of them, or an "
                "nnx.Optimizer(model, tx, wrt=nnx.Param), which holds no model"
            )
    return bool(nodes)


def _state_objects(nnx: Any, node: Any) -> list[Any]:
    """The modules and variables inside `node` (not the plain values JAX or Python may share)."""
    return [v for _, v in nnx.iter_graph(node) if isinstance(v, nnx.Variable) or nnx.graph.is_graph_node(v)]


class CarryingModules:
    """`fn` for tracing: returns (its output, *the module arguments it does not return itself), and
    records which those are (`appended`, indices into the arguments' modules, set while JAX traces it)."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.appended: tuple[int, ...] = ()
        self.appended_names: tuple[str, ...] = ()  # the user's name of each: `model`, `state[0]`
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        nnx = _nnx()
        found = _nodes(nnx, args, kwargs)  # before the step may rebind anything
        before = [_variable_values(nnx, node) for _, node in found]
        out = self.fn(*args, **kwargs)
        returned = {id(x) for x in jax.tree.leaves(out, is_leaf=nnx.graph.is_graph_node)}
        # A module or Variable whose every Variable still holds the value it came with (a frozen teacher
        # model, a Variable of an nnx.State the step only reads) needs no write-back: returning it would
        # copy it out of every step unchanged.
        self.appended = tuple(
            i
            for i, (_, node) in enumerate(found)
            if id(node) not in returned and not _unchanged(before[i], _variable_values(nnx, node))
        )
        names = positional_names(self.fn, len(args))
        self.appended_names = tuple(_name(found[i][0], names) for i in self.appended)
        return (out, *(found[i][1] for i in self.appended)) if self.appended else out


def output_paths(out_tree: Any, appended_names: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(root, path) of each output leaf, path as jax.tree_util.keystr writes it: root "" for the step's
    own outputs, and for the leaves of a module appended for write-back "new " and the module's argument
    name (`new model.linear.kernel.value`, not `out[1].linear.kernel.value` beside an `out[0]` loss the
    step returned as `out`; the argument itself is `model.linear.kernel.value`)."""
    skeleton = jax.tree.unflatten(out_tree, list(range(out_tree.num_leaves)))
    leaves = jax.tree_util.tree_flatten_with_path(skeleton)[0]
    if not appended_names:
        return [("", jax.tree_util.keystr(path)) for path, _ in leaves]
    roots = ("", *(f"new {name}" for name in appended_names))
    return [(roots[path[0].idx], jax.tree_util.keystr(tuple(path[1:]))) for path, _ in leaves]


def output_names(out_tree: Any, appended_names: tuple[str, ...] = ()) -> list[str]:
    """Each output leaf's name in plans and reports: `out` and its path below the step's own output,
    `new <argument path>` for written-back state."""
    return [(root or "out") + path for root, path in output_paths(out_tree, appended_names)]


def variable_path(name: str, known: Collection[str]) -> str:
    """`name`, or the path of its flax NNX variable's value where the user named the variable as written
    (`model.linear.kernel` for `model.linear.kernel.value`)."""
    return f"{name}.value" if name not in known and f"{name}.value" in known else name


def write_back(args: Sequence[Any], kwargs: Mapping[str, Any], result: Any, appended: tuple[int, ...]) -> Any:
    """The step's own output; the new state of each appended module written into the caller's."""
    if not appended:
        return result
    nnx = _nnx()
    nodes = _nodes(nnx, args, kwargs)
    out, *modules = result
    for i, module in zip(appended, modules, strict=True):
        # A Variable is its own state (nnx.state of one has no path to write it under).
        nnx.update(nodes[i][1], module if isinstance(module, nnx.Variable) else nnx.state(module))
    return out


def _variable_values(nnx: Any, node: Any) -> list[tuple[Any, Any]] | None:
    """(path, value) of every Variable in `node` (itself, for a Variable), or None when one holds an array
    ref, which a step mutates in place: only a plain value's identity says it was left alone."""
    values = []
    for path, v in nnx.iter_graph(node):
        if isinstance(v, nnx.Variable):
            value = v.get_raw_value()
            if nnx.variablelib.is_array_ref(value):
                return None
            values.append((path, value))
    return values


def _unchanged(before: list[tuple[Any, Any]] | None, after: list[tuple[Any, Any]] | None) -> bool:
    """Whether a node's Variables are the same paths holding the same (traced) values as before the step."""
    if before is None or after is None or len(before) != len(after):
        return False
    return all(p == q and a is b for (p, a), (q, b) in zip(before, after, strict=True))
