"""Native solver output (C++ writes to fds 1 and 2) goes to the debug log, never to stdout or stderr."""

import logging
import os
import threading

import numpy as np

from autopar import native_output
from autopar.solver.highs import objective_matches as _objective_matches


def test_native_writes_are_logged_not_printed(capfd, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="autopar.solvers"):
        with native_output.captured():
            os.write(1, b"Running HiGHS 1.16.0: banner\n")
            os.write(2, b"toulbar2 says hello\n\n")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    logged = [r.getMessage() for r in caplog.records if r.name == "autopar.solvers"]
    assert logged == ["Running HiGHS 1.16.0: banner", "toulbar2 says hello"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "autopar.solvers")


def test_descriptors_are_restored_after_nested_and_threaded_use(capfd) -> None:
    barrier = threading.Barrier(2)

    def solver_thread() -> None:
        with native_output.captured():
            barrier.wait()
            os.write(1, b"inside\n")
            with native_output.captured():
                os.write(2, b"nested\n")

    threads = [threading.Thread(target=solver_thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.write(1, b"after\n")
    out, err = capfd.readouterr()
    assert out == "after\n" and err == ""


def test_an_objective_that_does_not_match_the_values_is_caught() -> None:
    cost = np.array([1.0, 2.0, 3.0])
    assert _objective_matches(cost, 10.0, np.array([1.0, 0.0, 1.0]), 14.0)
    # HiGHS 1.16.0 reported the optimum (215) for a returned warm start of cost 238.
    assert not _objective_matches(cost, 10.0, np.array([1.0, 1.0, 1.0]), 14.0)
