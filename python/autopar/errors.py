"""Exceptions raised by autopar. Every user mistake maps to one of these, never to a bare crash."""

from __future__ import annotations


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


def format_location(location: object | None) -> str:
    """Renders an MLIR location as `file:line:col` (or the name-stack name), '' when unknown."""
    if location is None:
        return ""
    text = str(location)
    if text in ("loc(unknown)", ""):
        return ""
    if text.startswith("loc(") and text.endswith(")"):
        text = text[4:-1]
    return text
