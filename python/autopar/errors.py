"""Exceptions raised by autopar. Every user mistake maps to one of these, never to a bare crash."""

from __future__ import annotations

import functools
import importlib.util
import os
import re


class AutoparError(Exception):
    """Base class of every error autopar raises on purpose."""


class IRLoadError(AutoparError):
    """An input could not be read as a StableHLO module (missing file, bad text, foreign bytecode)."""


class PipelineError(AutoparError):
    """A pass pipeline string is malformed, names an unknown pass, or has a bad option."""


class PassError(AutoparError):
    """A pass rejected its input. `location` is the MLIR location of the offending op, if known."""

    def __init__(self, message: str, location: object | None = None):
        super().__init__(message)
        self.location = location

    def __str__(self) -> str:
        where = format_location(self.location)
        return f"{where}: {self.args[0]}" if where else str(self.args[0])


class PluginError(AutoparError):
    """A pass plugin module failed to import or to register its passes."""


class ArgumentError(AutoparError, ValueError):
    """The arguments of a parallelized call do not fit its method (a batch micro-batches do not divide)."""


_FILE_LOC = re.compile(r'"([^"]*)":(\d+):(\d+)')
_NAME_LOC = re.compile(r'"([^"]+)"\(')
# Frames of these packages are never the user's code: JAX's own and autopar's (parallelize lowers the
# user's function, so its frames sit in every call-site chain). Matched by where each is installed, not by
# a folder name: a user's own checkout called `autopar/` (or `jax/`) holds user code.
_LIBRARY_PACKAGES = ("jax", "jaxlib", "autopar", "flax", "optax")


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    dirs = []
    for name in _LIBRARY_PACKAGES:
        spec = importlib.util.find_spec(name)  # locates the package without importing it
        for folder in (spec.submodule_search_locations or []) if spec else []:
            dirs.append(os.path.join(os.path.realpath(folder), ""))
    return tuple(dirs)


@functools.cache  # the same few files recur in every location of a module
def is_library_frame(path: str) -> bool:
    """Whether a source file belongs to JAX, autopar or the other libraries above, or is no file at all
    (`<frozen runpy>`, `<string>`): frames a user-facing location skips."""
    if path.startswith("<"):
        return True
    return os.path.realpath(path).startswith(_library_dirs())


def format_location(location: object | None) -> str:
    """Renders an MLIR location for a one-line message: the innermost `file:line:col` of the user's code
    (for an inlined op, the callee's; frames of jax and autopar are skipped unless nothing else is left),
    else the first name-stack name (`jit(f)/dot_general`), else ''."""
    if location is None:
        return ""
    text = str(location)
    frames = _FILE_LOC.findall(text)
    if frames:
        user = [f for f in frames if not is_library_frame(f[0])]
        path, line, col = (user or frames)[0]
        return f"{path}:{line}:{col}"
    name_loc = _NAME_LOC.search(text)
    return name_loc.group(1) if name_loc else ""
