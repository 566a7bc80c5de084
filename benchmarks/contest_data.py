"""Where the IOPDDL contest's problem files (asplos-2025-iopddl-<letter>.json.gz, from the ASPLOS/EuroSys
2025 contest on intra-operator parallelism) are on this machine. autopar does not ship them: a benchmark
reads them from its --bench-dir option or, by default, from the folder the AUTOPAR_IOPDDL_DIR environment
variable names (docs/solver.md, its first section)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ENV = "AUTOPAR_IOPDDL_DIR"


def default_dir() -> Path | None:
    """The folder AUTOPAR_IOPDDL_DIR names, or None."""
    folder = os.environ.get(ENV, "")
    return Path(folder) if folder else None


def add_bench_dir(parser: argparse.ArgumentParser) -> None:
    """Adds --bench-dir (default: the folder AUTOPAR_IOPDDL_DIR names); check it with require_dir."""
    parser.add_argument(
        "--bench-dir",
        type=Path,
        default=default_dir(),
        help=f"the contest's problem files (default: ${ENV})",
    )


def require_dir(folder: Path | None, option: str) -> Path:
    """`folder`, or a one-line error (exit code 1) saying how to give it."""
    if folder is None:
        raise SystemExit(
            f"error: {option}: no folder of contest problems given; pass {option} DIR or set {ENV} to a "
            "folder holding asplos-2025-iopddl-<letter>.json.gz"
        )
    if not folder.is_dir():
        raise SystemExit(f"error: {option}: {folder} is not a folder")
    return folder


def problem_file(folder: Path, letter: str) -> Path:
    """The file of contest problem `letter` in `folder`."""
    return folder / f"asplos-2025-iopddl-{letter}.json.gz"


def chosen_problems(text: str, files: dict[str, str], folder: Path) -> list[tuple[str, Path]]:
    """(name, file in `folder`) of each comma-separated name in `text`, `files` naming each known problem's
    file; a one-line error (exit code 1) for an unknown name or a missing file, before any work is done."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in files:
            choices = ", ".join(files)
            raise SystemExit(f"error: --problems: unknown problem {name!r}; choose from {choices}")
    chosen = [(name, folder / files[name]) for name in names]
    for _, path in chosen:
        if not path.is_file():
            raise SystemExit(f"error: --bench-dir: {path} does not exist")
    return chosen


def seeds(text: str) -> list[int]:
    """The comma-separated seeds of --seeds, or a one-line error (exit code 1)."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"error: --seeds: expected comma-separated integers, got {text!r}") from None
