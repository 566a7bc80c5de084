"""The pass registry: every autopar pass is declared once here, used by the driver and the Python API.

A pass is a Python callable `run(module_op, options)` over a `builtin.module` operation, declared with
`register_pass(argument=..., summary=..., description=..., options=[Option(...)])`. The registry gives the
driver everything `--list-passes` prints and everything the pipeline parser needs to check options.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autopar.errors import PassError, PipelineError

OptionType = type[int] | type[float] | type[str] | type[bool]


@dataclasses.dataclass(frozen=True)
class Option:
    """One typed option of a pass.

    Attributes:
      name: the option key in `pass{name=value}`, dash-separated (`memory-budget`).
      type: int, float, str or bool.
      default: the value used when the option is absent.
      help: one line shown by `--list-passes`.
      choices: when set, the only accepted values.
    """

    name: str
    type: OptionType
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None

    @property
    def attr_name(self) -> str:
        return self.name.replace("-", "_")

    def parse(self, text: str, pass_argument: str) -> Any:
        value = _parse_scalar(self.type, text)
        if value is None:
            raise PipelineError(
                f"option '{self.name}' of pass '{pass_argument}' expects {self.type.__name__}, got '{text}'"
            )
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise PipelineError(
                f"option '{self.name}' of pass '{pass_argument}' must be one of {allowed}, got '{text}'"
            )
        return value


def option_text(value: object) -> str:
    """A typed option value as pipeline text, the inverse of Option.parse (floats round-trip through
    repr): what the named pipelines hand their steps."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _parse_scalar(kind: OptionType, text: str) -> Any:
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("true", "1", ""):
                return True
            if lowered in ("false", "0"):
                return False
            return None
        if kind is int:
            return int(text, 0)
        if kind is float:
            return float(text)
        return text
    except ValueError:
        return None


PassFunction = Callable[[Any, types.SimpleNamespace], None]
# Checks the parsed options together (values that depend on each other, files they name); raises
# PassError or ValueError with a one-line message. Runs when the pipeline is parsed, before any IR is read.
OptionsCheck = Callable[[types.SimpleNamespace], None]


@dataclasses.dataclass(frozen=True)
class PassInfo:
    """A registered pass.

    Attributes:
      argument: the pipeline name, `autopar-<verb-or-noun>`.
      summary: one line.
      description: user documentation with a before/after IR example.
      options: the declared options, in the order `--list-passes` shows them.
      run: the implementation, called with the `builtin.module` operation and the parsed options.
      check: validates the parsed options as a whole when the pipeline is parsed (None: nothing to check).
      removed_options: option names the pass no longer takes -> what to give instead (one line).
    """

    argument: str
    summary: str
    description: str
    options: tuple[Option, ...]
    run: PassFunction
    check: OptionsCheck | None = None
    removed_options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> Option:
        for opt in self.options:
            if opt.name == name:
                return opt
        for old, instead in self.removed_options:
            if old == name:
                raise PipelineError(f"option '{name}' of pass '{self.argument}' was removed: {instead}")
        known = ", ".join(o.name for o in self.options) or "none"
        raise PipelineError(f"pass '{self.argument}' has no option '{name}' (its options: {known})")

    def parse_options(self, assignments: Sequence[tuple[str, str]]) -> types.SimpleNamespace:
        """Typed values of `assignments` over the defaults, checked one by one and then together; every
        problem is a one-line PipelineError."""
        values = {opt.attr_name: opt.default for opt in self.options}
        seen: set[str] = set()
        for key, text in assignments:
            opt = self.option(key)
            if key in seen:
                raise PipelineError(f"option '{key}' of pass '{self.argument}' is given twice")
            seen.add(key)
            self._check_separator(key, text)
            values[opt.attr_name] = opt.parse(text, self.argument)
        options = types.SimpleNamespace(**values)
        if self.check is not None:
            try:
                self.check(options)
            except (PassError, ValueError) as err:
                raise PipelineError(f"pass '{self.argument}': {err}") from None
        return options

    def _check_separator(self, key: str, text: str) -> None:
        """`{mesh=2x4,time-limit=2}` reads as one value of `mesh`: say that options are space-separated."""
        for match in re.finditer(r",\s*([A-Za-z][\w-]*)=", text):
            if any(o.name == match.group(1) for o in self.options):
                raise PipelineError(
                    f"option '{key}' of pass '{self.argument}' got '{text}': separate options with spaces, "
                    f"not commas ({self.argument}{{{key}={text[: match.start()]} "
                    f"{text[match.start() + 1 :].lstrip()}}})"
                )


_REGISTRY: dict[str, PassInfo] = {}


def register_pass(
    *,
    argument: str,
    summary: str,
    description: str,
    options: Sequence[Option] = (),
    check: OptionsCheck | None = None,
    removed_options: Mapping[str, str] | None = None,
) -> Callable[[PassFunction], PassFunction]:
    """Decorator declaring a pass. Re-registering the same argument replaces it (plugins reloading).
    `check` validates the options together when a pipeline is parsed (see PassInfo); `removed_options`
    maps an option the pass no longer takes to the one-line hint its use gets."""
    if not argument or any(c.isspace() or c in "(){},=" for c in argument):
        raise ValueError(f"invalid pass argument {argument!r}")

    def wrap(fn: PassFunction) -> PassFunction:
        _REGISTRY[argument] = PassInfo(
            argument,
            summary,
            description.strip("\n"),
            tuple(options),
            fn,
            check,
            tuple((removed_options or {}).items()),
        )
        return fn

    return wrap


def lookup(argument: str) -> PassInfo | None:
    return _REGISTRY.get(argument)


def registered_passes() -> list[PassInfo]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]
