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


def _nnx() -> Any:
    return sys.modules.get("flax.nnx")


def module_positions(args: Sequence[Any]) -> tuple[int, ...]:
    """Positions of the arguments that are NNX graph nodes (modules, optimizers, Rngs)."""
    nnx = _nnx()
    if nnx is None:
        return ()
    return tuple(i for i, a in enumerate(args) if nnx.graph.is_graph_node(a))


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
