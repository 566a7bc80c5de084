"""flax NNX modules passed to a parallelized step keep the step's updates, as `nnx.jit` gives them.

NNX steps update their modules in place (`optimizer.update(model, grads)`) and often return only the loss.
Under `jax.jit` a module argument is a pytree: the step updates a copy made inside the trace, and the
caller's model silently never trains. `nnx.jit` writes the updates back; so does parallelize: the traced
step also returns every module argument it does not return itself, and the call writes their new state
into the caller's modules (`nnx.update`). Only modules passed as whole arguments are tracked (not modules
inside a tuple or dict argument); flax is not imported unless the caller already did.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax

from autopar.errors import AutoparError


def _nnx() -> Any:
    return sys.modules.get("flax.nnx")


class SharedModuleError(AutoparError, ValueError):
    """Two module arguments share state (a model and the nnx.ModelAndOptimizer that holds it)."""


def module_positions(args: Sequence[Any], names: Sequence[str] = ()) -> tuple[int, ...]:
    """Positions of the arguments that are NNX graph nodes (modules, optimizers, Rngs); raises
    SharedModuleError when two of them share a module or variable."""
    nnx = _nnx()
    if nnx is None:
        return ()
    positions = tuple(i for i, a in enumerate(args) if nnx.graph.is_graph_node(a))
    owner: dict[int, int] = {}  # id of a module or variable -> the first argument holding it
    for i in positions:
        for v in _state_objects(nnx, args[i]):
            j = owner.setdefault(id(v), i)
            if j == i:
                continue
            a, b = (names[k] if k < len(names) else f"argument {k}" for k in (j, i))
            raise SharedModuleError(
                f"arguments {a} and {b} share NNX state (one holds the other, as nnx.ModelAndOptimizer holds "
                "its model): like jax.jit, parallelize passes each argument as a copy, so an update made "
                "through one would be lost on the other; pass only one of them, or an "
                "nnx.Optimizer(model, tx, wrt=nnx.Param), which holds no model"
            )
    return positions


def _state_objects(nnx: Any, node: Any) -> list[Any]:
    """The modules and variables inside `node` (not the plain values JAX or Python may share)."""
    return [v for _, v in nnx.iter_graph(node) if isinstance(v, nnx.Variable) or nnx.graph.is_graph_node(v)]


class CarryingModules:
    """`fn` for tracing: returns (its output, *the module arguments it does not return itself), and
    records which those are (`appended`, set while JAX traces it)."""

    def __init__(self, fn: Callable[..., Any], positions: tuple[int, ...]):
        self.fn, self.positions = fn, positions
        self.appended: tuple[int, ...] = ()
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.fn(*args, **kwargs)
        nnx = _nnx()
        returned = {id(x) for x in jax.tree.leaves(out, is_leaf=nnx.graph.is_graph_node)}
        self.appended = tuple(i for i in self.positions if id(args[i]) not in returned)
        return (out, *(args[i] for i in self.appended)) if self.appended else out


def write_back(args: Sequence[Any], result: Any, appended: tuple[int, ...]) -> Any:
    """The step's own output; the new state of each appended module written into the caller's."""
    if not appended:
        return result
    nnx = _nnx()
    out, *modules = result
    for i, module in zip(appended, modules, strict=True):
        nnx.update(args[i], nnx.state(module))
    return out
