"""Exceptions raised by autopar. Every user mistake maps to one of these, never to a bare crash."""

from __future__ import annotations

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


_FILE_LOC = re.compile(r'"([^"]*)":(\d+):(\d+)')
_NAME_LOC = re.compile(r'"([^"]+)"\(')


def format_location(location: object | None) -> str:
    """Renders an MLIR location for a one-line message: the innermost `file:line:col` (for an inlined op,
    the callee's), else the first name-stack name (`jit(f)/dot_general`), else ''."""
    if location is None:
        return ""
    text = str(location)
    file_loc = _FILE_LOC.search(text)
    if file_loc:
        return f"{file_loc.group(1)}:{file_loc.group(2)}:{file_loc.group(3)}"
    name_loc = _NAME_LOC.search(text)
    return name_loc.group(1) if name_loc else ""
