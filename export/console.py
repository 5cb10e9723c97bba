"""Quiet by default: what converters and libraries print goes to a log file, the console gets one line
per stage.

The converters write from C++ (absl logging), from Python (warnings, logging, tqdm bars) and from
subprocesses, so the capture works on file descriptors 1 and 2, not on ``sys.stdout``. ``Console``
keeps a duplicate of the original stderr taken before any capture, so progress lines still reach
the terminal while the chatter is redirected.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path


class Console:
    """Progress lines to the terminal (the stderr this process started with), whatever is captured."""

    def __init__(self, prefix: str = "", stream=None):
        self.prefix = prefix
        self.t0 = time.perf_counter()
        self.stream = stream or os.fdopen(os.dup(2), "w", buffering=1)

    def __call__(self, msg: str) -> None:
        self.stream.write(f"{self.prefix}{msg}\n")
        self.stream.flush()


class CapturedOutput:
    """Everything written to fds 1 and 2 inside ``capture`` goes to ``path`` (and, with ``echo``, is
    copied to the terminal as it arrives). ``mark()`` returns the log's current length, so callers
    can cut it into pieces."""

    def __init__(self, path: Path, echo: bool = False):
        self.path = Path(path)
        self.echo = echo
        self._file = None

    def mark(self) -> int:
        """Bytes captured so far (everything written before this call is in the file)."""
        sys.stdout.flush()
        sys.stderr.flush()
        return os.fstat(self._file.fileno()).st_size

    def read(self, start: int, end: int | None = None) -> str:
        """The captured text between two marks."""
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(max(0, end - start))
        return data.decode("utf-8", "replace")

    def _follow(self, terminal_fd: int, start: int, stop: threading.Event) -> None:
        """Copy what the log gains after ``start`` to the terminal until ``stop`` (then once more)."""
        with open(self.path, "rb") as f:
            f.seek(start)
            while True:
                done = stop.wait(0.2)
                chunk = f.read()
                if chunk:
                    os.write(terminal_fd, chunk)
                if done:
                    return

    @contextlib.contextmanager
    def capture(self):
        """Redirect fds 1 and 2 to the log for the duration of the block."""
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        self._file = open(self.path, "ab")
        stop, follower = threading.Event(), None
        if self.echo:
            start = os.fstat(self._file.fileno()).st_size
            follower = threading.Thread(target=self._follow, args=(saved[1], start, stop), daemon=True)
            follower.start()
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        # Python-level writers too, where sys.stdout/err are not fds 1/2 (notebooks, pytest's capture)
        saved_sys = sys.stdout, sys.stderr
        text = open(self.path, "a", buffering=1, encoding="utf-8", errors="replace")
        sys.stdout = sys.stderr = text
        try:
            yield self
        finally:
            sys.stdout, sys.stderr = saved_sys
            text.close()
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            if follower is not None:
                stop.set()
                follower.join(timeout=5)
            os.close(saved[0])
            os.close(saved[1])
            self._file.close()


@contextlib.contextmanager
def captured(path: Path, echo: bool = False):
    """``CapturedOutput(path, echo).capture()`` as one context manager yielding the capture."""
    out = CapturedOutput(path, echo)
    with out.capture():
        yield out
