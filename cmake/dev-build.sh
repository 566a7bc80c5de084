#!/usr/bin/env bash
# Builds autopar._core in place (python/autopar/_core*.so) for a fast edit loop with PYTHONPATH=python.
# `pip install .` does the same through scikit-build-core; this only avoids reinstalling the package.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="${AUTOPAR_BUILD_DIR:-$root/build/dev}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v python)" >/dev/null
cmake --build "$build" -j2
cp "$build"/_core*.so "$root/python/autopar/"
