"""The C++ tree goes one way: passes/ holds the algorithm cores, csrc/ only their nanobind bindings.

passes/intra_op/, passes/inter_op/ and passes/schedule/ mirror python/autopar/passes/intra_op/, inter_op/ and
schedule.py. csrc/ may include
passes/ headers; nothing under passes/ includes csrc/ (or nanobind), so each core builds and reads without
Python. CMakeLists.txt names every source explicitly; a source it misses would silently not be built.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.MULTILINE)


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in {".h", ".cc", ".hpp", ".cpp"})


def _includes(path: Path) -> list[str]:
    return _INCLUDE.findall(path.read_text())


def test_passes_include_neither_csrc_nor_nanobind():
    sources = _sources("passes")
    assert sources, "no C++ sources under passes/"
    wrong = [
        f"{p.relative_to(ROOT)}: #include {inc}"
        for p in sources
        for inc in _includes(p)
        if inc.startswith(("csrc/", "nanobind/", "Python.h")) or "bindings" in inc or "numpy_util" in inc
    ]
    assert not wrong, "passes/ must not depend on the bindings:\n" + "\n".join(wrong)


def test_passes_mirror_the_python_passes():
    folders = {p.name for p in (ROOT / "passes").iterdir() if p.is_dir()}
    assert folders == {"intra_op", "inter_op", "schedule"}
    python = ROOT / "python" / "autopar" / "passes"
    for name in folders:  # a package (passes/intra_op/) or a one-file pass (passes/schedule.py)
        assert (python / name).is_dir() or (python / f"{name}.py").is_file(), name


def test_csrc_holds_only_bindings():
    for p in _sources("csrc"):
        local = [inc for inc in _includes(p) if "/" in inc and not inc.startswith(("nanobind/", "csrc/"))]
        assert all(inc.startswith("passes/") for inc in local), (p, local)
        assert p.suffix == ".h" or p.name == "module.cc" or p.name.endswith("_bindings.cc"), p


def test_cmake_builds_every_source():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    missing = [
        str(p.relative_to(ROOT))
        for folder in ("csrc", "passes")
        for p in _sources(folder)
        if p.suffix in {".cc", ".cpp"} and str(p.relative_to(ROOT)) not in cmake
    ]
    assert not missing, f"CMakeLists.txt does not build {missing}"


def test_the_direction_check_catches_a_bad_include():
    assert _INCLUDE.findall('#include "csrc/numpy_util.h"\n  #  include <nanobind/nanobind.h>\n') == [
        "csrc/numpy_util.h",
        "nanobind/nanobind.h",
    ]
