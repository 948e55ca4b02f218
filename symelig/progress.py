"""A status line on stderr for work that may take seconds (a cold ``derive --order 2`` of
Student's t takes ~11 s, ``export --all`` over a minute without the cache).

Shown only where stderr is a terminal, only once the work has run for ``delay`` seconds, and
erased when it ends: fast commands print nothing, and pipes, logs and the one-line errors
(printed after the line is erased) stay as they were.
"""
from __future__ import annotations

import sys
import threading
import time

DELAY = 1.0   # seconds of silence before the line appears: most commands end sooner
TICK = 0.25   # seconds between redraws of the spinner and the elapsed time


class Status:
    """``with Status("deriving student_t") as status: …; status.update("…")``."""

    def __init__(self, message: str, stream=None, delay: float | None = None):
        self.message = message
        self.stream = stream if stream is not None else sys.stderr
        self.delay = DELAY if delay is None else delay
        self._done = threading.Event()
        self._thread = None
        self._shown = False

    def update(self, message: str) -> None:
        self.message = message

    def __enter__(self) -> "Status":
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            self._thread = threading.Thread(target=self._run, name="symelig-status", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            return
        self._done.set()
        self._thread.join()
        if self._shown:
            self._write("\r\x1b[K")  # erase the line, so what follows starts on a clean one

    def _run(self) -> None:
        start = time.monotonic()
        if self._done.wait(self.delay):
            return
        frames = "|/-\\"
        tick = 0
        while not self._done.is_set():
            self._write(f"\r\x1b[K{frames[tick % len(frames)]} {self.message} ({time.monotonic() - start:.0f} s)")
            self._shown = True
            tick += 1
            self._done.wait(TICK)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr: the status line is not worth failing for
            pass
