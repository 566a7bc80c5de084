"""Loading and saving StableHLO modules: text, MLIR bytecode, VHLO portable artifacts, jax.export blobs.

Formats are told apart by content, not by file name: MLIR bytecode starts with `ML\\xefR` (a VHLO portable
artifact is bytecode of the vhlo dialect), a serialized `jax.export.Exported` is a flatbuffer, anything
else is parsed as text.
"""

from __future__ import annotations

import enum
import os
import sys
import tempfile
from pathlib import Path

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from autopar.errors import IRLoadError
from autopar.ir.context import context, diagnostics

MLIR_BYTECODE_MAGIC = b"ML\xefR"


class Emit(enum.Enum):
    TEXT = "text"
    BYTECODE = "bytecode"
    VHLO = "vhlo"


def parse_text(text: str, *, source_name: str = "<string>") -> ir.Module:
    """Parses StableHLO (or any registered dialect) text; IRLoadError with `file:line:col` on failure."""
    with context():
        try:
            module = ir.Module.parse(text)
        except ir.MLIRError as err:
            raise IRLoadError(_parse_error_line(err, source_name)) from None
    _verify(module, source_name)
    return module


def parse_bytes(data: bytes, *, source_name: str = "<bytes>") -> ir.Module:
    """Parses any supported serialized form (see module docstring)."""
    if data.startswith(MLIR_BYTECODE_MAGIC):
        return _parse_bytecode(data, source_name)
    if _looks_like_exported(data):
        return _parse_exported(data, source_name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise IRLoadError(
            f"{source_name}: not MLIR text, MLIR bytecode, a VHLO artifact or a jax.export blob"
        ) from None
    return parse_text(text, source_name=source_name)


def load(path: str | os.PathLike[str]) -> ir.Module:
    """Loads a module from a file, or from standard input when `path` is '-'."""
    source_name = "<stdin>" if str(path) == "-" else str(path)
    return parse_bytes(read_input(path), source_name=source_name)


def read_input(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a file or of stdin ('-'); IRLoadError naming the file when it cannot be read, or when
    it is empty: MLIR parses zero bytes as an empty module, so an export that failed before writing (a
    zero-byte file) would otherwise be planned as a module without @main, and the error would blame it."""
    data = sys.stdin.buffer.read() if str(path) == "-" else _read_file(path)
    if not data:
        name = "<stdin>" if str(path) == "-" else str(path)
        raise IRLoadError(
            f"{name} is empty (0 bytes): expected a StableHLO module (text, bytecode or VHLO) or a "
            "serialized jax.export; was it written?"
        )
    return data


def _read_file(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise IRLoadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise IRLoadError(f"{path}: is a directory, expected a StableHLO file") from None
    except OSError as err:
        raise IRLoadError(f"{path}: cannot read ({err.strerror})") from None


def to_bytes(module: ir.Module, emit: Emit = Emit.TEXT, *, debug_info: bool = True) -> bytes:
    """Serializes `module`. VHLO artifacts target the current StableHLO version for byte-stable output."""
    if emit is Emit.TEXT:
        return module.operation.get_asm(enable_debug_info=debug_info).encode()
    if emit is Emit.BYTECODE:
        import io

        buffer = io.BytesIO()
        module.operation.write_bytecode(buffer)
        return buffer.getvalue()
    # Mixed serialization (as jax.export does) carries sdy.* attributes through VHLO, which has no sdy.
    text = module.operation.get_asm(enable_debug_info=debug_info)
    from jaxlib import _jax  # loaded on first use: plain text and bytecode I/O do not need it

    return bytes(_jax.mlir.serialize_portable_artifact(text, stablehlo.get_current_version(), True))


def save(module: ir.Module, path: str | os.PathLike[str], emit: Emit = Emit.TEXT) -> None:
    """Writes atomically (temp file + rename): a failure never leaves a half-written output. '-' = stdout."""
    data = to_bytes(module, emit)
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_atomically(Path(path), data)


def write_atomically(path: Path, data: bytes) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parse_bytecode(data: bytes, source_name: str) -> ir.Module:
    with context():
        try:
            module = ir.Module.parse(data)
        except ir.MLIRError as err:
            module = None
            message = _parse_error_line(err, source_name)
        if module is None or _is_vhlo(module):
            # A VHLO artifact parses as vhlo ops; legalize it back to StableHLO (version-checked).
            try:
                from jaxlib import _jax

                diagnostics().take_errors()
                module = _jax.mlir.deserialize_portable_artifact(data, context())
            except Exception as err:  # jaxlib raises a plain ValueError/RuntimeError here
                reasons = diagnostics().take_errors()
                err = reasons[0].replace('"-":', f"{source_name}:") if reasons else err
                if module is None:
                    raise IRLoadError(
                        f"{source_name}: MLIR bytecode this jaxlib cannot read "
                        f"(written by another MLIR/StableHLO version?): {message}"
                    ) from None
                raise IRLoadError(f"{source_name}: bad VHLO artifact: {err}") from None
    _verify(module, source_name)
    return module


def _is_vhlo(module: ir.Module) -> bool:
    return any(op.operation.name.startswith("vhlo.") for op in module.body.operations)


def _looks_like_exported(data: bytes) -> bool:
    # jax.export's flatbuffer: a root-table offset then the 4-byte file identifier is absent, so probe by
    # trying to deserialize only when the bytes are clearly binary and not MLIR.
    return len(data) > 8 and b"\x00" in data[:64] and not data.startswith(MLIR_BYTECODE_MAGIC)


def _parse_exported(data: bytes, source_name: str) -> ir.Module:
    try:
        from jax import export

        exported = export.deserialize(bytearray(data))
    except Exception:  # flatbuffers raises assorted errors on garbage
        raise IRLoadError(
            f"{source_name}: binary data that is neither MLIR bytecode nor a serialized jax.export artifact"
        ) from None
    return parse_bytes(bytes(exported.mlir_module_serialized), source_name=source_name)


def _verify(module: ir.Module, source_name: str) -> None:
    with context():
        try:
            ok = module.operation.verify()
        except ir.MLIRError as err:
            raise IRLoadError(_parse_error_line(err, source_name)) from None
    if not ok:
        raise IRLoadError(f"{source_name}: module does not verify")


def _parse_error_line(err: ir.MLIRError, source_name: str) -> str:
    diagnostics = getattr(err, "error_diagnostics", None) or []
    if diagnostics:
        first = diagnostics[0]
        where = str(first.location)
        where = where[4:-1] if where.startswith("loc(") else where
        where = where.replace('"-"', source_name).replace('"', "")
        return f"{where}: {first.message}"
    lines = [ln for ln in str(err).splitlines() if "error" in ln]
    text = lines[-1].strip() if lines else str(err).splitlines()[0]
    text = text.replace("error: ", "").replace('"-"', source_name)
    return f"{source_name}: {text}"
