"""`python -m autopar.solver PROBLEM.json[.gz] ...`: the `autopar-solve` command (autopar/solver/cli.py)."""

import time

_PROCESS_START = time.perf_counter()  # before the solver loads: the time limit counts loading too

import sys  # noqa: E402

from autopar.solver.cli import main  # noqa: E402

sys.exit(main(process_start=_PROCESS_START))
