#!/usr/bin/env bash
# Builds autopar._core in place (python/autopar/_core*.so) for a fast edit loop with PYTHONPATH=python.
# `pip install .` does the same through scikit-build-core; this only avoids reinstalling the package.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="${AUTOPAR_BUILD_DIR:-$root/build/dev}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v python)" >/dev/null
cmake --build "$build" -j2
# Copy then rename: a running process that has the old library mapped keeps it intact.
for so in "$build"/_core*.so; do
  cp "$so" "$root/python/autopar/.$(basename "$so").tmp" && mv -f "$root/python/autopar/.$(basename "$so").tmp" "$root/python/autopar/$(basename "$so")"
done
