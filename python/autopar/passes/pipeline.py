"""Parses textual pass pipelines and builds real MLIR PassManagers from them.

MLIR's textual pipeline parser cannot name Python passes, so autopar splits `builtin.module(...)` into its
top-level elements itself: registered autopar passes become Python callables added to the PassManager,
every other element (canonicalize, cse, `func.func(...)`, sdy-*) is handed to MLIR's own parser.
"""

from __future__ import annotations

import dataclasses
import re
import types

from jaxlib.mlir import ir, passmanager

from autopar.errors import PassError, PipelineError
from autopar.passes import registry


@dataclasses.dataclass(frozen=True)
class Element:
    """One top-level pipeline element: `name` with its raw `{...}` option text, as written."""

    name: str
    options_text: str  # inside the braces, '' when absent
    text: str  # the element exactly as written

    @property
    def info(self) -> registry.PassInfo | None:
        return registry.lookup(self.name)


def split_top_level(text: str, what: str) -> list[str]:
    """Splits `text` at commas outside (), {} and quotes; raises PipelineError when unbalanced."""
    parts, depth, start, quote = [], [], 0, ""
    closing = {"(": ")", "{": "}"}
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in closing:
            depth.append(closing[ch])
        elif ch in ")}":
            if not depth or depth.pop() != ch:
                raise PipelineError(f"unbalanced '{ch}' at column {i + 1} of {what} '{text}'")
        elif ch == "," and not depth:
            parts.append(text[start:i])
            start = i + 1
    if quote:
        raise PipelineError(f"unterminated quote in {what} '{text}'")
    if depth:
        raise PipelineError(f"missing '{depth[-1]}' at the end of {what} '{text}'")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_pipeline(text: str) -> list[Element]:
    """`builtin.module(a{k=v},b,func.func(cse))` (or the bare list `a{k=v},b`) -> elements."""
    body = text.strip()
    if not body:
        raise PipelineError("empty pass pipeline")
    split_top_level(body, "pipeline")  # balance check on the whole string first
    if body.startswith("builtin.module(") and body.endswith(")"):
        body = body[len("builtin.module(") : -1]
    elif body.startswith("builtin.module"):
        raise PipelineError(f"expected 'builtin.module(...)', got '{text.strip()}'")
    elements = []
    for part in split_top_level(body, "pipeline"):
        if not part:
            if body.strip():
                raise PipelineError(f"empty element in pipeline '{text.strip()}'")
            continue
        elements.append(_parse_element(part))
    return elements


def _parse_element(part: str) -> Element:
    name, options_text = part, ""
    brace = part.find("{")
    paren = part.find("(")
    if brace != -1 and (paren == -1 or brace < paren):
        if not part.endswith("}"):
            raise PipelineError(f"unexpected text after the options of '{part}'")
        name, options_text = part[:brace].strip(), part[brace + 1 : -1]
    return Element(name=name, options_text=options_text, text=part)


def parse_option_assignments(element: Element) -> list[tuple[str, str]]:
    """`k=v k2='a b' flag` -> [(k, v), (k2, a b), (flag, '')]."""
    assignments: list[tuple[str, str]] = []
    text, i = element.options_text, 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        j = i
        while j < len(text) and not text[j].isspace() and text[j] != "=":
            j += 1
        key = text[i:j]
        if j < len(text) and text[j] == "=":
            j += 1
            if j < len(text) and text[j] in "'\"":
                end = text.find(text[j], j + 1)
                if end == -1:
                    raise PipelineError(f"unterminated quote in options of '{element.name}'")
                value, j = text[j + 1 : end], end + 1
            else:
                start, depth = j, 0
                while j < len(text) and (depth or not text[j].isspace()):
                    depth += {"{": 1, "(": 1, "}": -1, ")": -1}.get(text[j], 0)
                    j += 1
                value = text[start:j]
        else:
            value = ""
        if not key:
            raise PipelineError(f"malformed option text '{element.options_text}' of '{element.name}'")
        assignments.append((key, value))
        i = j
    return assignments


def parsed_options(element: Element) -> types.SimpleNamespace:
    info = element.info
    assert info is not None
    return info.parse_options(parse_option_assignments(element))


def _python_pass(info: registry.PassInfo, options: types.SimpleNamespace):
    def run(op: ir.Operation, pass_: object) -> None:
        # Passes build attributes and ops: give them the module's context and a default location.
        with op.context, ir.Location.unknown(op.context):
            info.run(op, options)

    run.__name__ = info.argument
    return run


def add_element(pm: passmanager.PassManager, element: Element) -> None:
    """Adds one element to `pm`; raises PipelineError with a one-line message when it is not valid."""
    info = element.info
    if info is not None:
        pm.add(_python_pass(info, parsed_options(element)), name=info.argument, argument=info.argument)
        return
    if element.name.startswith("autopar-"):
        raise PipelineError(f"unknown pass '{element.name}' (autopar-opt --list-passes lists them)")
    _refuse_nested_autopar_pass(element)
    try:
        pm.add(element.text)
    except ValueError as err:
        raise PipelineError(_one_line_mlir_pipeline_error(element, str(err))) from None


def _refuse_nested_autopar_pass(element: Element) -> None:
    """autopar's passes run on the whole module; `func.func(autopar-intra-op)` would hand MLIR a name it
    does not know. Say where the pass belongs instead."""
    open_paren = element.text.find("(")
    if open_paren == -1 or not element.text.endswith(")"):
        return
    anchor = element.text[:open_paren].strip()
    for part in split_top_level(element.text[open_paren + 1 : -1], "pipeline"):
        inner = _parse_element(part) if part else None
        if inner is not None and inner.info is not None:
            raise PipelineError(
                f"'{inner.name}' is a module-level pass: put it at the top level, "
                f"builtin.module({inner.text}), not inside {anchor}(...)"
            )
        if inner is not None and "(" in inner.text:
            _refuse_nested_autopar_pass(inner)


def _one_line_mlir_pipeline_error(element: Element, message: str) -> str:
    if "does not refer to a registered pass" in message:
        named = re.search(r"'([^']+)' does not refer to a registered pass", message)
        name = named.group(1) if named else element.name.split("(")[0]
        return f"unknown pass '{name}' (autopar-opt --list-passes lists them)"
    lines = [ln.strip() for ln in message.splitlines() if ln.strip() and ln.strip() != "^"]
    detail = next((ln.split("error: ", 1)[1] for ln in lines if "error: " in ln), None)
    if detail is None:
        detail = lines[0].split(": ", 1)[-1] if lines else message
    return f"invalid pipeline element '{element.text}': {detail}"


def build_pass_manager(elements: list[Element], context: ir.Context) -> passmanager.PassManager:
    pm = passmanager.PassManager("builtin.module", context=context)
    for element in elements:
        add_element(pm, element)
    return pm


def run_elements(module: ir.Module, elements: list[Element]) -> None:
    """Runs the elements on `module` in one PassManager; PassError/PipelineError on failure."""
    pm = build_pass_manager(elements, module.context)
    run_pass_manager(pm, module)


def run_pass_manager(pm: passmanager.PassManager, module: ir.Module) -> None:
    try:
        pm.run(module.operation)
    except ir.MLIRError as err:
        raise PassError(one_line_mlir_error(err)) from None


def one_line_mlir_error(err: ir.MLIRError) -> str:
    """MLIR diagnostics as one line: the first error with its location."""
    diagnostics = getattr(err, "error_diagnostics", None) or []
    if diagnostics:
        first = diagnostics[0]
        where = str(first.location)
        where = where[4:-1] if where.startswith("loc(") else where
        return f"{where}: {first.message}" if where and where != "unknown" else first.message
    text = str(err).strip().splitlines()
    return text[0] if text else "MLIR error"
