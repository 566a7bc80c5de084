"""Keeps what native solver libraries print off the process's stdout and stderr.

HiGHS and toulbar2 write from C++ straight to file descriptors 1 and 2 (highspy 1.16 prints a banner when a
`Highs()` is constructed, whatever its options; toulbar2 prints blank lines even when silent), where
Python's `redirect_stdout` cannot catch them. autopar's stdout carries only what was asked for (IR, a
solution), so while a native solver runs both descriptors point at a temporary file, whose text is logged at
debug level on the `autopar.solvers` logger afterwards.

Solvers run in several threads at once (the neighbourhood search solves two regions together): the first
thread in redirects, the last one out restores and logs.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("autopar.solvers")

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int] | None = None
_capture = None


@contextmanager
def captured() -> Iterator[None]:
    """Runs the block with fds 1 and 2 redirected to a capture file; its text goes to the debug log."""
    _enter()
    try:
        yield
    finally:
        _exit()


def _enter() -> None:
    global _depth, _saved, _capture
    with _lock:
        _depth += 1
        if _depth > 1:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError, OSError):
                pass
        _capture = tempfile.TemporaryFile()
        _saved = (os.dup(1), os.dup(2))
        os.dup2(_capture.fileno(), 1)
        os.dup2(_capture.fileno(), 2)


def _exit() -> None:
    global _depth, _saved, _capture
    with _lock:
        _depth -= 1
        if _depth > 0:
            return
        assert _saved is not None and _capture is not None
        os.dup2(_saved[0], 1)
        os.dup2(_saved[1], 2)
        os.close(_saved[0])
        os.close(_saved[1])
        _capture.seek(0)
        text = _capture.read().decode("utf-8", "replace")
        _capture.close()
        _saved, _capture = None, None
    if text.strip():
        for line in text.splitlines():
            if line.strip():
                log.debug("%s", line)
