"""`autopar-opt` / `python -m autopar.opt`: an mlir-opt for StableHLO with autopar's passes.

    autopar-opt model.mlir --pass-pipeline='builtin.module(autopar-inline,canonicalize,cse)' -o out.mlir

Conventions follow mlir-opt: input file or `-` for stdin, `-o` (default stdout), pipelines that mix
autopar passes with every pass jaxlib registers. User mistakes print one `error:` line and exit 1; when a
pass fails, the IR it started from is saved and the command that reproduces the failure is printed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import shlex
import sys
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autopar.errors import AutoparError, IRLoadError, PassError, PipelineError, PluginError

SPLIT_MARKER = "// -----"
PROG = "autopar-opt"


def build_arg_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG,
        description="Run autopar and MLIR passes over a StableHLO module.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: autopar-opt in.mlir --pass-pipeline='builtin.module(autopar-inline,cse)' -o o.mlir",
    )
    parser.add_argument(
        "input", nargs="?", default="-", help="input file (text, bytecode, VHLO, jax.export); - = stdin"
    )
    parser.add_argument("-o", dest="output", default="-", help="output file (written atomically); - = stdout")
    parser.add_argument(
        "--pass-pipeline", default="", help="textual pipeline: builtin.module(pass{opt=val},...)"
    )
    parser.add_argument("--version", action="store_true", help="print autopar's version and exit")
    parser.add_argument("--list-passes", action="store_true", help="list autopar passes with their options")
    parser.add_argument("--describe-pass", metavar="PASS", help="print one pass's full description")
    parser.add_argument(
        "--emit",
        choices=["text", "bytecode", "vhlo", "exported"],
        default="text",
        help="output format; exported = a serialized jax.export.Exported of a planned single-mesh module",
    )
    parser.add_argument(
        "--export-platform",
        default="",
        metavar="PLATFORM",
        help="the platform an --emit=exported output is for, e.g. cpu or cuda (default: the input "
        "Exported's, else the first of JAX_PLATFORMS, else JAX's default backend)",
    )
    parser.add_argument(
        "--input-shardings",
        choices=["drop", "keep"],
        default="drop",
        help="a jax.export.Exported input's shardings: drop (re-plan from scratch) or keep them (as stored; "
        "autopar-intra-op / autopar-shard then plan around the inputs' layouts)",
    )
    parser.add_argument(
        "--bind-dims",
        default="",
        metavar="NAME=SIZE,...",
        help="a shape-polymorphic jax.export input's symbolic dims at these sizes (e.g. b=32): plans are "
        "for static shapes",
    )
    parser.add_argument(
        "--plan-report",
        default="",
        metavar="FILE",
        help="also write the plan (layouts, planned collectives, cost, stages) to FILE: text, JSON for .json "
        "(with --split-input-file: one section per chunk, a JSON list)",
    )
    parser.add_argument(
        "--split-input-file", action="store_true", help=f"process each '{SPLIT_MARKER}' chunk alone"
    )
    parser.add_argument(
        "--mlir-print-ir-before-all", action="store_true", help="print the IR before every pass"
    )
    parser.add_argument(
        "--mlir-print-ir-after-all", action="store_true", help="print the IR after every pass"
    )
    parser.add_argument("--mlir-timing", action="store_true", help="print a pass timing report to stderr")
    parser.add_argument("--mlir-print-debuginfo", action="store_true", help="print locations in text output")
    parser.add_argument(
        "--load-pass-plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a Python module (dotted name or .py path) that registers extra passes",
    )
    parser.add_argument(
        "--show-traceback", action="store_true", help="show Python tracebacks of internal errors"
    )
    return parser


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 1, like every other user mistake
        raise _UsageError(message)


class _UsageError(Exception):
    pass


@dataclass
class _Run:
    args: argparse.Namespace

    @property
    def source_name(self) -> str:
        return "<stdin>" if self.args.input == "-" else self.args.input


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_arg_parser().parse_args(argv)
    except _UsageError as err:
        return _fail(str(err))
    if args.version:
        from autopar._version import __version__

        sys.stdout.write(f"{PROG} {__version__}\n")
        return 0
    run = _Run(args)
    try:
        for plugin in args.load_pass_plugin:
            load_plugin(plugin)
        if args.list_passes:
            sys.stdout.write(list_passes_text())
            return 0
        if args.describe_pass:
            sys.stdout.write(describe_pass_text(args.describe_pass))
            return 0
        return _process(run)
    except AutoparError as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        return _fail("interrupted")


def _fail(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 1


def load_plugin(name: str) -> None:
    """Imports a plugin module by dotted name or file path; its import registers its passes."""
    try:
        if name.endswith(".py") or os.sep in name:
            path = Path(name)
            if not path.is_file():
                raise PluginError(f"cannot load pass plugin '{name}': no such file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # like `python -m`, find plugins in the working directory
            importlib.import_module(name)
    except PluginError:
        raise
    except Exception as err:  # any failure inside a plugin's import is the plugin's, reported in one line
        detail = str(err).splitlines()[0] if str(err) else ""
        raise PluginError(f"cannot load pass plugin '{name}': {type(err).__name__}: {detail}") from None


def list_passes_text() -> str:
    from autopar.passes import registered_passes

    lines = ["autopar passes (use in --pass-pipeline='builtin.module(...)'):"]
    for info in registered_passes():
        lines.append(f"  {info.argument}: {info.summary}")
        for opt in info.options:
            choices = f" (one of {', '.join(str(c) for c in opt.choices)})" if opt.choices else ""
            default = _format_default(opt.default)
            lines.append(f"    {opt.name}: {opt.type.__name__} = {default}{choices}  {opt.help}")
    lines.append("")
    lines.append("Any pass jaxlib registers works too, e.g. canonicalize, cse, symbol-dce,")
    lines.append("func.func(sdy-populate-op-sharding-rules), sdy-propagation-pipeline; --describe-pass=NAME")
    lines.append("shows one (docs/platform.md says what they do to StableHLO and Shardy IR).")
    return "\n".join(lines) + "\n"


def _format_default(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return str(value)


# One line each for the jaxlib passes autopar's docs and pipelines use (jaxlib's bindings expose no pass
# descriptions; the options and defaults printed with them come from MLIR itself).
_JAXLIB_SUMMARIES = {
    "canonicalize": "MLIR's canonicalizer: folds and simplifies ops with their canonicalization patterns",
    "cse": "common subexpression elimination",
    "inline": "MLIR's inliner (does not inline func.call of StableHLO funcs; autopar-inline does)",
    "symbol-dce": "erases private symbols (functions, meshes) that nothing refers to",
    "symbol-privatize": "makes symbols private",
    "topological-sort": "sorts ops of graph regions topologically",
    "remove-dead-values": "removes values and arguments nothing uses",
    "sccp": "sparse conditional constant propagation",
    "sdy-propagation-pipeline": "Shardy's import, sharding propagation and export in one pipeline",
    "sdy-import-pipeline": "Shardy's import steps (lift meshes, flatten calls, apply constraints)",
    "sdy-export-pipeline": "Shardy's export steps (close shardings, insert explicit reshards)",
    "sdy-close-shardings": "closes every open sdy.sharding dimension",
    "sdy-populate-op-sharding-rules": "attaches Shardy's sharding rule (factors per operand/result) to ops",
    "sdy-drop-sharding-rules": "removes the sharding rules sdy-populate-op-sharding-rules attached",
    "sdy-insert-explicit-reshards": "inserts sdy.reshard where operand and op shardings disagree",
    "sdy-reshard-to-collectives": "turns sdy.reshard into Shardy collectives",
    "sdy-sharding-constraint-to-reshard": "turns sdy.sharding_constraint into sdy.reshard",
    "sdy-remove-size-one-axes": "drops mesh axes of size one from meshes and shardings",
    "sdy-flatten-call-graph": "gives every call its own copy of the callee",
    "chlo-legalize-to-stablehlo": "rewrites CHLO ops (erf, square, top_k, ...) as StableHLO",
    "stablehlo-refine-shapes": "refines dynamic shapes to static ones where inputs allow",
    "stablehlo-legalize-to-vhlo": "StableHLO to its versioned form VHLO",
    "vhlo-legalize-to-stablehlo": "VHLO back to StableHLO",
}


def describe_pass_text(argument: str) -> str:
    from autopar.passes import registry

    info = registry.lookup(argument)
    if info is None and not argument.startswith("autopar-"):
        return _describe_jaxlib_pass(argument)
    if info is None:
        raise PipelineError(f"unknown pass '{argument}' (autopar-opt --list-passes lists them)")
    body = [f"{info.argument}: {info.summary}", "", info.description, "", "Options:"]
    for opt in info.options:
        body.append(f"  {opt.name}: {opt.type.__name__} = {_format_default(opt.default)}  {opt.help}")
    if not info.options:
        body.append("  (none)")
    return "\n".join(body) + "\n"


def _describe_jaxlib_pass(argument: str) -> str:
    """A pass jaxlib registers: where it runs, how to write it in a pipeline, its options with defaults."""
    from jaxlib.mlir import passmanager

    from autopar import ir as air

    if not argument or any(c in argument for c in "(){},= "):
        raise PipelineError(f"'{argument}' is not a pass name (autopar-opt --list-passes lists them)")
    for anchor, pipeline in (
        ("builtin.module", f"builtin.module({argument})"),
        ("func.func", f"builtin.module(func.func({argument}))"),
    ):
        try:
            pm = passmanager.PassManager.parse(pipeline, context=air.context())
        except ValueError as err:
            if "does not refer to a registered pass" in str(err):
                raise PipelineError(
                    f"unknown pass '{argument}' (autopar-opt --list-passes lists them)"
                ) from None
            continue
        summary = _JAXLIB_SUMMARIES.get(argument, "a pass registered by jaxlib (MLIR, Shardy or StableHLO)")
        expanded = " ".join(str(pm)[len("builtin.module(") : -1].split())
        where = (
            "the whole module"
            if anchor == "builtin.module"
            else "each func.func, so nest it in func.func(...)"
        )
        return (
            f"{argument}: {summary}\n\n"
            f"Registered by jaxlib, not autopar; runs on {where}.\n"
            f"In a pipeline: --pass-pipeline='{pipeline}'\n"
            f"With every option at its default, it runs as:\n  {expanded}\n"
        )
    raise PipelineError(f"unknown pass '{argument}' (autopar-opt --list-passes lists them)")


def _process(run: _Run) -> int:
    from autopar import ir as air
    from autopar.passes import pipeline

    args = run.args
    elements = pipeline.parse_pipeline(args.pass_pipeline) if args.pass_pipeline.strip() else []
    if args.plan_report:
        from autopar.api import plan_report

        plan_report.check_pipeline([e.name for e in elements])
    raw = air.read_input(args.input)
    emit = "exported" if args.emit == "exported" else air.Emit(args.emit)
    if args.split_input_file:
        chunks = _split_chunks(raw, run.source_name)
        if emit is not air.Emit.TEXT:
            raise PipelineError("--split-input-file needs --emit=text (binary outputs cannot be split)")
    else:
        chunks = [raw]
    outputs, planned, failed = [], [], False
    for chunk in chunks:
        try:
            module, source = _read_module(run, chunk, elements)
            _run_pipeline(run, module, elements)
            planned.append(module)
            if emit == "exported":
                outputs.append(_exported_bytes(module, source, args.export_platform))
            else:
                outputs.append(_serialize(module, emit, args.mlir_print_debuginfo))
        except AutoparError as err:
            if not args.split_input_file:
                raise
            sys.stderr.write(f"{PROG}: error: {err}\n")
            planned.append(str(err))  # the report says which chunk failed
            failed = True
    if args.plan_report and any(not isinstance(m, str) for m in planned):
        plan_report.write_report(args.plan_report, planned, split=args.split_input_file)
    separator = f"\n{SPLIT_MARKER}\n".encode()
    _write_output(
        args.output,
        separator.join(o.rstrip(b"\n") + b"\n" for o in outputs)
        if len(outputs) > 1
        else (outputs[0] if outputs else b""),
    )
    return 1 if failed else 0


def _read_module(run: _Run, chunk: bytes, elements):
    """The input module and, when the input is a serialized jax.export.Exported, that Exported (its
    shardings dropped or kept by --input-shardings, its symbolic dims bound by --bind-dims)."""
    from autopar import ir as air
    from autopar.ir import bind_dims
    from autopar.ir import exported as ir_exported
    from autopar.ir.bind_dims import DimBindingError

    if not ir_exported.is_exported(chunk):
        if run.args.bind_dims:
            raise DimBindingError(
                f"--bind-dims binds the symbolic dims of a serialized jax.export input; {run.source_name} is "
                "MLIR: lower it with concrete shapes"
            )
        return air.parse_bytes(chunk, source_name=run.source_name), None
    module, source = ir_exported.read(chunk, run.source_name, run.args.input_shardings)
    if run.args.bind_dims and source is not None:
        module, source = bind_dims.bind(source, bind_dims.parse_bindings(run.args.bind_dims), run.source_name)
    if run.args.input_shardings == "keep":
        ir_exported.prepare_kept_shardings(module, [e.name for e in elements])
    return module, source


def _exported_bytes(module, source, platform: str) -> bytes:
    """The module as a serialized jax.export.Exported. The input Exported's pytrees, avals, name and
    platforms carry over when the module still has its signature; otherwise @main's flat signature."""
    from autopar.api import exported as api_exported

    try:
        api_exported.check_exportable(module)
        if source is not None:
            api_exported.check_reexportable(source)
    except api_exported.ExportError as err:
        raise AutoparError(f"--emit=exported: {err}") from None
    options = {}
    if source is not None:
        options = dict(
            fun_name=source.fun_name,
            in_tree=source.in_tree,
            out_tree=source.out_tree,
            in_avals=source.in_avals,
            out_avals=source.out_avals,
            platforms=source.platforms,
            kept_var_idx=source.module_kept_var_idx,
        )
    if platform.strip():
        options["platforms"] = (platform.strip(),)
    try:
        exp = api_exported.module_to_exported(module, **options)
    except api_exported.ExportError:
        if not options:
            raise
        # The pipeline changed @main's signature: the input's pytrees no longer describe it.
        exp = api_exported.module_to_exported(module, platforms=options.get("platforms"))
    try:
        return bytes(exp.serialize())
    except Exception as err:  # flatbuffers missing or a field it cannot write
        raise AutoparError(
            f"--emit=exported: cannot serialize the Exported: {type(err).__name__}: {err}"
        ) from None


def _split_chunks(raw: bytes, source_name: str) -> list[bytes]:
    """Splits at marker lines, padding each chunk with newlines so diagnostics keep file line numbers."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IRLoadError(f"{source_name}: --split-input-file needs a text input") from None
    chunks, current, start_line = [], [], 0
    for number, line in enumerate(text.splitlines(keepends=True)):
        if line.strip() == SPLIT_MARKER:
            chunks.append("\n" * start_line + "".join(current))
            current, start_line = [], number + 1
        else:
            current.append(line)
    chunks.append("\n" * start_line + "".join(current))
    return [c.encode() for c in chunks]


def _serialize(module, emit, debug_info: bool) -> bytes:
    from autopar import ir as air

    return air.to_bytes(module, emit, debug_info=debug_info or emit is not air.Emit.TEXT)


def _write_output(path: str, data: bytes) -> None:
    from autopar import ir as air

    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        air.write_atomically(Path(path), data)
    except OSError as err:
        raise AutoparError(f"{path}: cannot write output ({err.strerror})") from None


def _run_pipeline(run: _Run, module, elements) -> None:
    """Runs all elements in one real PassManager. On failure, replays them one by one from the saved
    input to find the failing element and the IR it started from, and writes a reproducer."""
    if not elements:
        return
    from autopar import ir as air
    from autopar.passes import pipeline

    args = run.args
    snapshot = air.to_bytes(module, air.Emit.BYTECODE)
    pm = pipeline.build_pass_manager(elements, module.context)
    if args.mlir_print_ir_before_all or args.mlir_print_ir_after_all:
        pm.enable_ir_printing(
            print_before_all=args.mlir_print_ir_before_all, print_after_all=args.mlir_print_ir_after_all
        )
    if args.mlir_timing:
        pm.enable_timing()
    try:
        pipeline.run_pass_manager(pm, module)
    except PassError as err:
        raise _with_reproducer(run, snapshot, elements, err) from None
    except Exception as err:  # a bug inside a pass: still one line, with the reproducer
        if args.show_traceback:
            traceback.print_exc()
        internal = PassError(f"internal error: {type(err).__name__}: {err}")
        raise _with_reproducer(run, snapshot, elements, internal) from None
    finally:
        del pm  # prints the timing report now, before the output


def _with_reproducer(run: _Run, snapshot: bytes, elements, err: PassError) -> PassError:
    from autopar import ir as air
    from autopar.passes import pipeline

    module = air.parse_bytes(snapshot, source_name=run.source_name)
    for element in elements:
        before = air.to_bytes(module, air.Emit.TEXT, debug_info=True)
        try:
            pipeline.run_elements(module, [element])
        except Exception:
            saved = _save_failure_input(run, element.name, before)
            single = shlex.quote(f"builtin.module({element.text})")
            command = f"{PROG} {shlex.quote(str(saved))} --pass-pipeline={single}"
            message = _localize(str(err), run.source_name)
            return PassError(
                f"pass '{element.name}' failed: {message}\n"
                f"{PROG}: note: its input IR is saved in {saved}; reproduce with: {command}"
            )
    return PassError(_localize(str(err), run.source_name))


def _save_failure_input(run: _Run, pass_name: str, text: bytes) -> Path:
    """Writes the failing pass's input IR into a new temporary directory (never beside the input, which may
    be a source tree, nor beside the output, which may be a device such as /dev/null)."""
    from autopar import ir as air

    stem = Path(run.args.input).stem if run.args.input != "-" else "stdin"
    directory = Path(tempfile.mkdtemp(prefix="autopar-repro-"))
    target = directory / f"{stem}.before-{pass_name.replace('/', '_')}.mlir"
    air.write_atomically(target, text)
    return target


def _localize(message: str, source_name: str) -> str:
    """Ops parsed from text carry `"-":line:col` locations; name the real input instead."""
    return re.sub(r'(^|[\s(])"?-"?:(\d+:\d+)', lambda m: f"{m.group(1)}{source_name}:{m.group(2)}", message)


if __name__ == "__main__":
    sys.exit(main())
