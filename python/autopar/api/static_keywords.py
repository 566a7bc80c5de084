"""Static keyword arguments: `parallelize(..., static_argnames=...)`, as `jax.jit`'s.

A name of a positional parameter becomes its position in `static_argnums` (a keyword call moves to its
position anyway: `arguments.keywords_to_positions`). A keyword-only one (`def step(p, x, *, train)`) has
no position: its value is wrapped in `StaticValue`, a pytree with no leaves whose value is part of the
tree structure, so the value keys the plan cache and `jax.jit` traces it as a constant; the traced
function gets the value back (`unwrapping`). Under `static_argnums="auto"`, keyword arguments that Alpa's
rule makes static (a Python bool, int, float or str, or a pytree with a leaf that is not an array) are
static too.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax

from autopar.api.arguments import is_static_by_default


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class StaticValue:
    """A static keyword argument's value, carried in the pytree structure."""

    value: Any


def resolve(fn: Callable[..., Any], names: str | Sequence[str]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(positions of the named positional parameters, the keyword-only names); ValueError for a name that
    is no parameter of `fn` (unless it takes **kwargs)."""
    names = (names,) if isinstance(names, str) else tuple(names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"static_argnames must be strings, got {names!r}")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature to check against: every name is a keyword
        return (), names
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keyword_only = {p.name for p in params if p.kind == p.KEYWORD_ONLY}
    any_keyword = any(p.kind == p.VAR_KEYWORD for p in params)
    for name in names:
        if name not in positional and name not in keyword_only and not any_keyword:
            listed = ", ".join(p.name for p in params)
            raise ValueError(
                f"static_argnames names {name!r}, which is no parameter of "
                f"{getattr(fn, '__name__', 'the function')} (its parameters: {listed})"
            )
    positions = tuple(positional.index(n) for n in names if n in positional)
    return positions, tuple(n for n in names if n not in positional)


def mark(kwargs: dict[str, Any], names: Sequence[str], auto: bool, fn_name: str) -> dict[str, Any]:
    """`kwargs` with the static ones (named, or under "auto" Alpa's rule) wrapped in StaticValue."""
    marked = {}
    for name, value in kwargs.items():
        if name in names or (auto and is_static_by_default(value)):
            try:
                hash(value)
            except TypeError:
                raise TypeError(
                    f"static argument {name} of {fn_name} has unhashable type {type(value).__name__}: "
                    "static arguments key the cache, pass a hashable value"
                ) from None
            value = StaticValue(value)
        marked[name] = value
    return marked


def unwrapping(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` called with each StaticValue keyword argument's own value."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **{k: v.value if isinstance(v, StaticValue) else v for k, v in kwargs.items()})

    return call
