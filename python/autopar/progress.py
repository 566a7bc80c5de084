"""A status line while a first call plans and compiles: shown only when that takes longer than two seconds
and stderr is a terminal (never in logs, pipes or tests), on stderr, so stdout stays the program's own."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

# Calls shorter than this show nothing.
SHOW_AFTER_SECONDS = 2.0


class Progress:
    """`with Progress("planning train_step on mesh 2x4") as p: ...; p.stage("compiling"); ...`"""

    def __init__(self, what: str, *, after: float | None = None, force_terminal: bool = False):
        self._what = what
        self._stage = ""
        self._after = SHOW_AFTER_SECONDS if after is None else after
        self._force = force_terminal
        self._start = 0.0
        self._timer: threading.Timer | None = None
        self._status = None
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        if self._force or _is_terminal(sys.stderr):
            self._timer = threading.Timer(self._after, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def stage(self, text: str) -> None:
        self._stage = text  # the status line reads it at its next refresh

    def __rich__(self) -> str:  # rich renders this object afresh at every refresh: the seconds advance
        return self._text()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            if self._status is not None:
                self._status.stop()
                self._status = None

    def _text(self) -> str:
        stage = f": {self._stage}" if self._stage else ""
        return f"autopar: {self._what}{stage} (started {time.perf_counter() - self._start:.0f} s ago)"

    def _show(self) -> None:
        from rich.console import Console  # imported only when a call is slow enough to show anything

        with self._lock:
            console = Console(stderr=True, force_terminal=self._force or None)
            self._status = console.status(self)
            self._status.start()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
